/**
 * L3-09: host-network pods are out of namegate's reach (their packets carry the node's address,
 * so the datapath cannot tell them from the node itself). The identity provider must not turn
 * them into identities, and must not skip them silently either: each live one is logged once
 * (reason host_network_pod) and counted in namegate_k8s_host_network_pods, so an operator can
 * see what is not governed. Against a real kube-apiserver (pods patched through pods/status).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { KubeApi } from '../../src/k8s/api.ts';
import { KubeIdentityProvider, PODS } from '../../src/k8s/identity.ts';
import { k8sMetrics } from '../../src/k8s/metrics.ts';
import { createLogger } from '../../src/observe/log.ts';
import { createRegistry } from '../../src/observe/metrics.ts';
import { ensureNamespace, eventually, TestApiServer } from './apiserver.ts';
import { createPod, labelPod, remove, setPodIps, whenTrue } from './helpers.ts';

const NODE = 'node-a';
const NODE_IP = '192.0.2.10';

describe('L3-09: host-network pods are flagged, never governed', () => {
  let server: TestApiServer;
  let api: KubeApi;
  let provider: KubeIdentityProvider;
  const registry = createRegistry();
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger('k8s', {
    level: 'info',
    destination: { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) },
  });

  const gauge = async (): Promise<number> =>
    (await registry.getSingleMetric('namegate_k8s_host_network_pods')?.get())?.values[0]?.value ?? -1;
  const flagged = (key: string) =>
    lines.filter((l) => l['reason'] === 'host_network_pod' && l['identity'] === `pod:${key}`);
  const changed = (l: () => void) => provider.onChange(l);

  before(async () => {
    server = await TestApiServer.start();
    api = server.adminApi();
    await ensureNamespace(api, 'edge');
    // Before the start: one host-network pod of this node, one of another node, one normal pod.
    await createPod(api, {
      namespace: 'edge',
      name: 'ingress',
      node: NODE,
      ips: [NODE_IP],
      hostNetwork: true,
    });
    await createPod(api, {
      namespace: 'edge',
      name: 'ingress-b',
      node: 'node-b',
      ips: ['192.0.2.11'],
      hostNetwork: true,
    });
    await createPod(api, {
      namespace: 'edge',
      name: 'app',
      node: NODE,
      labels: { app: 'x' },
      ips: ['10.1.0.5'],
    });
    provider = new KubeIdentityProvider({ api, nodeName: NODE, logger, metrics: k8sMetrics(registry) });
    provider.start();
    await provider.synced;
  });
  after(async () => {
    await provider?.stop();
    await server?.stop();
  });

  test('after the first sync: the host-network pod of this node is flagged (log + gauge), not an identity', async () => {
    assert.equal(provider.lookup(NODE_IP), undefined, 'the node address is no identity');
    assert.equal(provider.lookup('10.1.0.5')?.key, 'pod:edge/app', 'the normal pod is one (control)');
    assert.deepEqual(provider.hostNetworkPods(), ['edge/ingress']);
    assert.equal(await gauge(), 1);
    const l = flagged('edge/ingress');
    assert.equal(l.length, 1, JSON.stringify(lines));
    assert.equal(l[0]?.['level'], 'warn');
    assert.equal(l[0]?.['event'], 'identity');
    assert.equal(flagged('edge/ingress-b').length, 0, "another node's pod is that node's business");
  });

  test('a new host-network pod is flagged once; a relabel does not log it again', async () => {
    await createPod(api, {
      namespace: 'edge',
      name: 'exporter',
      node: NODE,
      ips: [NODE_IP],
      hostNetwork: true,
    });
    await eventually('exporter flagged', async () => ((await gauge()) === 2 ? true : undefined));
    await labelPod(api, 'edge', 'exporter', { app: 'node-exporter' });
    // An event after the relabel proves the relabel was processed (watch order).
    await createPod(api, { namespace: 'edge', name: 'marker', node: NODE, ips: ['10.1.0.9'] });
    await whenTrue(changed, () => provider.lookup('10.1.0.9'), 'marker pod');
    assert.equal(flagged('edge/exporter').length, 1, 'logged once per pod');
    assert.equal(provider.lookup(NODE_IP), undefined);
    assert.deepEqual([...provider.hostNetworkPods()].sort(), ['edge/exporter', 'edge/ingress']);
  });

  test('a deleted or finished host-network pod leaves the count', async () => {
    await remove(api, PODS, 'edge', 'exporter');
    await eventually('exporter gone', async () => ((await gauge()) === 1 ? true : undefined));
    await setPodIps(api, 'edge', 'ingress', [NODE_IP], 'Succeeded');
    await eventually('ingress finished', async () => ((await gauge()) === 0 ? true : undefined));
    assert.deepEqual(provider.hostNetworkPods(), []);
  });
});
