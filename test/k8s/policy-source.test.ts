/**
 * KubePolicySource against a real kube-apiserver: EgressPolicy and ClusterEgressPolicy objects
 * are followed through create, update and delete; an invalid one is excluded with its field
 * path and the others stay in force; a CiliumNetworkPolicy (its CRD installed from a fixture
 * after the source started) is read and converted.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeIdentity } from '../../src/identity/identity.ts';
import type { KubeApi } from '../../src/k8s/api.ts';
import { CLUSTER_EGRESS_POLICY, EGRESS_POLICY } from '../../src/k8s/crd.ts';
import { KubePolicySource } from '../../src/k8s/policy-source.ts';
import type { CompiledPolicies } from '../../src/policy/compile.ts';
import { ensureNamespace, TestApiServer } from './apiserver.ts';
import { apply, installCrds, quiet, readYamlDocs, remove, whenTrue } from './helpers.ts';

const TESTDATA = path.resolve(import.meta.dirname, '../testdata/k8s');

function names(set: CompiledPolicies): string[] {
  return set.policies.map((p) => `${p.ref.kind}/${p.ref.namespace ?? ''}/${p.ref.name}`).sort();
}

function egressPolicy(name: string, spec: Record<string, unknown>) {
  return {
    apiVersion: 'namegate.dev/v1alpha1',
    kind: 'EgressPolicy',
    metadata: { name, namespace: 'shop' },
    spec,
  };
}

describe('policy source', () => {
  let server: TestApiServer;
  let api: KubeApi;
  let source: KubePolicySource;

  before(async () => {
    server = await TestApiServer.start();
    api = server.adminApi();
    await installCrds(api);
    await ensureNamespace(api, 'shop');
    source = new KubePolicySource({
      api,
      ...quiet(),
      config: { dialects: { cilium: true, istio: true, npep: false, gke: false }, istioRegistryOnly: false },
      absentRetryMs: 300,
    });
    source.start();
    await source.synced;
  });
  after(async () => {
    await source?.stop();
    await server?.stop();
  });

  const changed = (l: () => void) => source.onChange(l);

  test('synced with nothing in the API: an empty set, ready', () => {
    assert.equal(source.current().size, 0);
    assert.equal(source.notReadyReason(), null);
  });

  test('an EgressPolicy created in the API comes into force (a watch event, not a deadline)', async () => {
    await apply(
      api,
      egressPolicy('web', {
        podSelector: { matchLabels: { app: 'web' } },
        egress: [{ toFQDNs: [{ name: 'api.example.com' }] }],
      }),
    );
    const set = await whenTrue(
      changed,
      () => (source.current().size === 1 ? source.current() : undefined),
      'create',
    );
    const web = makeIdentity('pod:shop/w', 'shop', { app: 'web' });
    assert.equal(set.selection(web).mode, 'Enforce');
    assert.equal(set.fqdns.size, 1);
  });

  test('an update comes into force', async () => {
    await apply(
      api,
      egressPolicy('web', {
        podSelector: { matchLabels: { app: 'web' } },
        mode: 'Audit',
        egress: [{ toFQDNs: [{ name: 'api.example.com' }, { pattern: '*.example.org' }] }],
      }),
    );
    const set = await whenTrue(
      changed,
      () => (source.current().policies[0]?.mode === 'Audit' ? source.current() : undefined),
      'update',
    );
    assert.equal(set.fqdns.size, 2);
  });

  test('an invalid policy is excluded and reported with its field path; the valid ones stay', async () => {
    await apply(api, egressPolicy('bad', { egress: [{ toFQDNs: [{ pattern: '*.com' }] }] }));
    await whenTrue(changed, () => (source.rejected().length === 1 ? true : undefined), 'rejected');
    const [bad] = source.rejected();
    assert.equal(bad?.object, 'EgressPolicy shop/bad');
    assert.equal(bad?.errors[0]?.path, 'spec.egress[0].toFQDNs[0].pattern');
    assert.deepEqual(names(source.current()), ['EgressPolicy/shop/web']);
    await remove(api, EGRESS_POLICY, 'shop', 'bad');
    await whenTrue(changed, () => (source.rejected().length === 0 ? true : undefined), 'bad removed');
  });

  test('a ClusterEgressPolicy joins the set; deletes leave it', async () => {
    await apply(api, {
      apiVersion: 'namegate.dev/v1alpha1',
      kind: 'ClusterEgressPolicy',
      metadata: { name: 'everyone' },
      spec: {
        namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'shop' } },
        egress: [{ toCIDRs: [{ cidr: '203.0.113.0/24' }] }],
      },
    });
    await whenTrue(changed, () => (source.current().size === 2 ? true : undefined), 'cluster policy');
    await remove(api, CLUSTER_EGRESS_POLICY, undefined, 'everyone');
    await remove(api, EGRESS_POLICY, 'shop', 'web');
    await whenTrue(changed, () => (source.current().size === 0 ? true : undefined), 'deletes');
  });

  test('a CiliumNetworkPolicy with toFQDNs is read once its CRD is installed, and converted', async () => {
    await installCrds(api, readYamlDocs(path.join(TESTDATA, 'cilium-crds.yaml')));
    const [cnp] = readYamlDocs(path.join(TESTDATA, 'cnp-tofqdns.yaml'));
    await apply(api, cnp!, { strict: false });
    const converted = await whenTrue(
      changed,
      () =>
        source.current().size > 0 || source.rejected().some((r) => r.kind === 'CiliumNetworkPolicy')
          ? true
          : undefined,
      'CiliumNetworkPolicy read',
    );
    assert.ok(converted);
    assert.deepEqual(source.rejected(), []);
    const set = source.current();
    const web = makeIdentity('pod:shop/w', 'shop', { app: 'web' });
    const other = makeIdentity('pod:shop/o', 'shop', { app: 'other' });
    assert.equal(set.selection(web).mode, 'Enforce');
    assert.equal(set.selection(other).mode, null);
    const texts = set.policies.flatMap((p) => p.rules.flatMap((r) => r.fqdns.map((f) => f.text)));
    assert.ok(texts.includes('api.example.com'), texts.join(','));
  });
});
