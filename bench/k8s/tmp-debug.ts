import { labDown, labUp } from '../../src/lab/lab.ts';
import { labPlan } from '../../src/lab/plan.ts';
import { ensureNamespace, TestApiServer } from '../../test/k8s/apiserver.ts';
import { apply, createPod, installCrds } from '../../test/k8s/helpers.ts';
import { agentKubeconfig, chartRbac, kubeAgentConfig, RELEASE_NAMESPACE, startApiBridge, startKubeAgent, stopDaemon } from '../../test/k8s/lab-cluster.ts';
const LAB = labPlan('kbdebug');
const server = await TestApiServer.start();
try {
  const api = server.adminApi();
  await installCrds(api);
  await ensureNamespace(api, RELEASE_NAMESPACE);
  for (const obj of chartRbac()) await apply(api, obj);
  const p = LAB.pods[0]!;
  await ensureNamespace(api, p.namespace);
  await createPod(api, { namespace: p.namespace, name: p.id, node: 'n', labels: { ...p.labels }, ips: [p.ipv4, p.ipv6] });
  await apply(api, { apiVersion: 'namegate.dev/v1alpha1', kind: 'EgressPolicy', metadata: { name: 'x', namespace: p.namespace }, spec: { podSelector: { matchLabels: { ...p.labels } }, egress: [{ toFQDNs: [{ name: 'api.stripe.com' }], ports: [{ port: 443 }] }] } });
  await labUp({ name: LAB.name });
  const sa = await server.serviceAccountConfig(RELEASE_NAMESPACE, 'namegate-agent');
  const bridge = await startApiBridge(LAB, server);
  const agent = await startKubeAgent(LAB, kubeAgentConfig(LAB, { kubeconfig: agentKubeconfig(LAB, server, sa.path), nodeName: 'n' }));
  console.log('READY');
  await new Promise((r) => setTimeout(r, 3000));
  await apply(api, { apiVersion: 'namegate.dev/v1alpha1', kind: 'EgressPolicy', metadata: { name: 'x', namespace: p.namespace }, spec: { podSelector: { matchLabels: { ...p.labels } }, egress: [{ toFQDNs: [{ name: 'api.stripe.com' }, { name: 'github.com' }], ports: [{ port: 443 }] }] } });
  console.log('CHANGED');
  await new Promise((r) => setTimeout(r, Number(process.env['HOLD'] ?? 30000)));
  await stopDaemon(agent); await bridge.stop();
} finally { await labDown({ name: LAB.name }); await server.stop(); }
