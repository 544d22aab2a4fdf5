/**
 * KubeIdentityProvider against a real kube-apiserver: pods of its node become identities when
 * they get addresses (patched through pods/status, as a kubelet would), follow relabels and
 * namespace labels, disappear on delete or a terminal phase, and pods of other nodes and
 * host-network pods are ignored.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { KubeApi } from '../../src/k8s/api.ts';
import { type IdentityDelta, KubeIdentityProvider, PODS } from '../../src/k8s/identity.ts';
import { ensureNamespace, TestApiServer } from './apiserver.ts';
import { createPod, labelPod, quiet, remove, setPodIps, whenTrue } from './helpers.ts';

describe('identity provider', () => {
  let server: TestApiServer;
  let api: KubeApi;
  let provider: KubeIdentityProvider;
  const deltas: IdentityDelta[] = [];

  before(async () => {
    server = await TestApiServer.start();
    api = server.adminApi();
    await ensureNamespace(api, 'shop', { team: 'payments' });
    await createPod(api, {
      namespace: 'shop',
      name: 'early',
      node: 'node-a',
      labels: { app: 'early' },
      ips: ['10.1.0.1'],
    });
    provider = new KubeIdentityProvider({ api, nodeName: 'node-a', ...quiet() });
    provider.onChange((d) => deltas.push(d));
    provider.start();
    await provider.synced;
  });
  after(async () => {
    await provider?.stop();
    await server?.stop();
  });

  const changed = (l: () => void) => provider.onChange(l);

  test('a pod that existed before the start is known after the first sync', () => {
    assert.equal(provider.notReadyReason(), null);
    const id = provider.lookup('10.1.0.1');
    assert.equal(id?.key, 'pod:shop/early');
    assert.deepEqual(id?.labels, { app: 'early' });
    assert.equal(id?.namespaceLabels['team'], 'payments');
    assert.equal(id?.namespaceLabels['kubernetes.io/metadata.name'], 'shop');
  });

  test('a pod is unknown until it has an address, then known (dual stack too)', async () => {
    await createPod(api, { namespace: 'shop', name: 'web', node: 'node-a', labels: { app: 'web' } });
    assert.equal(provider.lookup('10.1.0.2'), undefined);
    await setPodIps(api, 'shop', 'web', ['10.1.0.2', 'fd00::2']);
    const id = await whenTrue(changed, () => provider.lookup('fd00::2'), 'web pod v6 identity');
    assert.equal(id.key, 'pod:shop/web');
    assert.equal(provider.lookup('10.1.0.2'), id);
  });

  test('unknown addresses stay unknown', () => {
    assert.equal(provider.lookup('10.9.9.9'), undefined);
  });

  test('pods of other nodes and host-network pods are ignored (L3-09)', async () => {
    await createPod(api, {
      namespace: 'shop',
      name: 'elsewhere',
      node: 'node-b',
      labels: { app: 'x' },
      ips: ['10.2.0.1'],
    });
    await createPod(api, {
      namespace: 'shop',
      name: 'hostnet',
      node: 'node-a',
      ips: ['192.0.2.10'],
      hostNetwork: true,
    });
    // An event after both proves they were processed (watch order is resourceVersion order).
    await createPod(api, { namespace: 'shop', name: 'marker', node: 'node-a', ips: ['10.1.0.99'] });
    await whenTrue(changed, () => provider.lookup('10.1.0.99'), 'marker pod');
    assert.equal(provider.lookup('10.2.0.1'), undefined);
    assert.equal(provider.lookup('192.0.2.10'), undefined);
  });

  test('K8S-02: a relabelled pod gets a new identity object with the new labels', async () => {
    const before = provider.lookup('10.1.0.2');
    await labelPod(api, 'shop', 'web', { app: 'web2', tier: 'front' });
    const id = await whenTrue(
      changed,
      () =>
        provider.lookup('10.1.0.2')?.labels['tier'] === 'front' ? provider.lookup('10.1.0.2') : undefined,
      'relabel',
    );
    assert.notEqual(id, before);
    assert.deepEqual(id.labels, { app: 'web2', tier: 'front' });
  });

  test("a namespace's labels reach its pods' identities", async () => {
    await api.request('PATCH', '/api/v1/namespaces/shop', {
      body: { metadata: { labels: { team: 'checkout' } } },
      contentType: 'application/merge-patch+json',
    });
    const id = await whenTrue(
      changed,
      () =>
        provider.lookup('10.1.0.1')?.namespaceLabels['team'] === 'checkout'
          ? provider.lookup('10.1.0.1')
          : undefined,
      'namespace relabel',
    );
    assert.equal(id.key, 'pod:shop/early');
  });

  test('a deleted pod is gone, and listeners hear of the removal with its old identity', async () => {
    deltas.length = 0;
    await remove(api, PODS, 'shop', 'early');
    await whenTrue(changed, () => (provider.lookup('10.1.0.1') === undefined ? true : undefined), 'delete');
    const removal = deltas.flatMap((d) => d.removed).find(([ip]) => ip === '10.1.0.1');
    assert.equal(removal?.[1].key, 'pod:shop/early');
  });

  test('an address reused by a new pod belongs to the new pod only after the old one is gone', async () => {
    deltas.length = 0;
    await createPod(api, {
      namespace: 'shop',
      name: 'reuse',
      node: 'node-a',
      labels: { app: 'new' },
      ips: ['10.1.0.1'],
    });
    const id = await whenTrue(changed, () => provider.lookup('10.1.0.1'), 'reused address');
    assert.equal(id.key, 'pod:shop/reuse');
    assert.equal(id.labels['app'], 'new');
  });

  test('a pod that finished (Succeeded) gives its address up', async () => {
    await setPodIps(api, 'shop', 'marker', ['10.1.0.99'], 'Succeeded');
    await whenTrue(
      changed,
      () => (provider.lookup('10.1.0.99') === undefined ? true : undefined),
      'terminal phase',
    );
  });

  test('two live pods claiming one address: the newest wins, and the survivor keeps it', async () => {
    await createPod(api, {
      namespace: 'shop',
      name: 'dup',
      node: 'node-a',
      labels: { app: 'dup' },
      ips: ['10.1.0.2'],
    });
    const id = await whenTrue(
      changed,
      () => (provider.lookup('10.1.0.2')?.key === 'pod:shop/dup' ? provider.lookup('10.1.0.2') : undefined),
      'dup',
    );
    assert.equal(id.labels['app'], 'dup');
    await remove(api, PODS, 'shop', 'dup');
    await whenTrue(
      changed,
      () => (provider.lookup('10.1.0.2')?.key === 'pod:shop/web' ? true : undefined),
      'survivor',
    );
  });
});
