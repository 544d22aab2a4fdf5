/**
 * The Helm chart and the generated files under deploy/, against a real kube-apiserver:
 * - the generated CRDs and plain manifests are up to date with their sources;
 * - `helm template` renders (default values and every dialect on) and the API server accepts
 *   every rendered object (server-side apply, dry run, strict field validation);
 * - the agent and the controller run as their ServiceAccounts (TokenRequest tokens) under the
 *   chart's own RBAC: everything they need works, so a missing permission fails here, and what
 *   they must not do (the agent writing status, anyone reading Secrets) is refused.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';
import { KubernetesConfigSchema } from '../../src/config/kubernetes.ts';
import { validateConfig } from '../../src/config/load.ts';
import { type AgentConfig, AgentConfigSchema } from '../../src/config/schema.ts';
import { FOREIGN_DIALECTS } from '../../src/formats/registry.ts';
import { KubeApi, KubeApiError, type KubeObject } from '../../src/k8s/api.ts';
import { PolicyController } from '../../src/k8s/controller.ts';
import { KubeIdentityProvider } from '../../src/k8s/identity.ts';
import { KubePolicySource } from '../../src/k8s/policy-source.ts';
import { ensureNamespace, eventually, TestApiServer, testBinary } from './apiserver.ts';
import { apply, createPod, installCrds, quiet, readYamlDocs } from './helpers.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const CHART = path.join(ROOT, 'deploy/helm/namegate');
const NS = 'namegate-system';

function render(set: string[] = []): KubeObject[] {
  const out = execFileSync(
    testBinary('helm'),
    [
      'template',
      'namegate',
      CHART,
      '--namespace',
      NS,
      '--kube-version',
      'v1.34.12',
      ...set.flatMap((s) => ['--set', s]),
    ],
    { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
  );
  return parseAllDocuments(out)
    .map((d) => d.toJS() as KubeObject | null)
    .filter((d): d is KubeObject => d !== null);
}

const ALL_DIALECTS = FOREIGN_DIALECTS.map((d) => `dialects.${d}=true`);

test('generated CRDs and manifests under deploy/ are up to date', () => {
  try {
    execFileSync(path.join(ROOT, 'scripts/generate-deploy.sh'), ['--check'], {
      encoding: 'utf8',
      stdio: 'pipe',
    });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    assert.fail(
      `deploy/ is stale; run scripts/generate-deploy.sh\n${e.stderr ?? ''}\n${(e.stdout ?? '').slice(0, 4000)}`,
    );
  }
});

test('the chart renders the agent as the issue asks: host network, NET_ADMIN + NET_RAW only, /readyz, surge rollout', () => {
  const objs = render();
  const ds = objs.find((o) => o.kind === 'DaemonSet') as unknown as {
    spec: {
      updateStrategy: { rollingUpdate: { maxUnavailable: number; maxSurge: number } };
      template: {
        spec: {
          hostNetwork: boolean;
          containers: Array<{
            readinessProbe: { httpGet: { path: string } };
            securityContext: { privileged: boolean; capabilities: { add: string[]; drop: string[] } };
          }>;
        };
      };
    };
  };
  const pod = ds.spec.template.spec;
  assert.equal(pod.hostNetwork, true);
  const c = pod.containers[0]!;
  assert.deepEqual(c.securityContext.capabilities.add, ['NET_ADMIN', 'NET_RAW']);
  assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
  assert.equal(c.securityContext.privileged, false);
  assert.equal(c.readinessProbe.httpGet.path, '/readyz');
  assert.deepEqual(ds.spec.updateStrategy.rollingUpdate, { maxUnavailable: 0, maxSurge: 1 });
  const cm = objs.find((o) => o.kind === 'ConfigMap') as unknown as { data: { 'config.yaml': string } };
  const config = parse(cm.data['config.yaml']) as Record<string, unknown>;
  // The agent config with this chart's kubernetes section must be valid as a whole.
  const parsed = AgentConfigSchema.extend({ kubernetes: KubernetesConfigSchema }).safeParse(config);
  assert.ok(parsed.success, JSON.stringify(parsed.error?.issues));
});

/** The agent config the chart renders, validated as the agent loads it. */
function chartAgentConfig(set: string[] = []): { config: AgentConfig; ds: KubeObject } {
  const objs = render(set);
  const cm = objs.find((o) => o.kind === 'ConfigMap') as unknown as { data: { 'config.yaml': string } };
  const ds = objs.find((o) => o.kind === 'DaemonSet');
  assert.ok(ds);
  return { config: validateConfig(parse(cm.data['config.yaml']), '/etc/namegate', 'chart config'), ds };
}

test('the chart configures the agent for a cluster: internal CIDRs, DNS on every address for pods only, a checkpoint', () => {
  const { config, ds } = chartAgentConfig();
  // clusterCIDRs become the datapath's internal destinations (pods and Services).
  assert.deepEqual(config.datapath.internalCIDRs, ['10.244.0.0/16', '10.96.0.0/12']);
  // podCIDRs are where governed sources live: every address in them is governed by default, and
  // a pod cannot send with another pod's address (L3-05, K8S-04).
  assert.deepEqual(config.datapath.sourceCIDRs, ['10.244.0.0/16']);
  assert.equal(config.datapath.antiSpoof, true);
  // `redirect to :port` delivers to the address of the incoming interface: the proxy must listen
  // on the wildcard, and on the host network it must then refuse what is not a pod of the node.
  assert.deepEqual(config.dns.listen, ['0.0.0.0:5353', '[::]:5353']);
  assert.equal(config.dns.unknownSources, 'refuse');
  assert.deepEqual(config.dns.passThroughZones, ['cluster.local']);
  // The checkpoint lives on the node (stateHostPath), mounted where the config points.
  const checkpoint = config.store.checkpoint?.path ?? '';
  assert.equal(checkpoint, '/var/lib/namegate/store.ckpt');
  const pod = (
    ds as unknown as {
      spec: {
        template: {
          spec: {
            containers: Array<{ volumeMounts: Array<{ name: string; mountPath: string }> }>;
            volumes: Array<{ name: string; hostPath?: { path: string } }>;
          };
        };
      };
    }
  ).spec.template.spec;
  const mount = pod.containers[0]?.volumeMounts.find((m) => checkpoint.startsWith(`${m.mountPath}/`));
  assert.ok(mount, 'the checkpoint folder is a volume mount');
  assert.equal(pod.volumes.find((v) => v.name === mount.name)?.hostPath?.path, '/var/lib/namegate');

  // clusterCIDRs and podCIDRs set on the command line win, dual-stack included; other datapath
  // keys stay. Pods are internal destinations even when clusterCIDRs leave them out.
  const custom = chartAgentConfig([
    'clusterCIDRs={10.42.0.0/16,10.43.0.0/16,fd00:42::/56}',
    'podCIDRs={10.42.0.0/16,fd00:42::/56,10.50.0.0/16}',
    'antiSpoof=false',
    'agent.config.datapath.logDrops=true',
  ]).config;
  assert.deepEqual(custom.datapath.internalCIDRs, [
    '10.42.0.0/16',
    '10.43.0.0/16',
    'fd00:42::/56',
    '10.50.0.0/16',
  ]);
  assert.deepEqual(custom.datapath.sourceCIDRs, ['10.42.0.0/16', 'fd00:42::/56', '10.50.0.0/16']);
  assert.equal(custom.datapath.antiSpoof, false);
  assert.equal(custom.datapath.logDrops, true);
  // An empty podCIDRs turns default governance off (the agent warns at startup).
  assert.deepEqual(chartAgentConfig(['podCIDRs=null']).config.datapath.sourceCIDRs, []);
  // A malformed CIDR is caught where the agent loads its config, with its path.
  assert.throws(
    () => chartAgentConfig(['clusterCIDRs={10.42.0.0/8}']),
    /datapath\.internalCIDRs\[0\]: .*host bits/,
  );
  assert.throws(
    () => chartAgentConfig(['podCIDRs={0.0.0.0/0}']),
    /datapath\.sourceCIDRs\[0\]: .*every source/,
  );
});

describe('chart on a real API server', () => {
  let server: TestApiServer;
  let admin: KubeApi;

  before(async () => {
    server = await TestApiServer.start();
    admin = server.adminApi();
    await installCrds(admin);
    await installCrds(admin, readYamlDocs(path.join(ROOT, 'test/testdata/k8s/cilium-crds.yaml')));
    await ensureNamespace(admin, NS);
  });
  after(async () => {
    await server?.stop();
  });

  test('every rendered object is accepted (server-side apply, dry run, strict)', async () => {
    for (const values of [[], ALL_DIALECTS, ['createNamespace=true']]) {
      for (const obj of render(values)) {
        await apply(admin, obj, { dryRun: true }).catch((err: Error) => {
          throw new Error(`${obj.kind} ${obj.metadata?.name} (values ${values.join(',')}): ${err.message}`);
        });
      }
    }
  });

  test('the plain manifests are accepted too', async () => {
    const docs = readYamlDocs(path.join(ROOT, 'deploy/manifests/namegate.yaml'));
    assert.ok(docs.some((d) => d.kind === 'Namespace'));
    for (const obj of docs) await apply(admin, obj, { dryRun: true });
  });

  test('agent and controller run under the chart RBAC as their ServiceAccounts', async () => {
    // Install the chart's identities and RBAC for real (cilium on: the agent must read it too).
    for (const obj of render(['dialects.cilium=true'])) {
      if (
        ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'].includes(
          obj.kind ?? '',
        )
      ) {
        await apply(admin, obj);
      }
    }
    await ensureNamespace(admin, 'shop');
    await createPod(admin, {
      namespace: 'shop',
      name: 'web',
      node: 'n1',
      labels: { app: 'web' },
      ips: ['10.1.0.1'],
    });
    await apply(admin, {
      apiVersion: 'namegate.dev/v1alpha1',
      kind: 'EgressPolicy',
      metadata: { name: 'web', namespace: 'shop' },
      spec: {
        podSelector: { matchLabels: { app: 'web' } },
        egress: [{ toFQDNs: [{ name: 'api.example.com' }] }],
      },
    });

    const agentApi = new KubeApi((await server.serviceAccountConfig(NS, 'namegate-agent')).config);
    const identity = new KubeIdentityProvider({ api: agentApi, nodeName: 'n1', ...quiet() });
    const policies = new KubePolicySource({
      api: agentApi,
      ...quiet(),
      config: { dialects: { cilium: true, istio: false, npep: false, gke: false }, istioRegistryOnly: false },
    });
    const controllerApi = new KubeApi((await server.serviceAccountConfig(NS, 'namegate-controller')).config);
    const controller = new PolicyController({
      api: controllerApi,
      ...quiet(),
      leaseNamespace: NS,
      leaseName: 'namegate-controller',
      identity: 'controller-0',
      retryMs: 300,
      debounceMs: 20,
    });
    identity.start();
    policies.start();
    controller.start();
    try {
      // Every reflector must sync: a forbidden list/watch keeps it unready and fails here.
      await eventually('agent synced', () =>
        identity.notReadyReason() === null && policies.notReadyReason() === null ? true : undefined,
      );
      assert.equal(identity.lookup('10.1.0.1')?.key, 'pod:shop/web');
      assert.equal(policies.current().size, 1);
      await eventually('controller leads', () => (controller.elector.isLeader() ? true : undefined));
      const status = await eventually('status written by the controller', async () => {
        const obj = await admin.get<{ status?: { governedPods?: number } }>(
          '/apis/namegate.dev/v1alpha1/namespaces/shop/egresspolicies/web',
        );
        return obj.status?.governedPods === 1 ? obj.status : undefined;
      });
      assert.equal(status.governedPods, 1);

      const forbidden = async (api: KubeApi, method: string, p: string, body?: unknown) => {
        const err = await api
          .request(method, p, body === undefined ? {} : { body, contentType: 'application/merge-patch+json' })
          .then(
            () => null,
            (e: unknown) => e,
          );
        assert.ok(
          err instanceof KubeApiError && err.status === 403,
          `${method} ${p} must be forbidden, got ${String(err)}`,
        );
      };
      await forbidden(
        agentApi,
        'PATCH',
        '/apis/namegate.dev/v1alpha1/namespaces/shop/egresspolicies/web/status',
        {
          status: { rules: 99 },
        },
      );
      await forbidden(agentApi, 'GET', '/api/v1/namespaces/shop/secrets');
      await forbidden(controllerApi, 'GET', '/api/v1/namespaces/shop/secrets');
      await forbidden(
        controllerApi,
        'PATCH',
        '/apis/namegate.dev/v1alpha1/namespaces/shop/egresspolicies/web',
        {
          spec: { mode: 'Audit' },
        },
      );
    } finally {
      await controller.stop();
      await policies.stop();
      await identity.stop();
    }
  });
});
