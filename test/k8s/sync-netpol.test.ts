/**
 * The NetworkPolicy target of `namegate sync` against a real kube-apiserver (and knotd as the
 * upstream): policies read from the API, NetworkPolicies written with server-side apply and
 * owner references, split when too large (with a condition), left alone when unchanged,
 * removed when their policy goes, and a ClusterEgressPolicy written to each selected namespace.
 * The API's own validation accepts every object written.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type RunningSync, startSync } from '../../src/agent/sync.ts';
import { validateConfig } from '../../src/config/load.ts';
import type { AgentConfig } from '../../src/config/schema.ts';
import type { KubeApi, KubeList, KubeObject } from '../../src/k8s/api.ts';
import { silentLogger } from '../../src/observe/log.ts';
import { startKnot, zone } from '../integration/dns/knot.ts';
import { ensureNamespace, eventually, TestApiServer } from './apiserver.ts';
import { apply, installCrds } from './helpers.ts';

interface NetworkPolicy extends KubeObject {
  spec: {
    podSelector: unknown;
    egress: Array<{ to: Array<{ ipBlock?: { cidr: string } }>; ports?: unknown[] }>;
  };
}

async function netpols(api: KubeApi, namespace: string): Promise<NetworkPolicy[]> {
  const list = await api.get<KubeList<NetworkPolicy>>(
    `/apis/networking.k8s.io/v1/namespaces/${namespace}/networkpolicies`,
  );
  return list.items.sort((a, b) => String(a.metadata?.name).localeCompare(String(b.metadata?.name)));
}

const ipBlocks = (objs: NetworkPolicy[]) =>
  objs
    .flatMap((o) =>
      o.spec.egress.flatMap((e) => e.to.map((p) => p.ipBlock?.cidr).filter((c) => c !== undefined)),
    )
    .sort();

describe('sync: NetworkPolicy target', () => {
  let server: TestApiServer;
  let api: KubeApi;
  let sync: RunningSync;
  const cleanups: Array<() => Promise<void>> = [];

  before(async () => {
    server = await TestApiServer.start();
    api = server.adminApi();
    await installCrds(api);
    await ensureNamespace(api, 'payments');
    await ensureNamespace(api, 'shop', { tier: 'apps' });
    await ensureNamespace(api, 'db', { tier: 'data' });
    const knot = await startKnot({ after: (fn: () => Promise<void>) => cleanups.push(fn) } as never, {
      'example.test': zone('example.test', [
        'api 60 A 203.0.113.10',
        'api 60 A 203.0.113.11',
        'api 60 AAAA 2001:db8::10',
        'base 60 A 198.51.100.7',
      ]),
    });
    await apply(api, {
      apiVersion: 'namegate.dev/v1alpha1',
      kind: 'EgressPolicy',
      metadata: { name: 'stripe', namespace: 'payments' },
      spec: {
        podSelector: { matchLabels: { app: 'api' } },
        egress: [
          {
            toFQDNs: [{ name: 'api.example.test' }, { pattern: '*.example.test' }],
            ports: [{ port: 443, protocol: 'TCP' }],
          },
        ],
      },
    });
    await apply(api, {
      apiVersion: 'namegate.dev/v1alpha1',
      kind: 'ClusterEgressPolicy',
      metadata: { name: 'base' },
      spec: {
        namespaceSelector: { matchLabels: { tier: 'apps' } },
        egress: [{ toFQDNs: [{ name: 'base.example.test' }], ports: [{ port: 80, protocol: 'TCP' }] }],
      },
    });
    const config: AgentConfig = validateConfig(
      {
        dns: { upstreams: [`${knot.host}:${knot.port}`] },
        kubernetes: { kubeconfig: server.kubeconfigPath },
        sync: { targets: { networkPolicy: { maxIpBlocksPerObject: 2 } } },
      },
      '/',
    );
    sync = await startSync({ config, log: silentLogger(), once: true, httpListen: null });
  });

  after(async () => {
    await sync?.stop();
    await server?.stop();
    for (const c of cleanups) await c();
  });

  test('one EgressPolicy becomes NetworkPolicies with its selector, /32 and /128, owner, split with a condition', async () => {
    const status = await sync.syncer.once();
    assert.equal((status.targets.networkpolicy as { ok: boolean }).ok, true, JSON.stringify(status.targets));
    const objs = await netpols(api, 'payments');
    assert.deepEqual(
      objs.map((o) => o.metadata?.name),
      ['namegate-stripe', 'namegate-stripe-2'],
    );
    assert.deepEqual(ipBlocks(objs), ['2001:db8::10/128', '203.0.113.10/32', '203.0.113.11/32']);
    const policy = await api.get<KubeObject>(
      '/apis/namegate.dev/v1alpha1/namespaces/payments/egresspolicies/stripe',
    );
    for (const o of objs) {
      assert.deepEqual(o.spec.podSelector, { matchLabels: { app: 'api' } });
      const owner = ((o.metadata?.['ownerReferences'] ?? []) as Array<{ uid: string; kind: string }>)[0];
      assert.equal(owner?.uid, policy.metadata?.uid);
      assert.equal(owner?.kind, 'EgressPolicy');
      const managers = (
        (o.metadata?.['managedFields'] ?? []) as Array<{ manager: string; operation: string }>
      ).map((m) => `${m.manager}/${m.operation}`);
      assert.deepEqual(managers, ['namegate-sync/Apply'], 'server-side apply, one field manager');
    }
    const detail = (
      status.targets.networkpolicy as {
        detail: { policies: Array<{ policy: string; condition: { reason: string } }> };
      }
    ).detail;
    const report = detail.policies.find((p) => p.policy === 'EgressPolicy payments/stripe');
    assert.equal(report?.condition.reason, 'Split');
    // The same condition on the policy's own status, written by server-side apply.
    const withStatus = await api.get<{
      status?: { conditions?: Array<{ type: string; reason: string; message: string }> };
    }>('/apis/namegate.dev/v1alpha1/namespaces/payments/egresspolicies/stripe');
    const split = withStatus.status?.conditions?.find((c) => c.type === 'NetworkPolicyWritten');
    assert.equal(split?.reason, 'Split');
    assert.match(split?.message ?? '', /written as 2 NetworkPolicy objects/);
    assert.deepEqual(
      status.wildcards.map((w) => w.pattern),
      ['*.example.test'],
    );
  });

  test('a ClusterEgressPolicy is written to every namespace its selector picks', async () => {
    assert.deepEqual(
      (await netpols(api, 'shop')).map((o) => o.metadata?.name),
      ['namegate-cluster-base'],
    );
    assert.deepEqual(await netpols(api, 'db'), []);
    assert.deepEqual(ipBlocks(await netpols(api, 'shop')), ['198.51.100.7/32']);
  });

  test('an unchanged pass writes nothing; a policy that goes takes its NetworkPolicies with it', async () => {
    const before = (await netpols(api, 'payments')).map((o) => o.metadata?.resourceVersion);
    await sync.syncer.pass();
    const again = (await netpols(api, 'payments')).map((o) => o.metadata?.resourceVersion);
    assert.deepEqual(again, before, 'no write when the content did not change');
    await api.request('DELETE', '/apis/namegate.dev/v1alpha1/namespaces/payments/egresspolicies/stripe');
    await eventually('NetworkPolicies of a deleted policy removed', async () => {
      await sync.syncer.pass();
      return (await netpols(api, 'payments')).length === 0 ? true : undefined;
    });
    assert.equal((await netpols(api, 'shop')).length, 1, 'the other policy keeps its object');
  });
});
