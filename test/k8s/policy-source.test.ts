/**
 * KubePolicySource against a real kube-apiserver: EgressPolicy and ClusterEgressPolicy objects
 * are followed through create, update and delete; an invalid one is rejected with its field
 * path, the others stay in force, and it fails closed (REL-06); a CiliumNetworkPolicy (its CRD installed from a fixture
 * after the source started) is read and converted.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { canonicalName } from '../../src/core/names.ts';
import { makeIdentity } from '../../src/identity/identity.ts';
import type { KubeApi } from '../../src/k8s/api.ts';
import { CLUSTER_EGRESS_POLICY, EGRESS_POLICY } from '../../src/k8s/crd.ts';
import { KubePolicySource } from '../../src/k8s/policy-source.ts';
import type { CompiledPolicies } from '../../src/policy/compile.ts';
import { decide } from '../../src/policy/decide.ts';
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

  test('an invalid policy is rejected and reported with its field path; the valid ones stay', async () => {
    await apply(api, egressPolicy('bad', { egress: [{ toFQDNs: [{ pattern: '*.com' }] }] }));
    const inForce = (name: string) => source.current().policies.some((p) => p.ref.name === name);
    await whenTrue(changed, () => (inForce('bad') ? true : undefined), 'rejected');
    const [bad] = source.rejected();
    assert.equal(bad?.object, 'EgressPolicy shop/bad');
    assert.equal(bad?.errors[0]?.path, 'spec.egress[0].toFQDNs[0].pattern');
    // web stays as it was; bad is in force only as a deny-all over its subject (fail closed).
    assert.deepEqual(names(source.current()), ['EgressPolicy/shop/bad', 'EgressPolicy/shop/web']);
    const kept = source.current().policies.find((p) => p.ref.name === 'bad');
    assert.deepEqual(kept?.rules, []);
    await remove(api, EGRESS_POLICY, 'shop', 'bad');
    await whenTrue(changed, () => (inForce('bad') ? undefined : true), 'bad removed');
    assert.deepEqual(source.rejected(), []);
  });

  test('REL-06: an invalid update keeps the last good version; a never-valid object fails closed', async () => {
    const web = source.current().policies.find((p) => p.ref.name === 'web');
    assert.ok(web);
    const valid = {
      podSelector: { matchLabels: { app: 'web' } },
      mode: 'Audit',
      egress: [{ toFQDNs: [{ name: 'api.example.com' }, { pattern: '*.example.org' }] }],
    };
    await apply(api, egressPolicy('web', { ...valid, egress: [{ toFQDNs: [{ pattern: '*.com' }] }] }));
    await apply(
      api,
      egressPolicy('db', {
        podSelector: { matchLabels: { app: 'db' } },
        egress: [{ toFQDNs: [{ pattern: '*.com' }] }],
      }),
    );
    // Both on one watch, in order: once db is in force, so is web's update.
    const inForce = (name: string) => source.current().policies.some((p) => p.ref.name === name);
    await whenTrue(changed, () => (inForce('db') ? true : undefined), 'both rejected');
    assert.equal(source.rejected().length, 2);
    const set = source.current();
    assert.equal(
      set.policies.find((p) => p.ref.name === 'web'),
      web,
      'the last accepted version of web',
    );
    const at = (labels: Record<string, string>) =>
      decide(
        set,
        makeIdentity(`pod:shop/${labels['app']}`, 'shop', labels),
        canonicalName('x.example.org'),
        'TCP',
        443,
      );
    assert.deepEqual([at({ app: 'web' }).verdict, at({ app: 'web' }).mode], ['allow', 'Audit']);
    assert.deepEqual([at({ app: 'db' }).verdict, at({ app: 'db' }).mode], ['deny', 'Enforce']);
    assert.equal(at({ app: 'other' }).mode, null, 'pods no object selects stay ungoverned');
    await apply(api, egressPolicy('web', valid));
    await remove(api, EGRESS_POLICY, 'shop', 'db');
    await whenTrue(changed, () => (inForce('db') ? undefined : true), 'fixed and removed');
    assert.deepEqual(source.rejected(), []);
    assert.equal(source.current().policies.find((p) => p.ref.name === 'web')?.rules[0]?.fqdns.length, 2);
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
