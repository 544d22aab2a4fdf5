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
 *    pod with real traffic. Times run from sending the change until the kernel holds the result,
 *    read by bench/k8s/set-probe.ts polling the set through libnftables inside the node namespace:
 *    a policy edit that drops a name the pod had learned (its element deleted), a relabel out of
 *    every policy (its elements deleted) and back in (its address in the Enforce set again). Also
 *    timed: a policy edit that adds a name until the pod's DNS query for it is answered (dig
 *    polled from the pod).
 *
 * The RESULT line carries the end-to-end (API -> kernel) p99 when part 2 ran, else part 1's.
 * Not a test: prints figures, the ratio and the machine, and ends with the RESULT line.
 * BENCH_E2E=0 skips part 2.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CoreV1Api, makeInformer, type V1Pod } from '@kubernetes/client-node';
import { KubeIdentityProvider } from '../../src/k8s/identity.ts';
import { KubePolicySource } from '../../src/k8s/policy-source.ts';
import { labDown, labUp } from '../../src/lab/lab.ts';
import { labPlan, statePaths } from '../../src/lab/plan.ts';
import { findTool, inNetns, LAB_TOOLS } from '../../src/lab/run.ts';
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
const SET_PROBE = new URL('./set-probe.ts', import.meta.url).pathname;
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
 * The kernel side, asked through bench/k8s/set-probe.ts running in the node namespace: "resolve
 * when this element is in / out of this set", timed here when the answer arrives.
 */
class SetProbe {
  readonly #child: ChildProcess;
  #buffer = '';
  #next = 1;
  readonly #pending = new Map<
    number,
    { what: string; resolve: (at: number) => void; reject: (err: Error) => void }
  >();
  readonly ready: Promise<string>;

  constructor(netns: string) {
    const argv = inNetns(netns, [process.execPath, SET_PROBE, 'namegate']);
    this.#child = spawn(findTool('ip') ?? 'ip', argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
    let ready: (kind: string) => void = () => {};
    this.ready = new Promise((resolve, reject) => {
      ready = resolve;
      this.#child.once('exit', (code) => {
        const err = new Error(`set-probe exited (${code})`);
        reject(err);
        for (const p of this.#pending.values()) p.reject(err);
        this.#pending.clear();
      });
    });
    this.#child.stdout?.on('data', (chunk: Buffer) => {
      const at = performance.now();
      this.#buffer += chunk.toString();
      const lines = this.#buffer.split('\n');
      this.#buffer = lines.pop() ?? '';
      for (const line of lines) {
        if (line.startsWith('ready ')) {
          ready(line.slice(6));
          continue;
        }
        const a = JSON.parse(line) as { id: number; ok: boolean; error?: string };
        const p = this.#pending.get(a.id);
        this.#pending.delete(a.id);
        if (a.ok) p?.resolve(at);
        else p?.reject(new Error(`set-probe (${p.what}): ${a.error}`));
      }
    });
  }

  /** performance.now() when `element` was seen in (present) or out of `set`. */
  until(set: string, element: string, present: boolean, timeoutMs = 30_000): Promise<number> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { what: `${element} ${present ? 'in' : 'out of'} ${set}`, resolve, reject });
      this.#child.stdin?.write(`${JSON.stringify({ id, set, element, present, timeoutMs })}\n`);
    });
  }

  async stop(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    const exited = new Promise((r) => this.#child.once('exit', r));
    this.#child.stdin?.end();
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}

/**
 * What to undo, newest last: run on the way out, and on SIGINT/SIGTERM too, so an interrupted run
 * leaves no API server, lab namespace or relay behind.
 */
const cleanupStack: Array<() => Promise<unknown>> = [];

async function unwind(downTo = 0): Promise<void> {
  while (cleanupStack.length > downTo) {
    const c = cleanupStack.pop() as () => Promise<unknown>;
    await c().catch((err: unknown) => console.error(`cleanup: ${String(err)}`));
  }
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`${signal}: cleaning up`);
    void unwind().finally(() => process.exit(130));
  });
}

interface EndToEnd {
  readonly rounds: number;
  readonly startMs: number;
  readonly policyKernel: number[];
  readonly relabelOut: number[];
  readonly relabelIn: number[];
  readonly policyDns: number[];
  /** Allowed answers whose element was gone at once (removed by a concurrent, older sync). */
  lost: number;
}

/** Part 2: the real agent in a lab node namespace, API -> nftables. */
async function endToEnd(server: TestApiServer): Promise<EndToEnd> {
  const api = server.adminApi();
  const pod = LAB_POD;
  console.log(`\nend to end: lab ${LAB.name}; the agent in ${LAB.nodeNetns} governs node ${NODE}`);
  const cleanups = cleanupStack.length;
  try {
    await ensureNamespace(api, RELEASE_NAMESPACE);
    for (const obj of chartRbac()) await apply(api, obj);
    cleanupStack.push(() => labDown({ name: LAB.name }));
    // BENCH_AGENT_LOG=FILE keeps the agent's log (the lab's state dir goes with the lab).
    const keep = process.env['BENCH_AGENT_LOG'];
    if (keep) cleanupStack.push(() => copyFile(path.join(statePaths(LAB).logs, 'agent.log'), keep));
    await labUp({ name: LAB.name });
    const sa = await server.serviceAccountConfig(RELEASE_NAMESPACE, 'namegate-agent');
    const bridge = await startApiBridge(LAB, server);
    cleanupStack.push(() => bridge.stop());
    const t = performance.now();
    const agent = await startKubeAgent(
      LAB,
      kubeAgentConfig(LAB, { kubeconfig: agentKubeconfig(LAB, server, sa.path), nodeName: NODE }),
    );
    cleanupStack.push(() => stopDaemon(agent));
    const startMs = performance.now() - t;
    const probe = new SetProbe(LAB.nodeNetns);
    cleanupStack.push(() => probe.stop());
    console.log(`kernel probe in ${LAB.nodeNetns}: libnftables through ${await probe.ready}`);

    const out: EndToEnd = {
      rounds: E2E_ROUNDS,
      startMs,
      policyKernel: [],
      relabelOut: [],
      relabelIn: [],
      policyDns: [],
      lost: 0,
    };
    const dns = async (name: string, status: string) =>
      (await dnsAnswer(LAB, pod.id, name)).status === status;
    /**
     * After an allowed answer, its element must be in the kernel. When it is not within 2 s, a
     * sync that started before the policy change removed it (see the report line "lost"):
     * count it and resolve again.
     */
    const learned = async (name: string, element: string): Promise<void> => {
      for (let attempt = 0; attempt < 5; attempt++) {
        if (attempt > 0 && !(await dns(name, 'NOERROR'))) throw new Error(`${name} not answered`);
        const ok = await probe.until('allow4', element, true, 2000).then(
          () => true,
          () => false,
        );
        if (ok) return;
        out.lost++;
      }
      throw new Error(`${element} never reached the kernel`);
    };
    const github = `${pod.ipv4} . 203.0.113.20 . tcp . 443`;
    const stripe = `${pod.ipv4} . 203.0.113.10 . tcp . 443`;
    for (let r = 0; r < E2E_ROUNDS; r++) {
      // A name added: until the pod's query for it is answered (the answer teaches the kernel).
      let t0 = performance.now();
      await apply(api, labPolicy(true));
      out.policyDns.push(await msUntil(t0, 'github.com allowed', () => dns('github.com', 'NOERROR')));
      await learned('github.com', github);

      // The name removed: until its learned element is deleted from the kernel.
      t0 = performance.now();
      let seen = probe.until('allow4', github, false);
      await apply(api, labPolicy(false));
      out.policyKernel.push((await seen) - t0);

      // Relabel out of every policy: until the pod's learned element is deleted.
      if (!(await dns('api.stripe.com', 'NOERROR'))) throw new Error('api.stripe.com not answered');
      await learned('api.stripe.com', stripe);
      t0 = performance.now();
      seen = probe.until('allow4', stripe, false);
      await labelPod(api, pod.namespace, pod.id, { app: 'payments-off' });
      out.relabelOut.push((await seen) - t0);

      // And back in: until its address is in the governed (Enforce) set again (from a state
      // where the relabel out has fully reached the kernel).
      await probe.until('enforce4', pod.ipv4, false);
      t0 = performance.now();
      seen = probe.until('enforce4', pod.ipv4, true);
      await labelPod(api, pod.namespace, pod.id, { ...pod.labels });
      out.relabelIn.push((await seen) - t0);
    }
    return out;
  } finally {
    await unwind(cleanups);
  }
}

const server = await TestApiServer.start();
cleanupStack.push(() => server.stop());
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
        // the interval (pipapo) set, which this kernel handles badly (docs/datapath.md, "Interval sets and the kernel").
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
    console.log(
      `allowed DNS answers whose element did not stay in the kernel (resolved again): ${e2e.lost} of ${2 * e2e.rounds + e2e.lost}`,
    );
    p99 = Math.max(
      quantile(e2e.policyKernel, 0.99),
      quantile(e2e.relabelOut, 0.99),
      quantile(e2e.relabelIn, 0.99),
    );
    console.log('RESULT figure: end to end, API -> kernel (the largest of the three kernel p99s)');
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
  await unwind();
}
