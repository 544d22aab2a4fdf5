/**
 * The controller against a real kube-apiserver: it takes the Lease, writes status (Accepted with
 * the field path when invalid, Programmed, observedGeneration, rules, governed pods) through the
 * status subresource; a second controller writes nothing while the first holds the Lease and
 * takes over when the first stops.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { KubeApi } from '../../src/k8s/api.ts';
import { PolicyController } from '../../src/k8s/controller.ts';
import { k8sMetrics } from '../../src/k8s/metrics.ts';
import type { Condition, PolicyStatus } from '../../src/k8s/status.ts';
import { createLogger, silentLogger } from '../../src/observe/log.ts';
import { createRegistry } from '../../src/observe/metrics.ts';
import { ensureNamespace, eventually, TestApiServer } from './apiserver.ts';
import { apply, createPod, installCrds, labelPod } from './helpers.ts';

function controller(api: KubeApi, identity: string) {
  const registry = createRegistry();
  const metrics = k8sMetrics(registry);
  const c = new PolicyController({
    api,
    logger: process.env['DEBUG_K8S'] ? createLogger(identity) : silentLogger(),
    metrics,
    leaseNamespace: 'namegate-system',
    leaseName: 'namegate-controller',
    identity,
    leaseDurationSeconds: 3,
    retryMs: 300,
    debounceMs: 20,
  });
  const writes = async () => (await metrics.statusWrites.get()).values.reduce((n, v) => n + v.value, 0);
  return { c, writes };
}

async function statusOf(api: KubeApi, name: string): Promise<PolicyStatus | undefined> {
  const obj = await api.get<{ status?: PolicyStatus }>(
    `/apis/namegate.dev/v1alpha1/namespaces/shop/egresspolicies/${name}`,
  );
  return obj.status;
}

function condition(s: PolicyStatus | undefined, type: string): Condition | undefined {
  return s?.conditions?.find((c) => c.type === type);
}

describe('controller', () => {
  let server: TestApiServer;
  let api: KubeApi;
  const first = { c: null as PolicyController | null };
  const second = { c: null as PolicyController | null, writes: async () => 0 };

  before(async () => {
    server = await TestApiServer.start();
    api = server.adminApi();
    await installCrds(api);
    await ensureNamespace(api, 'namegate-system');
    await ensureNamespace(api, 'shop');
    await createPod(api, {
      namespace: 'shop',
      name: 'web-1',
      node: 'n1',
      labels: { app: 'web' },
      ips: ['10.1.0.1'],
    });
    await createPod(api, {
      namespace: 'shop',
      name: 'web-2',
      node: 'n2',
      labels: { app: 'web' },
      ips: ['10.1.0.2'],
    });
    await createPod(api, { namespace: 'shop', name: 'web-3', node: 'n2', labels: { app: 'web' } }); // no IP yet
    await createPod(api, {
      namespace: 'shop',
      name: 'db',
      node: 'n1',
      labels: { app: 'db' },
      ips: ['10.1.0.3'],
    });
  });
  after(async () => {
    await first.c?.stop();
    await second.c?.stop();
    await server?.stop();
  });

  test('the first controller takes the Lease; the second does not', async () => {
    const a = controller(api, 'controller-a');
    first.c = a.c;
    a.c.start();
    await a.c.synced;
    await eventually('a leads', () => (a.c.elector.isLeader() ? true : undefined));
    const lease = await api.get<{ spec: { holderIdentity: string } }>(
      '/apis/coordination.k8s.io/v1/namespaces/namegate-system/leases/namegate-controller',
    );
    assert.equal(lease.spec.holderIdentity, 'controller-a');

    const b = controller(api, 'controller-b');
    second.c = b.c;
    second.writes = b.writes;
    b.c.start();
    await b.c.synced;
    assert.equal(b.c.elector.isLeader(), false);
  });

  test('a valid policy gets Accepted, Programmed, observedGeneration, rules and governed pods', async () => {
    await apply(api, {
      apiVersion: 'namegate.dev/v1alpha1',
      kind: 'EgressPolicy',
      metadata: { name: 'web', namespace: 'shop' },
      spec: {
        podSelector: { matchLabels: { app: 'web' } },
        egress: [{ toFQDNs: [{ name: 'api.example.com' }] }, { toCIDRs: [{ cidr: '203.0.113.0/24' }] }],
      },
    });
    const status = await eventually('status written', async () => {
      const s = await statusOf(api, 'web');
      return condition(s, 'Accepted') ? s : undefined;
    });
    assert.equal(condition(status, 'Accepted')?.status, 'True');
    assert.equal(condition(status, 'Programmed')?.status, 'True');
    assert.equal(status?.observedGeneration, 1);
    assert.equal(status?.rules, 2);
    assert.equal(status?.governedPods, 2, 'web-1 and web-2 have addresses; web-3 has none yet');
  });

  test('counts follow pods, and observedGeneration follows spec changes', async () => {
    await labelPod(api, 'shop', 'db', { app: 'web' });
    await eventually('db counted', async () =>
      (await statusOf(api, 'web'))?.governedPods === 3 ? true : undefined,
    );
    await apply(api, {
      apiVersion: 'namegate.dev/v1alpha1',
      kind: 'EgressPolicy',
      metadata: { name: 'web', namespace: 'shop' },
      spec: {
        podSelector: { matchLabels: { app: 'web' } },
        egress: [{ toFQDNs: [{ name: 'api.example.com' }] }],
      },
    });
    const s = await eventually('generation 2', async () => {
      const st = await statusOf(api, 'web');
      return st?.observedGeneration === 2 ? st : undefined;
    });
    assert.equal(s.rules, 1);
  });

  test('an invalid policy gets Accepted=False with the field path of the problem', async () => {
    await apply(api, {
      apiVersion: 'namegate.dev/v1alpha1',
      kind: 'EgressPolicy',
      metadata: { name: 'bad', namespace: 'shop' },
      spec: { egress: [{ toFQDNs: [{ name: 'ok.example' }, { pattern: 'a*b.example.com' }] }] },
    });
    const s = await eventually('bad status', async () => {
      const st = await statusOf(api, 'bad');
      return condition(st, 'Accepted') ? st : undefined;
    });
    const accepted = condition(s, 'Accepted');
    assert.equal(accepted?.status, 'False');
    assert.equal(accepted?.reason, 'Invalid');
    assert.match(accepted?.message ?? '', /spec\.egress\[0\]\.toFQDNs\[1\]\.pattern/);
    assert.equal(condition(s, 'Programmed')?.status, 'False');
    // The valid policy is untouched.
    assert.equal(condition(await statusOf(api, 'web'), 'Accepted')?.status, 'True');
  });

  test('the standby wrote nothing; when the leader stops, the standby takes over and writes', async () => {
    const b = second.c!;
    assert.equal(b.elector.isLeader(), false);
    assert.equal(await second.writes(), 0, 'the standby wrote no status while the leader held the Lease');
    await first.c!.stop();
    first.c = null;
    await eventually('b leads', () => (b.elector.isLeader() ? true : undefined));
    await apply(api, {
      apiVersion: 'namegate.dev/v1alpha1',
      kind: 'EgressPolicy',
      metadata: { name: 'late', namespace: 'shop' },
      spec: { egress: [{ toFQDNs: [{ name: 'late.example' }] }] },
    });
    const s = await eventually('late status', async () => {
      const st = await statusOf(api, 'late');
      return condition(st, 'Accepted') ? st : undefined;
    });
    assert.equal(condition(s, 'Accepted')?.status, 'True');
    assert.ok((await second.writes()) > 0);
  });
});
