/**
 * DNS proxy benchmark (not a test; root). In one run, against the same upstream (knotd,
 * 10,000 names) and the same dnsperf load, it measures:
 *   namegate  `namegate agent` with the real nftables datapath: policy with 10,000 patterns,
 *             every allowed answer learned into the kernel before it is released (hold until
 *             commit), flow log on (written to /dev/null)
 *   dnsmasq   --cache-size=0 --no-resolv --server=<knot>
 *   unbound   forwarder to knot with its caches minimized (cache-max-ttl 0), one thread
 *   CoreDNS   forward plugin, no cache (built from its Go module by scripts/build-test-bins.sh)
 * and first, as the ceiling of the harness itself, dnsperf straight against knotd (no proxy).
 *
 * Same conditions for every server:
 *   - Everything runs in the benchmark's own network namespace (created here, deleted at the
 *     end): servers on 10.53.0.1, knotd on 10.53.0.2. dnsperf opens 64 sockets and a SNAT rule
 *     of the namespace gives each of them its own source address (10.99.0.1-64), so namegate
 *     learns for 64 sources and every server sees 64 clients. The 10,000 names are asked in
 *     random order, so a source meets names it has not learned yet all through the run.
 *   - The same socket buffers: this kernel has no per-namespace net.core.rmem_default, and
 *     dnsmasq, CoreDNS and knotd have no option for it, so after each server starts its
 *     listening sockets are set to 4 MiB (bench/dns/sockbuf.py), and the run prints what the
 *     kernel reports for each.
 *   - Alternating rounds (NAMEGATE_BENCH_ROUNDS, default 3): each round runs every server once,
 *     in an order that rotates, each freshly started (namegate with an empty store and table,
 *     its table deleted after it stops). Figures are the medians of the rounds; ratios are the
 *     medians of the per-round ratios, which a drift of the shared machine's load moves less.
 *
 * Per server and round: the highest rate with < 0.1% loss (dnsperf -Q stepped up by x1.3 from
 * 5,000 until a step fails, then bisected to within 3%; the figure is the achieved rate of the
 * best passing step), and at a fixed 10,000 qps the p50/p99 latency and the server's CPU per
 * query (user + system of its process from /proc, microseconds). The load average is printed
 * with every round. Last line:
 *   RESULT dns qps=<ours> dnsmasq_qps=<x> unbound_qps=<y> coredns_qps=<z> ratio_vs_dnsmasq=<r>
 *     ratio_vs_unbound=<r> ratio_vs_coredns=<r> p99_ms_at_10k=<ms> dnsmasq_p99_ms_at_10k=<ms>
 *     us_per_query=<us> dnsmasq_us_per_query=<us>
 *
 * Options (env): NAMEGATE_BENCH_SECONDS (per step of the search, default 2);
 * NAMEGATE_BENCH_FIXED_SECONDS (the 10k qps run, default 5); NAMEGATE_BENCH_ROUNDS (default 3);
 * NAMEGATE_BENCH_ONLY (comma list of servers, e.g. namegate,dnsmasq; "direct" is the ceiling);
 * NAMEGATE_BENCH_NODE_FLAGS runs namegate as `node <flags> src/cli/main.ts agent` instead of
 * bin/namegate (e.g. "--max-semi-space-size=2 --cpu-prof --cpu-prof-dir=/tmp/prof");
 * NAMEGATE_BENCH_AB_ROOT=DIR also runs the namegate of another checkout as "namegate-b" in the
 * same rotation (before/after comparisons; e.g. `git archive HEAD~1 | tar -x -C DIR` with
 * node_modules and build linked); NAMEGATE_BENCH_AB_FLAGS="..." runs this checkout as
 * namegate-b with those Node flags. NAMEGATE_BENCH_FIXED_ONLY=1 skips the max-rate search and
 * NAMEGATE_BENCH_FIXED_QPS sets the fixed rate (10,000): CPU per query below saturation is the
 * figure a loaded machine moves least.
 * bench/dns/steady.ts profiles one server at a fixed rate.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  buildFiles,
  buildPolicies,
  CpuWindow,
  dnsperf,
  equalBuffers,
  KNOT_UDP_WORKERS,
  lossOf,
  maxQps,
  NAMES,
  type PerfRun,
  percentile,
  run,
  type Server,
  startCoredns,
  startDnsmasq,
  startKnot,
  startNamegate,
  startUnbound,
  stop,
  stopAll,
  useAddresses,
} from './lib.ts';

const SECONDS = Number(process.env['NAMEGATE_BENCH_SECONDS'] ?? 2);
const FIXED_SECONDS = Number(process.env['NAMEGATE_BENCH_FIXED_SECONDS'] ?? 5);
const ROUNDS = Number(process.env['NAMEGATE_BENCH_ROUNDS'] ?? 3);
const ONLY = process.env['NAMEGATE_BENCH_ONLY']?.split(',') ?? null;
const FIXED_QPS = Number(process.env['NAMEGATE_BENCH_FIXED_QPS'] ?? 10_000);
/** Skip the max-rate search (A/B of CPU per query at a fixed rate). */
const FIXED_ONLY = process.env['NAMEGATE_BENCH_FIXED_ONLY'] === '1';
const SERVER_IP = '10.53.0.1';
const UPSTREAM_IP = '10.53.0.2';
/** dnsperf sockets; the namespace's SNAT gives each its own source address. */
const SOURCES = 64;
const SOURCE_NET = '10.99.0.0/24';
const IN_NETNS = 'NAMEGATE_BENCH_NETNS';
/** Run namegate as `node <these flags> src/cli/main.ts agent` (profiling: --cpu-prof ...). */
const NAMEGATE_FLAGS = process.env['NAMEGATE_BENCH_NODE_FLAGS']?.split(/\s+/).filter(Boolean);
/** A/B: also run the namegate of this other checkout ("namegate-b"), alternating with ours. */
const AB_ROOT = process.env['NAMEGATE_BENCH_AB_ROOT'];
/** A/B of Node flags: namegate-b runs this checkout with these flags instead. */
const AB_FLAGS = process.env['NAMEGATE_BENCH_AB_FLAGS']?.split(/\s+/).filter(Boolean);
const B_FLAGS = AB_FLAGS ?? NAMEGATE_FLAGS;

interface StepCpu {
  readonly server: number;
  readonly knot: number;
  readonly perf: number;
  readonly machine: number;
}

interface Round {
  readonly qps: number;
  readonly p50: number;
  readonly p99: number;
  /** Server CPU per query at 10,000 qps (microseconds). */
  readonly usPerQuery: number;
  readonly load: number;
}

const loadText = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
const f2 = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : 'n/a');

function median(xs: readonly number[]): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** One dnsperf run with the CPU of the server's processes, knotd, dnsperf and the machine. */
async function measured(
  s: Server,
  knotPid: number | undefined,
  queries: string,
  qps: number,
  seconds: number,
  latencies = false,
): Promise<{ run: PerfRun; latencies: number[]; cpu: StepCpu }> {
  const pids = new Map<string, number | undefined>([
    ['knot', knotPid],
    ...[s.child, ...(s.more ?? [])].map((c, i) => [`server${i}`, c.pid] as [string, number | undefined]),
  ]);
  const window = new CpuWindow(pids);
  window.start();
  const r = await dnsperf(s.port, queries, { seconds, qps, latencies, clients: SOURCES, host: hostOf(s) });
  const used = window.end();
  let server = 0;
  for (const [k, v] of used.cores) if (k.startsWith('server')) server += v;
  return {
    ...r,
    cpu: {
      server: s.name === 'direct' ? 0 : server,
      knot: used.cores.get('knot') ?? Number.NaN,
      perf: r.run.perfCpu === null ? Number.NaN : r.run.perfCpu / used.seconds,
      machine: used.machine,
    },
  };
}

/** The ceiling ("direct") is knotd itself, on the upstream address. */
const hostOf = (s: Server) => (s.name === 'direct' ? UPSTREAM_IP : SERVER_IP);

const cpuText = (c: StepCpu | null, direct = false) =>
  c === null
    ? ''
    : `cpu: ${direct ? '' : `server ${f2(c.server)}, `}knotd ${f2(c.knot)}, dnsperf ${f2(c.perf)}, machine ${f2(c.machine)} of ${os.cpus().length}`;

/** Addresses and the SNAT rule of the benchmark's namespace (run inside it). */
async function setUpNamespace(): Promise<void> {
  await run('ip', ['link', 'set', 'lo', 'up']);
  await run('ip', ['addr', 'add', `${SERVER_IP}/32`, 'dev', 'lo']);
  await run('ip', ['addr', 'add', `${UPSTREAM_IP}/32`, 'dev', 'lo']);
  // The whole source range is local, so answers to it come back to dnsperf (through conntrack).
  await run('ip', ['route', 'add', 'local', SOURCE_NET, 'dev', 'lo']);
  const map = Array.from({ length: SOURCES }, (_, i) => `${i} : 10.99.0.${i + 1}`).join(', ');
  // NAT rules see the first packet of each flow: dnsperf's 64 sockets get 64 addresses in turn.
  await run('nft', [
    `add table ip benchsrc; add chain ip benchsrc post { type nat hook postrouting priority srcnat; policy accept; }; add rule ip benchsrc post ip daddr ${SERVER_IP} meta l4proto udp snat ip to numgen inc mod ${SOURCES} map { ${map} }`,
  ]);
}

/** What namegate learned into the kernel this round: elements and their distinct sources. */
async function learnedInKernel(): Promise<string> {
  const { stdout } = await run('nft', ['list', 'set', 'inet', 'namegate', 'allow4'], {
    maxBuffer: 512 * 1024 * 1024,
  });
  const sources = new Set<string>();
  let elements = 0;
  for (const m of stdout.matchAll(/(10\.99\.0\.\d+) \. /g)) {
    elements++;
    sources.add(m[1] as string);
  }
  return `${elements} elements in the kernel set, from ${sources.size} source addresses`;
}

async function serverStarters(
  dir: string,
  knotPort: number,
  policies: string,
): Promise<Array<[string, () => Promise<Server | string>]>> {
  return [
    [
      'namegate',
      () =>
        startNamegate(dir, knotPort, policies, {
          datapath: 'nftables',
          sources: [SOURCE_NET],
          ...(NAMEGATE_FLAGS ? { nodeFlags: NAMEGATE_FLAGS } : {}),
        }),
    ],
    ...(AB_ROOT || AB_FLAGS
      ? ([
          [
            'namegate-b',
            () =>
              startNamegate(dir, knotPort, policies, {
                datapath: 'nftables',
                sources: [SOURCE_NET],
                ...(AB_ROOT ? { root: AB_ROOT } : {}),
                ...(B_FLAGS ? { nodeFlags: B_FLAGS } : {}),
              }),
          ],
        ] as Array<[string, () => Promise<Server | string>]>)
      : []),
    ['dnsmasq', () => startDnsmasq(dir, knotPort)],
    ['unbound', () => startUnbound(dir, knotPort)],
    ['coredns', () => startCoredns(dir, knotPort)],
  ];
}

/** One server's figures: warm-up, the max-rate search, then 10,000 qps with latencies. */
async function measure(
  name: string,
  s: Server,
  knotPid: number | undefined,
  queries: string,
): Promise<Round> {
  const direct = name === 'direct';
  await dnsperf(s.port, queries, { seconds: SECONDS, qps: 5000, clients: SOURCES, host: hostOf(s) });
  const cpus = new Map<PerfRun, StepCpu>();
  const { best, runs } = FIXED_ONLY
    ? { best: Number.NaN, runs: [] }
    : await maxQps(
        s.port,
        queries,
        SECONDS,
        (r) => {
          console.log(
            `  ${name.padEnd(9)} offered ${String(r.target).padStart(6)}  achieved ${r.qps.toFixed(0).padStart(6)} qps  loss ${(lossOf(r) * 100).toFixed(3)}%  avg ${r.avgLatencyMs.toFixed(2)} ms`,
          );
        },
        async (target) => {
          const m = await measured(s, knotPid, queries, target, SECONDS);
          cpus.set(m.run, m.cpu);
          return m.run;
        },
        5000,
      );
  const bestRun = runs.find((r) => r.qps === best) ?? null;
  const fixed = await measured(s, knotPid, queries, FIXED_QPS, FIXED_SECONDS, true);
  const sorted = fixed.latencies.sort((a, b) => a - b);
  const p50 = percentile(sorted, 50);
  const p99 = percentile(sorted, 99);
  const usPerQuery = (fixed.cpu.server * 1e6) / fixed.run.qps;
  console.log(
    `${name}: max ${best.toFixed(0)} qps (<0.1% loss) [${s.note}]\n` +
      `  at the max: ${cpuText(bestRun ? (cpus.get(bestRun) ?? null) : null, direct)}\n` +
      `  at ${FIXED_QPS} qps: achieved ${fixed.run.qps.toFixed(0)}, loss ${(lossOf(fixed.run) * 100).toFixed(3)}%, p50 ${p50.toFixed(3)} ms, p99 ${p99.toFixed(3)} ms, p99.9 ${percentile(sorted, 99.9).toFixed(3)} ms; ` +
      `${cpuText(fixed.cpu, direct)}${direct ? '' : `; server ${usPerQuery.toFixed(1)} us CPU per query`}; load ${loadText()}`,
  );
  return { qps: best, p50, p99, usPerQuery, load: os.loadavg()[0] ?? Number.NaN };
}

async function inNamespace(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'namegate-bench-dns-'));
  const cleanup = async () => {
    await stopAll();
    await run('nft', ['delete table inet namegate']).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    const { stdout: kernel } = await run('uname', ['-r']);
    console.log(
      `machine: ${os.cpus()[0]?.model ?? '?'} x${os.cpus().length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Linux ${kernel.trim()}, Node ${process.version}`,
    );
    console.log(`load average: ${loadText()} (other work on the machine skews every figure)`);
    const { stdout: perfVersion } = await run('dnsperf', ['-h']).catch(
      (e: { stdout?: string; stderr?: string }) => ({ stdout: `${e.stdout ?? ''}${e.stderr ?? ''}` }),
    );
    console.log(
      `dnsperf ${/Version ([0-9.]+)/.exec(perfVersion)?.[1] ?? '?'}: ${SECONDS} s per step, ${FIXED_SECONDS} s at ${FIXED_QPS} qps, ${SOURCES} sockets = ${SOURCES} source addresses, 1000 outstanding, ${NAMES} distinct names in random order; knotd with ${KNOT_UDP_WORKERS} UDP workers; ${ROUNDS} alternating rounds`,
    );
    await setUpNamespace();
    useAddresses(SERVER_IP, UPSTREAM_IP);
    const { zoneText, queries } = await buildFiles(dir);
    const policies = await buildPolicies(dir);
    const knot = await startKnot(dir, zoneText);
    const knotBufs = await equalBuffers(knot.child.pid, knot.port);
    console.log(`knotd: ${knotBufs.length} sockets, receive buffer ${knotBufs[0]?.rcvbuf} bytes each`);

    if (!ONLY || ONLY.includes('direct')) {
      const r = await measure(
        'direct',
        { ...knot, name: 'direct', note: 'dnsperf -> knotd, no proxy (the ceiling)' },
        knot.child.pid,
        queries,
      );
      console.log(`ceiling (dnsperf -> knotd, no proxy): ${r.qps.toFixed(0)} qps`);
    }

    const starters = (await serverStarters(dir, knot.port, policies)).filter(
      ([n]) => !ONLY || ONLY.includes(n),
    );
    const rounds = new Map<string, Round[]>(starters.map(([n]) => [n, []]));
    const skipped = new Set<string>();
    for (let round = 0; round < ROUNDS; round++) {
      console.log(`\nround ${round + 1}/${ROUNDS}, load ${loadText()}`);
      for (let k = 0; k < starters.length; k++) {
        const [name, begin] = starters[(round + k) % starters.length] as [
          string,
          () => Promise<Server | string>,
        ];
        if (skipped.has(name)) continue;
        const s = await begin();
        if (typeof s === 'string') {
          skipped.add(name);
          console.log(`${name}: skipped: ${s}`);
          continue;
        }
        try {
          const bufs = await equalBuffers(s.child.pid, s.port);
          console.log(
            `${name}: listening socket receive/send buffer ${bufs.map((b) => `${b.rcvbuf}/${b.sndbuf}`).join(', ')} bytes`,
          );
          (rounds.get(name) as Round[]).push(await measure(name, s, knot.child.pid, queries));
          if (name.startsWith('namegate')) console.log(`${name}: ${await learnedInKernel()}`);
        } finally {
          await stop(s.child);
          // namegate's table stays after the agent stops (by design); the next server must not
          // pay for it.
          if (name.startsWith('namegate'))
            await run('nft', ['delete table inet namegate']).catch(() => undefined);
        }
      }
    }
    report(rounds);
  } finally {
    await cleanup();
  }
}

function report(rounds: ReadonlyMap<string, readonly Round[]>): void {
  const ours = rounds.get('namegate') ?? [];
  const med = (n: string, k: keyof Round) => median((rounds.get(n) ?? []).map((r) => r[k]));
  /** Median over rounds of ours / theirs (rounds where both ran). */
  const ratio = (n: string) =>
    median(ours.map((o, i) => o.qps / ((rounds.get(n) ?? [])[i]?.qps ?? Number.NaN)));
  console.log('');
  console.log(`load average at the end: ${loadText()}`);
  console.log('medians of the rounds (per round in brackets):');
  for (const [n, rs] of rounds) {
    if (rs.length === 0) continue;
    const list = (k: keyof Round, d: number) => rs.map((r) => r[k].toFixed(d)).join(', ');
    console.log(
      `  ${n.padEnd(9)} max ${med(n, 'qps').toFixed(0)} qps [${list('qps', 0)}]; at ${FIXED_QPS} qps p50 ${med(n, 'p50').toFixed(3)} ms, p99 ${med(n, 'p99').toFixed(3)} ms [${list('p99', 2)}]; ${med(n, 'usPerQuery').toFixed(1)} us CPU per query [${list('usPerQuery', 1)}]; load [${list('load', 1)}]`,
    );
  }
  const ourUs = med('namegate', 'usPerQuery');
  const ourP99 = med('namegate', 'p99');
  const meet = (ok: boolean) => (ok ? 'met' : 'NOT met');
  console.log(
    `namegate / dnsmasq: ${f2(ratio('dnsmasq'))} (target >= 1.5: ${meet(ratio('dnsmasq') >= 1.5)})`,
  );
  console.log(
    `namegate / CoreDNS: ${f2(ratio('coredns'))} (target >= 1.0: ${meet(ratio('coredns') >= 1.0)})`,
  );
  console.log(`namegate / unbound: ${f2(ratio('unbound'))}`);
  console.log(
    `namegate p99 at ${FIXED_QPS} qps: ${ourP99.toFixed(3)} ms (target < 2 ms: ${meet(ourP99 < 2)})`,
  );
  console.log(
    `namegate vs dnsmasq at ${FIXED_QPS} qps: CPU per query ${ourUs.toFixed(1)} vs ${med('dnsmasq', 'usPerQuery').toFixed(1)} us (${meet(ourUs <= med('dnsmasq', 'usPerQuery'))}), p99 ${ourP99.toFixed(3)} vs ${med('dnsmasq', 'p99').toFixed(3)} ms (${meet(ourP99 <= med('dnsmasq', 'p99'))})`,
  );
  if ((rounds.get('namegate-b') ?? []).length > 0) {
    const b = rounds.get('namegate-b') ?? [];
    const per = (k: keyof Round) => median(ours.map((o, i) => o[k] / (b[i]?.[k] ?? Number.NaN)));
    console.log(
      `A/B, this checkout / namegate-b (median of per-round ratios): max qps ${f2(per('qps'))}, CPU per query ${f2(per('usPerQuery'))}, p99 ${f2(per('p99'))}`,
    );
  }
  const fmt = (v: number, d = 0) => (Number.isFinite(v) ? v.toFixed(d) : 'NaN');
  console.log(
    `RESULT dns qps=${fmt(med('namegate', 'qps'))} dnsmasq_qps=${fmt(med('dnsmasq', 'qps'))} unbound_qps=${fmt(med('unbound', 'qps'))} coredns_qps=${fmt(med('coredns', 'qps'))} ` +
      `ratio_vs_dnsmasq=${fmt(ratio('dnsmasq'), 2)} ratio_vs_unbound=${fmt(ratio('unbound'), 2)} ratio_vs_coredns=${fmt(ratio('coredns'), 2)} ` +
      `p99_ms_at_10k=${fmt(ourP99, 3)} dnsmasq_p99_ms_at_10k=${fmt(med('dnsmasq', 'p99'), 3)} us_per_query=${fmt(ourUs, 1)} dnsmasq_us_per_query=${fmt(med('dnsmasq', 'usPerQuery'), 1)}`,
  );
}

/** Outside: create the namespace, run this file inside it, delete the namespace. */
async function outside(): Promise<void> {
  const name = `ng-bdns-${process.pid}`;
  await run('ip', ['netns', 'add', name]);
  try {
    const child = spawn(
      'ip',
      ['netns', 'exec', name, process.execPath, ...process.execArgv, import.meta.filename],
      {
        stdio: 'inherit',
        env: { ...process.env, [IN_NETNS]: name },
      },
    );
    const forward = () => child.kill('SIGINT');
    process.on('SIGINT', forward);
    const code = await new Promise<number>((resolve) => child.once('exit', (c) => resolve(c ?? 1)));
    process.off('SIGINT', forward);
    process.exitCode = code;
  } finally {
    const { stdout } = await run('ip', ['netns', 'pids', name]).catch(() => ({ stdout: '' }));
    for (const pid of stdout.split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await run('ip', ['netns', 'del', name]);
  }
}

if (process.env[IN_NETNS]) await inNamespace();
else await outside();
