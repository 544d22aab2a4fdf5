/**
 * Propagation from the Kubernetes API to namegate, with 1,000 pods and 200 policies in a real
 * kube-apiserver:
 *
 * 1. API -> namegate state: from a change sent to the API (an EgressPolicy edit, or a pod
 *    relabel) until the policy source (compiled set) or the identity provider reflects it. The
 *    peer, measured in the same run on the same relabels: @kubernetes/client-node's informer.
 * 2. API -> kernel (root, lab tools): the real agent (`namegate agent`, nftables) runs in a lab's
 *    node namespace with identities and policies from the same API server (through the relay of
 *    test/k8s/lab-cluster.ts), governing the 1,000 pods; one of them is the lab's payments-api
 *    pod with real traffic. Times run from sending the change until `nft monitor` in the node
 *    namespace reports the kernel change: a policy edit that drops a name the pod had learned
 *    (its element deleted), a relabel out of every policy (its elements deleted) and back in
 *    (its address added to the governed set). Also timed: a policy edit that adds a name until
 *    the pod's DNS query for it is answered (dig polled from the pod).
 *
 * The RESULT line carries the end-to-end (API -> kernel) p99 when part 2 ran, else part 1's.
 * Not a test: prints figures, the ratio and the machine, and ends with the RESULT line.
 * BENCH_E2E=0 skips part 2.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import os from 'node:os';
import { CoreV1Api, makeInformer, type V1Pod } from '@kubernetes/client-node';
import { KubeIdentityProvider } from '../../src/k8s/identity.ts';
import { KubePolicySource } from '../../src/k8s/policy-source.ts';
import { labDown, labUp } from '../../src/lab/lab.ts';
import { labPlan } from '../../src/lab/plan.ts';
import { findTool, inNetns, LAB_TOOLS, must } from '../../src/lab/run.ts';
import { ensureNamespace, TestApiServer } from '../../test/k8s/apiserver.ts';
import { apply, createPod, installCrds, labelPod, quiet } from '../../test/k8s/helpers.ts';
import {
  agentKubeconfig,
  chartRbac,
  dnsAnswer,
  kubeAgentConfig,
  msUntil,
  RELEASE_NAMESPACE,
  startApiBridge,
  startKubeAgent,
  stopDaemon,
} from '../../test/k8s/lab-cluster.ts';

const PODS = Number(process.env['BENCH_PODS'] ?? 1000);
const POLICIES = Number(process.env['BENCH_POLICIES'] ?? 200);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 100);
const E2E_ROUNDS = Number(process.env['BENCH_E2E_ROUNDS'] ?? ROUNDS);
const NAMESPACES = 20;
const NODE = 'bench-node';

const missingTools = [...Object.keys(LAB_TOOLS), 'nft'].filter((t) => findTool(t) === null);
const E2E_SKIP =
  process.env['BENCH_E2E'] === '0'
    ? 'BENCH_E2E=0'
    : process.getuid?.() !== 0
      ? 'needs root (network namespaces)'
      : missingTools.length > 0
        ? `missing tools: ${missingTools.join(', ')}`
        : null;
/** The lab's pod with real traffic: one of the PODS, its policy one of the POLICIES. */
const LAB = labPlan(`kb${(process.pid % 46656).toString(36)}`);
const LAB_POD = LAB.pods.find((p) => p.id === 'payments-api') ?? (LAB.pods[0] as (typeof LAB.pods)[number]);
const SYNTHETIC_PODS = PODS - 1;
const SYNTHETIC_POLICIES = POLICIES - 1;

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

/** The lab pod's policy: api.stripe.com, and github.com when `github` (the name rounds toggle). */
function labPolicy(github: boolean) {
  return {
    apiVersion: 'namegate.dev/v1alpha1',
    kind: 'EgressPolicy',
    metadata: { name: 'payments-egress', namespace: LAB_POD.namespace },
    spec: {
      podSelector: { matchLabels: { ...LAB_POD.labels } },
      egress: [
        {
          toFQDNs: [{ name: 'api.stripe.com' }, ...(github ? [{ name: 'github.com' }] : [])],
          ports: [{ port: 443 }],
        },
      ],
    },
  };
}

/**
 * `nft monitor` in a namespace: each waiter resolves with the time its line was read. The kernel
 * sends the event at commit; the line reaches us a pipe read later (line-buffered output).
 */
class KernelMonitor {
  readonly #child: ChildProcess;
  readonly #netns: string;
  #buffer = '';
  #waiters: Array<{ test: (line: string) => boolean; resolve: (at: number) => void }> = [];

  constructor(netns: string) {
    this.#netns = netns;
    const argv = inNetns(netns, ['stdbuf', '-oL', 'nft', 'monitor']);
    this.#child = spawn(findTool('ip') ?? 'ip', argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
    this.#child.stdout?.on('data', (chunk: Buffer) => {
      const at = performance.now();
      this.#buffer += chunk.toString();
      const lines = this.#buffer.split('\n');
      this.#buffer = lines.pop() ?? '';
      for (const line of lines) {
        if (process.env['BENCH_DEBUG']) process.stderr.write(`monitor: ${line}\n`);
        const hit = this.#waiters.filter((w) => w.test(line));
        this.#waiters = this.#waiters.filter((w) => !hit.includes(w));
        for (const w of hit) w.resolve(at);
      }
    });
  }

  /**
   * Resolves once events flow: a throwaway table of our own in the lab's node namespace is added
   * (and removed) until the monitor reports it.
   */
  async ready(): Promise<void> {
    const table = 'namegate_bench_probe';
    for (let attempt = 0; attempt < 50; attempt++) {
      const seen = this.waitFor('the probe table', (l) => l.startsWith(`add table inet ${table}`), 200);
      await must(inNetns(this.#netns, ['nft', 'add', 'table', 'inet', table]));
      await must(inNetns(this.#netns, ['nft', 'delete', 'table', 'inet', table]));
      if (
        await seen.then(
          () => true,
          () => false,
        )
      )
        return;
    }
    throw new Error('nft monitor reported nothing');
  }

  /** Register before making the change; resolves with performance.now() of the matching line. */
  waitFor(what: string, test: (line: string) => boolean, timeoutMs = 30_000): Promise<number> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w.resolve !== done);
        reject(new Error(`nft monitor: ${what} not seen within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = (at: number): void => {
        clearTimeout(timer);
        resolve(at);
      };
      this.#waiters.push({ test, resolve: done });
    });
  }

  async stop(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    const exited = new Promise((r) => this.#child.once('exit', r));
    this.#child.kill('SIGTERM');
    await exited;
  }
}

interface EndToEnd {
  readonly rounds: number;
  readonly startMs: number;
  readonly policyKernel: number[];
  readonly relabelOut: number[];
  readonly relabelIn: number[];
  readonly policyDns: number[];
}

/** Part 2: the real agent in a lab node namespace, API -> nftables. */
async function endToEnd(server: TestApiServer): Promise<EndToEnd> {
  const api = server.adminApi();
  const pod = LAB_POD;
  const element = (set: string, rest: string) => (line: string) =>
    line.startsWith(`${set} inet namegate `) && line.includes(rest);
  const learned = (dest: string) => `${pod.ipv4} . ${dest} . tcp . 443`;
  console.log(`\nend to end: lab ${LAB.name}; the agent in ${LAB.nodeNetns} governs node ${NODE}`);
  const cleanups: Array<() => Promise<unknown>> = [];
  try {
    await ensureNamespace(api, RELEASE_NAMESPACE);
    for (const obj of chartRbac()) await apply(api, obj);
    cleanups.push(() => labDown({ name: LAB.name }));
    await labUp({ name: LAB.name });
    const sa = await server.serviceAccountConfig(RELEASE_NAMESPACE, 'namegate-agent');
    const bridge = await startApiBridge(LAB, server);
    cleanups.push(() => bridge.stop());
    const t = performance.now();
    const agent = await startKubeAgent(
      LAB,
      kubeAgentConfig(LAB, { kubeconfig: agentKubeconfig(LAB, server, sa.path), nodeName: NODE }),
    );
    cleanups.push(() => stopDaemon(agent));
    const startMs = performance.now() - t;
    // After the agent made its table: nft monitor learns the sets when it starts.
    const monitor = new KernelMonitor(LAB.nodeNetns);
    cleanups.push(() => monitor.stop());
    await monitor.ready();

    const out: EndToEnd = {
      rounds: E2E_ROUNDS,
      startMs,
      policyKernel: [],
      relabelOut: [],
      relabelIn: [],
      policyDns: [],
    };
    const dns = async (name: string, status: string) =>
      (await dnsAnswer(LAB, pod.id, name)).status === status;
    for (let r = 0; r < E2E_ROUNDS; r++) {
      // A name added: until the pod's query is answered (and the element it teaches is in).
      const added = monitor.waitFor('github.com learned', element('add element', learned('203.0.113.20')));
      let t0 = performance.now();
      await apply(api, labPolicy(true));
      out.policyDns.push(await msUntil(t0, 'github.com allowed', () => dns('github.com', 'NOERROR')));
      await added;

      // The name removed: until its element is deleted from the kernel.
      const forgotten = monitor.waitFor(
        'github.com forgotten',
        element('delete element', learned('203.0.113.20')),
      );
      t0 = performance.now();
      await apply(api, labPolicy(false));
      out.policyKernel.push((await forgotten) - t0);

      // Relabel out of every policy: until the pod's learned element is deleted.
      const stripe = monitor.waitFor(
        'api.stripe.com learned',
        element('add element', learned('203.0.113.10')),
      );
      if (!(await dns('api.stripe.com', 'NOERROR'))) throw new Error('api.stripe.com not answered');
      await stripe;
      const gone = monitor.waitFor(
        'elements of the relabelled pod',
        element('delete element', learned('203.0.113.10')),
      );
      t0 = performance.now();
      await labelPod(api, pod.namespace, pod.id, { app: 'payments-off' });
      out.relabelOut.push((await gone) - t0);

      // And back in: until its address is in the governed set again.
      const back = monitor.waitFor('pod governed again', element('add element', `enforce4 { ${pod.ipv4}`));
      t0 = performance.now();
      await labelPod(api, pod.namespace, pod.id, { ...pod.labels });
      out.relabelIn.push((await back) - t0);
    }
    return out;
  } finally {
    for (const c of cleanups.reverse()) {
      await c().catch((err: unknown) => console.error(`cleanup: ${String(err)}`));
    }
  }
}

const server = await TestApiServer.start();
try {
  const api = server.adminApi();
  await installCrds(api);
  const ns = (i: number) => `team-${i % NAMESPACES}`;
  for (let i = 0; i < NAMESPACES; i++) await ensureNamespace(api, ns(i));

  let t = performance.now();
  const podIndexes = Array.from({ length: SYNTHETIC_PODS }, (_, i) => i);
  await pool(podIndexes, 16, (i) =>
    createPod(api, {
      namespace: ns(i),
      name: `pod-${i}`,
      node: NODE,
      labels: { app: `app-${i % POLICIES}`, gen: '0' },
      ips: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`],
    }),
  );
  await ensureNamespace(api, LAB_POD.namespace);
  await createPod(api, {
    namespace: LAB_POD.namespace,
    name: LAB_POD.id,
    node: NODE,
    labels: { ...LAB_POD.labels },
    ips: [LAB_POD.ipv4, LAB_POD.ipv6],
  });
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
        // No toCIDRs here: with the agent running, 1,000 governed pods x a CIDR rule would fill
        // the interval (pipapo) set, which this kernel handles badly (notes/KERNEL-WARNING.md).
        { toFQDNs: [{ name: `static-${i}.example.net` }], ports: [{ port: 80 }] },
      ],
    },
  });
  await pool(
    Array.from({ length: SYNTHETIC_POLICIES }, (_, i) => i),
    16,
    async (i) => {
      await apply(api, policy(i, []));
    },
  );
  await apply(api, labPolicy(false));
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
    const i = (r * 7) % SYNTHETIC_POLICIES;
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
    const i = (r * 13) % SYNTHETIC_PODS;
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

  let e2e: EndToEnd | null = null;
  if (E2E_SKIP === null) e2e = await endToEnd(server);

  const line = (what: string, xs: number[]) =>
    console.log(
      `${what.padEnd(52)} p50 ${fmt(quantile(xs, 0.5)).padStart(7)} ms   p99 ${fmt(quantile(xs, 0.99)).padStart(7)} ms   (n=${xs.length})`,
    );
  console.log(`\n${ROUNDS} rounds each; times from sending the change to the API until it is visible`);
  line('namegate policy edit -> compiled set', policyMs);
  line('namegate pod relabel -> identity', relabelMs);
  line('client-node informer pod relabel -> cache', informerMs);
  const ratio = quantile(relabelMs, 0.5) / quantile(informerMs, 0.5);
  console.log(`ratio namegate/client-node informer (relabel p50): ${ratio.toFixed(2)}`);
  let p99 = Math.max(quantile(policyMs, 0.99), quantile(relabelMs, 0.99));
  if (e2e) {
    console.log(
      `\nend to end, the agent in the lab (nftables), ${e2e.rounds} rounds each; no peer in this run`,
    );
    console.log(
      `agent start to ready (first full sync of ${PODS} pods, ${POLICIES} policies): ${fmt(e2e.startMs)} ms`,
    );
    line('policy edit (name removed) -> element deleted', e2e.policyKernel);
    line('pod relabel out -> elements deleted', e2e.relabelOut);
    line('pod relabel in -> address in the governed set', e2e.relabelIn);
    line('policy edit (name added) -> DNS answer from the pod', e2e.policyDns);
    p99 = Math.max(
      quantile(e2e.policyKernel, 0.99),
      quantile(e2e.relabelOut, 0.99),
      quantile(e2e.relabelIn, 0.99),
    );
    console.log('RESULT figure: end to end, API -> kernel (max of the three kernel p99s)');
  } else {
    console.log(`kernel: not measured (${E2E_SKIP}); RESULT figure: API -> namegate state`);
  }
  const cpus = os.cpus();
  console.log(
    `machine: ${cpus.length} x ${cpus[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GB, Linux ${os.release()}, Node ${process.version}, load ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );
  console.log(`RESULT k8s propagate_p99_ms=${fmt(p99)} pods=${PODS} policies=${POLICIES}`);
} finally {
  await server.stop();
}
