/**
 * The reflector through what real watches go through, against a real kube-apiserver and etcd:
 * an API server crash and restart (against the same etcd), a 410 Gone (etcd compacted past the
 * watch's resourceVersion), and a silent stall (the API server frozen with SIGSTOP: no error, no
 * byte). After each, the store equals the API's content and no change is lost.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { KubeApi, ResourceType } from '../../src/k8s/api.ts';
import { k8sMetrics } from '../../src/k8s/metrics.ts';
import { Reflector, type ReflectorEvent } from '../../src/k8s/reflector.ts';
import { silentLogger } from '../../src/observe/log.ts';
import { createRegistry } from '../../src/observe/metrics.ts';
import { ensureNamespace, eventually, TestApiServer } from './apiserver.ts';
import { remove } from './helpers.ts';

const CONFIGMAPS: ResourceType = {
  group: '',
  version: 'v1',
  plural: 'configmaps',
  kind: 'ConfigMap',
  namespaced: true,
};

async function putConfigMap(api: KubeApi, name: string, value: string): Promise<void> {
  await api.request('PATCH', `/api/v1/namespaces/r/configmaps/${name}`, {
    body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'r' }, data: { v: value } },
    contentType: 'application/apply-patch+yaml',
    query: { fieldManager: 'test', force: true },
  });
}

async function apiContent(api: KubeApi): Promise<Record<string, string>> {
  const list = await api.get<{ items: Array<{ metadata: { name: string }; data?: { v?: string } }> }>(
    '/api/v1/namespaces/r/configmaps',
  );
  return Object.fromEntries(list.items.map((i) => [`r/${i.metadata.name}`, i.data?.v ?? '']));
}

/** etcd's current revision and a compaction to it (the etcd v3 JSON gateway). */
async function compactEtcd(server: TestApiServer): Promise<void> {
  const base = `http://127.0.0.1:${server.etcdPort}/v3/kv`;
  const range = (await (
    await fetch(`${base}/range`, {
      method: 'POST',
      body: JSON.stringify({ key: Buffer.from('/').toString('base64') }),
    })
  ).json()) as { header: { revision: string } };
  const res = await fetch(`${base}/compaction`, {
    method: 'POST',
    body: JSON.stringify({ revision: range.header.revision, physical: true }),
  });
  assert.equal(res.status, 200, await res.text());
}

describe('reflector resilience', () => {
  let server: TestApiServer;
  let api: KubeApi;
  let reflector: Reflector<string>;
  let metrics: ReturnType<typeof k8sMetrics>;
  const events: ReflectorEvent<string>[] = [];

  const content = (): Record<string, string> => Object.fromEntries(reflector.entries());
  const restarts = async (reason: string): Promise<number> =>
    (await metrics.watchRestarts.get()).values.find((v) => v.labels['reason'] === reason)?.value ?? 0;
  const converged = async (what: string): Promise<void> => {
    await eventually(
      what,
      async () => {
        const want = await apiContent(api);
        return JSON.stringify(content()) === JSON.stringify(Object.fromEntries(Object.entries(want).sort()))
          ? true
          : undefined;
      },
      30_000,
    );
  };

  before(async () => {
    // ConfigMaps bypass the watch cache, so watches read etcd directly and see its compaction.
    server = await TestApiServer.start({ extraArgs: ['--watch-cache-sizes=configmaps#0'] });
    api = server.adminApi({ timeoutMs: 5000 });
    await ensureNamespace(api, 'r');
    metrics = k8sMetrics(createRegistry());
    reflector = new Reflector<string>({
      api,
      resource: CONFIGMAPS,
      namespace: 'r',
      transform: (o) => (o['data'] as { v?: string } | undefined)?.v ?? '',
      logger: silentLogger(),
      metrics,
      watchTimeoutSeconds: 1,
      stallMs: 3000, // above the longest server-side watch (2 s): a quiet watch is not a stall
      backoffInitialMs: 50,
      backoffMaxMs: 500,
      // Without bookmarks the resourceVersion stays at the last ConfigMap event, so the 410 test
      // below does not depend on when the server last sent one.
      bookmarks: false,
    });
    reflector.onChange((batch) => events.push(...batch));
    await putConfigMap(api, 'a', '1');
    reflector.start();
    await reflector.synced;
  });
  after(async () => {
    await reflector?.stop();
    await server?.stop();
  });

  test('first sync and live events', async () => {
    assert.deepEqual(content(), { 'r/a': '1' });
    await putConfigMap(api, 'b', '1');
    await converged('b seen');
  });

  test('K8S-04: survives an API server crash and restart; no change is lost', async () => {
    await server.stopApiServer('SIGKILL');
    await server.startApiServer();
    // Changes right after the restart, while the reflector may still be backing off.
    await putConfigMap(api, 'a', '2');
    await remove(api, CONFIGMAPS, 'r', 'b');
    await putConfigMap(api, 'c', '1');
    await converged('after restart');
    assert.deepEqual(content(), { 'r/a': '2', 'r/c': '1' });
    assert.ok((await restarts('error')) >= 1);
    assert.ok(
      events.some((e) => e.type === 'deleted' && e.key === 'r/b'),
      'the delete was delivered',
    );
  });

  test('K8S-04: a 410 Gone (etcd compacted past the resourceVersion) leads to a relist', async () => {
    const gone = await restarts('gone');
    // Move etcd's revision past the reflector's without touching ConfigMaps, then compact.
    for (let i = 0; i < 5; i++) {
      await api.request('POST', '/api/v1/namespaces/r/secrets', {
        body: { apiVersion: 'v1', kind: 'Secret', metadata: { generateName: 's-' }, data: {} },
      });
    }
    await compactEtcd(server);
    await eventually(
      '410 seen',
      async () => ((await restarts('gone')) > gone ? true : undefined),
      30_000,
    ).catch(async (err: Error) => {
      const all = (await metrics.watchRestarts.get()).values.map((v) => `${v.labels['reason']}=${v.value}`);
      throw new Error(`${err.message}; restarts: ${all.join(' ')}`);
    });
    await putConfigMap(api, 'd', '1');
    await converged('after 410');
  });

  test('K8S-04: a silent stall (API server frozen) is caught by the watchdog; state resyncs after', async () => {
    const stalls = await restarts('stall');
    server.freezeApiServer(true);
    try {
      await eventually(
        'stall detected',
        async () => ((await restarts('stall')) > stalls ? true : undefined),
        30_000,
      );
    } finally {
      server.freezeApiServer(false);
    }
    await putConfigMap(api, 'a', '3');
    await converged('after the stall');
    assert.equal(content()['r/a'], '3');
  });
});
