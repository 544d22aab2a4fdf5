/**
 * Propagation from the Kubernetes API to namegate: time from a change sent to a real
 * kube-apiserver (an EgressPolicy edit, or a pod relabel) until the policy source (compiled set)
 * or the identity provider reflects it, with 1,000 pods and 200 policies in the API.
 * The peer, measured in the same run on the same relabels: @kubernetes/client-node's informer.
 * Not a test: prints figures, the ratio and the machine, and ends with the RESULT line.
 */
import os from 'node:os';
import { CoreV1Api, makeInformer, type V1Pod } from '@kubernetes/client-node';
import { KubeIdentityProvider } from '../../src/k8s/identity.ts';
import { KubePolicySource } from '../../src/k8s/policy-source.ts';
import { ensureNamespace, TestApiServer } from '../../test/k8s/apiserver.ts';
import { apply, createPod, installCrds, labelPod, quiet } from '../../test/k8s/helpers.ts';

const PODS = Number(process.env['BENCH_PODS'] ?? 1000);
const POLICIES = Number(process.env['BENCH_POLICIES'] ?? 200);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 100);
const NAMESPACES = 20;
const NODE = 'bench-node';

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? Number.NaN;
}

async function pool<T>(items: T[], width: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await fn(items[next++] as T);
    }),
  );
}

function waitFor(
  subscribe: (l: () => void) => () => void,
  probe: () => boolean,
  timeoutMs = 30_000,
): Promise<number> {
  return new Promise((resolve, reject) => {
    let off = (): void => {};
    const timer = setTimeout(() => {
      off();
      reject(new Error('change not seen within 30 s'));
    }, timeoutMs);
    const check = (): void => {
      if (!probe()) return;
      clearTimeout(timer);
      off();
      resolve(performance.now());
    };
    off = subscribe(check);
    check();
  });
}

const fmt = (n: number): string => n.toFixed(1);

const server = await TestApiServer.start();
try {
  const api = server.adminApi();
  await installCrds(api);
  const ns = (i: number) => `team-${i % NAMESPACES}`;
  for (let i = 0; i < NAMESPACES; i++) await ensureNamespace(api, ns(i));

  let t = performance.now();
  const podIndexes = Array.from({ length: PODS }, (_, i) => i);
  await pool(podIndexes, 16, (i) =>
    createPod(api, {
      namespace: ns(i),
      name: `pod-${i}`,
      node: NODE,
      labels: { app: `app-${i % POLICIES}`, gen: '0' },
      ips: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`],
    }),
  );
  console.log(`created ${PODS} pods with IPs on ${NODE} in ${fmt(performance.now() - t)} ms`);
  t = performance.now();
  const policy = (i: number, extra: string[]) => ({
    apiVersion: 'namegate.dev/v1alpha1',
    kind: 'EgressPolicy',
    metadata: { name: `policy-${i}`, namespace: ns(i) },
    spec: {
      podSelector: { matchLabels: { app: `app-${i}` } },
      egress: [
        {
          toFQDNs: [{ name: `api-${i}.example.com` }, ...extra.map((name) => ({ name }))],
          ports: [{ port: 443 }],
        },
        { toFQDNs: [{ pattern: `*.svc-${i}.example.org` }] },
        { toCIDRs: [{ cidr: '203.0.113.0/24' }] },
      ],
    },
  });
  await pool(
    Array.from({ length: POLICIES }, (_, i) => i),
    16,
    async (i) => {
      await apply(api, policy(i, []));
    },
  );
  console.log(`created ${POLICIES} policies in ${fmt(performance.now() - t)} ms`);

  const { logger, metrics } = quiet();
  t = performance.now();
  const identity = new KubeIdentityProvider({ api, nodeName: NODE, logger, metrics });
  const source = new KubePolicySource({
    api,
    logger,
    metrics,
    config: { dialects: { cilium: false, istio: false, npep: false, gke: false }, istioRegistryOnly: false },
  });
  identity.start();
  source.start();
  await Promise.all([identity.synced, source.synced]);
  console.log(
    `namegate synced ${identity.size} identities and ${source.current().size} policies in ${fmt(performance.now() - t)} ms`,
  );

  // The peer: client-node's informer on the same pods (its watch takes no field selector; every
  // pod of this run is on NODE, so both see the same objects).
  const kc = server.adminConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const informer = makeInformer<V1Pod>(kc, '/api/v1/pods', () =>
    core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${NODE}` }),
  );
  const informerListeners = new Set<() => void>();
  const notify = (): void => {
    for (const l of informerListeners) l();
  };
  informer.on('update', notify);
  informer.on('add', notify);
  t = performance.now();
  await informer.start();
  console.log(
    `client-node informer synced ${informer.list().length} pods in ${fmt(performance.now() - t)} ms`,
  );
  const subscribeInformer = (l: () => void) => {
    informerListeners.add(l);
    return () => informerListeners.delete(l);
  };

  const policyMs: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const i = (r * 7) % POLICIES;
    const marker = `round-${r}.example.net`;
    const start = performance.now();
    const seen = waitFor(
      (l) => source.onChange(l),
      () =>
        source
          .current()
          .policies.some(
            (p) => p.ref.name === `policy-${i}` && p.rules[0]?.fqdns.some((f) => f.text === marker),
          ),
    );
    await apply(api, policy(i, [marker]));
    policyMs.push((await seen) - start);
  }

  const relabelMs: number[] = [];
  const informerMs: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const i = (r * 13) % PODS;
    const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    const gen = `${r + 1}`;
    const start = performance.now();
    const ours = waitFor(
      (l) => identity.onChange(l),
      () => identity.lookup(ip)?.labels['gen'] === gen,
    );
    const theirs = waitFor(subscribeInformer, () =>
      informer
        .list(ns(i))
        .some((p) => p.metadata?.name === `pod-${i}` && p.metadata?.labels?.['gen'] === gen),
    );
    await labelPod(api, ns(i), `pod-${i}`, { gen });
    relabelMs.push((await ours) - start);
    informerMs.push((await theirs) - start);
  }
  await informer.stop();
  await source.stop();
  await identity.stop();

  const line = (what: string, xs: number[]) =>
    console.log(
      `${what.padEnd(44)} p50 ${fmt(quantile(xs, 0.5)).padStart(7)} ms   p99 ${fmt(quantile(xs, 0.99)).padStart(7)} ms`,
    );
  console.log(`\n${ROUNDS} rounds each; times from sending the change to the API until it is visible`);
  line('namegate policy edit -> compiled set', policyMs);
  line('namegate pod relabel -> identity', relabelMs);
  line('client-node informer pod relabel -> cache', informerMs);
  const ratio = quantile(relabelMs, 0.5) / quantile(informerMs, 0.5);
  console.log(`ratio namegate/client-node informer (relabel p50): ${ratio.toFixed(2)}`);
  const cpus = os.cpus();
  console.log(
    `machine: ${cpus.length} x ${cpus[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GB, Linux ${os.release()}, Node ${process.version}`,
  );
  console.log('kernel: not measured (no agent yet); this is API -> namegate state');
  const p99 = Math.max(quantile(policyMs, 0.99), quantile(relabelMs, 0.99));
  console.log(`RESULT k8s propagate_p99_ms=${fmt(p99)} pods=${PODS} policies=${POLICIES}`);
} finally {
  await server.stop();
}
