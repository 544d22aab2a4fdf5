/**
 * bench/sync (not a test): how well `namegate sync` keeps an allowlist for a name that rotates
 * among many addresses, against the naive loops, in one run, in the lab.
 *
 * knotd serves rotating.example.com: 20 addresses (203.0.113.120-139), 4 in each answer, TTL 5 s;
 * every 5 s a dynamic update moves the 4-address window 3 places along the ring of 20. Three
 * `namegate sync` processes run side by side in the lab's node namespace, each with its own
 * nftables table governing one pod, and the same resolver (knotd), policy and start time:
 *   sync       the union window (10 min), re-resolving before the TTL runs out (jittered)
 *   naive      the set replaced every 30 s (window 0, refresh fixed at 30 s)
 *   naive_ttl  the set replaced every min(TTL, 30 s) (window 0, refresh at the TTL)
 * After the same warm-up, a client in each pod (and one in the ungoverned pod, the control)
 * resolves the name through knotd at random times, holds the answer for up to its TTL, and
 * connects to one of its addresses through the gateway. Coverage = the fraction of connection
 * attempts the pod's table let through, i.e. whose address was in its synced set at connect
 * time (the control shows attempts that fail for any other reason: it should be 1).
 *
 * Last line: RESULT sync coverage=<c> naive_coverage=<c> naive_ttl_coverage=<c> names=<n>
 * Env: NAMEGATE_BENCH_SECONDS (client phase, default 300), NAMEGATE_BENCH_WARMUP (default 60),
 * NAMEGATE_BENCH_RATE (attempts per second per pod, default 10).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { setAddresses } from '../../src/lab/dns-update.ts';
import { labDown, labUp } from '../../src/lab/lab.ts';
import type { LabPlan, LabPod } from '../../src/lab/plan.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const NODE = path.join(ROOT, 'node_modules/node/bin/node');
const SECONDS = Number(process.env['NAMEGATE_BENCH_SECONDS'] ?? 300);
const WARMUP = Number(process.env['NAMEGATE_BENCH_WARMUP'] ?? 60);
const RATE = Number(process.env['NAMEGATE_BENCH_RATE'] ?? 10);
const LAB = 'syncbench';
const NAME = 'rotating.example.com';
const RING = Array.from({ length: 20 }, (_, i) => `203.0.113.${120 + i}`);
const TTL = 5;
const UPDATE_MS = 5000;

interface Loop {
  readonly key: 'sync' | 'naive' | 'naive_ttl';
  readonly pod: string;
  readonly sync: Record<string, unknown>;
}

const LOOPS: readonly Loop[] = [
  { key: 'sync', pod: 'payments-api', sync: { windowSeconds: 600 } },
  {
    key: 'naive',
    pod: 'ci-runner',
    sync: { windowSeconds: 0, minRefreshSeconds: 30, maxRefreshSeconds: 30, jitter: 0 },
  },
  {
    key: 'naive_ttl',
    pod: 'web',
    sync: { windowSeconds: 0, minRefreshSeconds: 1, maxRefreshSeconds: 30, jitter: 0 },
  },
];
const CONTROL = 'unmanaged';

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

function log(text: string): void {
  process.stderr.write(`${text}\n`);
}

function inNetns(netns: string, argv: string[]): ChildProcess {
  const child = spawn('ip', ['netns', 'exec', netns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

function podOf(plan: LabPlan, id: string): LabPod {
  const p = plan.pods.find((x) => x.id === id);
  if (!p) throw new Error(`no pod ${id}`);
  return p;
}

async function waitStatus(file: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const s = JSON.parse(await readFile(file, 'utf8')) as {
        names: Array<{ addresses: string[] }>;
        targets: { nftables?: { ok: boolean } };
      };
      if (s.targets.nftables?.ok && (s.names[0]?.addresses.length ?? 0) > 0) return;
    } catch {
      // not written yet
    }
    if (Date.now() > deadline) throw new Error(`${file}: the sync did not write its table in time`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

interface Tally {
  attempts: number;
  allowed: number;
  dnsFailed: number;
}

function runClient(plan: LabPlan, pod: LabPod): Promise<Tally> {
  const child = inNetns(pod.netns, [
    NODE,
    path.join(ROOT, 'bench/sync/client.ts'),
    plan.upstream.ipv4,
    NAME,
    String(SECONDS),
    String(RATE),
    String(TTL * 1000),
  ]);
  const tally: Tally = { attempts: 0, allowed: 0, dnsFailed: 0 };
  return new Promise((resolve, reject) => {
    readline.createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const o = JSON.parse(line) as { ok?: boolean; dns?: string; done?: boolean };
      if (o.dns) tally.dnsFailed++;
      else if (o.ok !== undefined) {
        tally.attempts++;
        if (o.ok) tally.allowed++;
      }
    });
    child.on('exit', (code) =>
      code === 0 ? resolve(tally) : reject(new Error(`client in ${pod.id} exited ${code}`)),
    );
  });
}

async function main(): Promise<void> {
  const started = new Date();
  const load = () =>
    os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ');
  log(`bench/sync: ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, load average ${load()}`);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'namegate-syncbench-'));
  const { plan } = await labUp({ name: LAB, progress: (m) => log(`  lab: ${m}`) });
  let updater: NodeJS.Timeout | null = null;
  try {
    let turn = 0;
    const rotate = async () => {
      const start = (turn++ * 3) % RING.length;
      const ipv4 = [0, 1, 2, 3].map((k) => RING[(start + k) % RING.length] as string);
      await setAddresses(plan, NAME, { ipv4, ttl: TTL });
    };
    await rotate();
    updater = setInterval(
      () => void rotate().catch((err: unknown) => log(`dns update failed: ${String(err)}`)),
      UPDATE_MS,
    );

    await writeFile(
      path.join(dir, 'policy.yaml'),
      [
        'apiVersion: namegate.dev/v1alpha1',
        'kind: ClusterEgressPolicy',
        'metadata: { name: rotating }',
        'spec:',
        '  egress:',
        `  - toFQDNs: [{ name: ${NAME} }]`,
        '    ports: [{ port: 80, protocol: TCP }]',
        // The clients resolve through knotd themselves (nothing redirects DNS under sync).
        `  - toCIDRs: [{ cidr: ${plan.upstream.ipv4}/32 }]`,
        '    ports: [{ port: 53, protocol: UDP }, { port: 53, protocol: TCP }]',
        '',
      ].join('\n'),
    );
    const syncs: ChildProcess[] = [];
    for (const loop of LOOPS) {
      const pod = podOf(plan, loop.pod);
      const config = {
        dns: { upstreams: [`${plan.upstream.ipv4}:53`] },
        policies: ['policy.yaml'],
        sources: [{ name: pod.id, namespace: pod.namespace, labels: pod.labels, cidrs: [`${pod.ipv4}/32`] }],
        datapath: { table: `ngsb_${loop.key}` },
        http: { listen: '127.0.0.1:0' },
        sync: { ...loop.sync, statusFile: `${loop.key}.status.json`, targets: { nftables: {} } },
      };
      const file = path.join(dir, `${loop.key}.yaml`);
      await writeFile(file, JSON.stringify(config));
      syncs.push(
        inNetns(plan.nodeNetns, [NODE, path.join(ROOT, 'src/cli/main.ts'), 'sync', '--config', file]),
      );
    }
    for (const loop of LOOPS) await waitStatus(path.join(dir, `${loop.key}.status.json`), 30_000);
    log(`  warm-up ${WARMUP} s (every loop running, DNS rotating every ${UPDATE_MS / 1000} s)`);
    await new Promise((r) => setTimeout(r, WARMUP * 1000));
    log(`  clients: ${SECONDS} s, ${RATE} attempts/s per pod, load average ${load()}`);
    const results = await Promise.all([
      ...LOOPS.map((l) => runClient(plan, podOf(plan, l.pod))),
      runClient(plan, podOf(plan, CONTROL)),
    ]);
    const loadAfter = load();
    for (const s of syncs) s.kill('SIGTERM');
    const cov = (t: Tally) => (t.attempts === 0 ? 0 : t.allowed / t.attempts);
    console.log(
      `date ${started.toISOString()}; machine ${os.cpus().length} x ${os.cpus()[0]?.model}; load average after ${loadAfter}`,
    );
    console.log('loop        pod            attempts  allowed  coverage  dns_failed');
    const rows = [
      ...LOOPS.map((l, i) => [l.key, l.pod, results[i]] as const),
      ['control', CONTROL, results[3]] as const,
    ];
    for (const [key, pod, t] of rows) {
      if (!t) continue;
      console.log(
        `${key.padEnd(11)} ${pod.padEnd(14)} ${String(t.attempts).padStart(8)} ${String(t.allowed).padStart(8)}  ${cov(t).toFixed(4).padStart(8)}  ${String(t.dnsFailed).padStart(10)}`,
      );
    }
    const [ours, naive, naiveTtl] = results as [Tally, Tally, Tally, Tally];
    const ratio = (a: number, b: number) => (b === 0 ? 'inf' : (a / b).toFixed(2));
    console.log(
      `ratio coverage sync/naive=${ratio(cov(ours), cov(naive))} sync/naive_ttl=${ratio(cov(ours), cov(naiveTtl))}`,
    );
    console.log(
      `RESULT sync coverage=${cov(ours).toFixed(4)} naive_coverage=${cov(naive).toFixed(4)} naive_ttl_coverage=${cov(naiveTtl).toFixed(4)} names=1`,
    );
  } finally {
    if (updater) clearInterval(updater);
    for (const c of children) c.kill('SIGTERM');
    await labDown({ name: LAB }).catch((err: unknown) => log(`lab down failed: ${String(err)}`));
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
