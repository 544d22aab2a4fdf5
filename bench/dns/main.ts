/**
 * DNS proxy benchmark (not a test). In one run, against the same upstream (knotd on loopback,
 * 10,000 names) and the same dnsperf load, it measures:
 *   namegate  `namegate dns` (policy with 10,000 patterns, learning on, recording datapath,
 *             flow log on and written to /dev/null)
 *   dnsmasq   --cache-size=0 --no-resolv --server=127.0.0.1#<knot>
 *   unbound   forwarder to knot with its caches minimized (cache-max-ttl 0)
 *   CoreDNS   forward plugin, no cache (built from its Go module by scripts/build-test-bins.sh)
 * and first, as the ceiling of the harness itself, dnsperf straight against knotd (no proxy):
 * no forwarder can exceed what dnsperf and knotd reach together on this machine.
 *
 * For each: the highest rate with < 0.1% loss (dnsperf -Q stepped up by x1.3 until a step fails,
 * then bisected to within 3%; the figure is the achieved rate of the best passing step), with
 * the CPU each process used at that step (server, knotd, dnsperf, and the whole machine): when
 * the machine is at its 2 cores, the machine is the limit, not the server. Then p50/p99 latency
 * at a fixed 10,000 qps (dnsperf -v, 10 s). Prints the machine, every figure, the ratios, and last:
 *   RESULT dns qps=<ours> dnsmasq_qps=<x> unbound_qps=<y> coredns_qps=<z> ratio_vs_dnsmasq=<r> p99_ms_at_10k=<ms>
 *
 * Options (env): NAMEGATE_BENCH_SECONDS (per step of the search, default 3);
 * NAMEGATE_BENCH_FIXED_SECONDS (the 10k qps latency run, default 10); NAMEGATE_BENCH_ONLY
 * (comma list of servers, e.g. namegate,dnsmasq; "direct" is the harness ceiling);
 * NAMEGATE_BENCH_REUSEPORT=N adds an informational run of N namegate processes sharing the port
 * with SO_REUSEPORT (separate stores; bench/dns/reuseport-proxy.ts). It is not part of the
 * RESULT line. bench/dns/steady.ts profiles one server at a fixed rate.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  buildFiles,
  buildPolicies,
  CpuWindow,
  dnsperf,
  KNOT_UDP_WORKERS,
  lossOf,
  maxQps,
  NAMES,
  PERF_CLIENTS,
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
} from './lib.ts';

const SECONDS = Number(process.env['NAMEGATE_BENCH_SECONDS'] ?? 3);
const FIXED_SECONDS = Number(process.env['NAMEGATE_BENCH_FIXED_SECONDS'] ?? 10);
const REUSEPORT = Number(process.env['NAMEGATE_BENCH_REUSEPORT'] ?? 0);
const ONLY = process.env['NAMEGATE_BENCH_ONLY']?.split(',') ?? null;
const FIXED_QPS = 10_000;

interface StepCpu {
  readonly server: number;
  readonly knot: number;
  readonly perf: number;
  readonly machine: number;
}

interface Result {
  readonly qps: number;
  readonly p50: number;
  readonly p99: number;
  readonly note: string;
  /** CPU (cores) at the best passing step of the search. */
  readonly cpu: StepCpu | null;
  /** Server CPU per query at 10,000 qps (microseconds). */
  readonly usPerQuery: number;
}

const loadText = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

const f2 = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : 'n/a');

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
  const r = await dnsperf(s.port, queries, { seconds, qps, latencies });
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

const cpuText = (c: StepCpu | null, direct = false) =>
  c === null
    ? ''
    : `cpu: ${direct ? '' : `server ${f2(c.server)}, `}knotd ${f2(c.knot)}, dnsperf ${f2(c.perf)}, machine ${f2(c.machine)} of ${os.cpus().length}`;

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'namegate-bench-dns-'));
  const cleanup = async () => {
    await stopAll();
    await rm(dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    const { stdout: kernel } = await run('uname', ['-r']);
    console.log(
      `machine: ${os.cpus()[0]?.model ?? '?'} x${os.cpus().length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Linux ${kernel.trim()}, Node ${process.version}`,
    );
    console.log(`load average: ${loadText()} (other work on the machine skews every figure; run it below 1)`);
    const { stdout: perfVersion } = await run('dnsperf', ['-h']).catch(
      (e: { stdout?: string; stderr?: string }) => ({ stdout: `${e.stdout ?? ''}${e.stderr ?? ''}` }),
    );
    console.log(
      `dnsperf ${/Version ([0-9.]+)/.exec(perfVersion)?.[1] ?? '?'}: ${SECONDS} s per step, ${FIXED_SECONDS} s at ${FIXED_QPS} qps, ${PERF_CLIENTS} clients, 1000 outstanding, 4 MiB buffers, ${NAMES} distinct names, no CPU pinning; knotd with ${KNOT_UDP_WORKERS} UDP workers`,
    );
    const { zoneText, queries } = await buildFiles(dir);
    const policies = await buildPolicies(dir);
    const knot = await startKnot(dir, zoneText);

    const results = new Map<string, Result>();
    const skipped = new Map<string, string>();
    const starters: Array<[string, () => Promise<Server | string>]> = [
      ['direct', async () => ({ ...knot, name: 'direct', note: 'dnsperf -> knotd, no proxy (the ceiling)' })],
      ['namegate', () => startNamegate(dir, knot.port, policies)],
      ...(REUSEPORT > 1
        ? ([
            [
              `namegate-x${REUSEPORT}`,
              () => startNamegate(dir, knot.port, policies, { processes: REUSEPORT }),
            ],
          ] as Array<[string, () => Promise<Server | string>]>)
        : []),
      ['dnsmasq', () => startDnsmasq(dir, knot.port)],
      ['unbound', () => startUnbound(dir, knot.port)],
      ['coredns', () => startCoredns(dir, knot.port)],
    ];
    for (const [name, begin] of starters) {
      if (ONLY && !ONLY.includes(name)) continue;
      const s = await begin();
      if (typeof s === 'string') {
        skipped.set(name, s);
        console.log(`${name}: skipped: ${s}`);
        continue;
      }
      const direct = name === 'direct';
      try {
        // Warm up (namegate: JIT and store), then measure.
        await dnsperf(s.port, queries, { seconds: SECONDS, qps: 5000 });
        const cpus = new Map<PerfRun, StepCpu>();
        const { best, runs } = await maxQps(
          s.port,
          queries,
          SECONDS,
          (r) => {
            console.log(
              `  ${name.padEnd(11)} offered ${String(r.target).padStart(6)}  achieved ${r.qps.toFixed(0).padStart(6)} qps  loss ${(lossOf(r) * 100).toFixed(3)}%  avg ${r.avgLatencyMs.toFixed(2)} ms`,
            );
          },
          async (target) => {
            const m = await measured(s, knot.child.pid, queries, target, SECONDS);
            cpus.set(m.run, m.cpu);
            console.log(`  ${''.padEnd(11)} ${cpuText(m.cpu, direct)}`);
            return m.run;
          },
        );
        const bestRun = runs.find((r) => r.qps === best) ?? null;
        const fixed = await measured(s, knot.child.pid, queries, FIXED_QPS, FIXED_SECONDS, true);
        const sorted = fixed.latencies.sort((a, b) => a - b);
        const p50 = percentile(sorted, 50);
        const p99 = percentile(sorted, 99);
        const usPerQuery = (fixed.cpu.server * 1e6) / fixed.run.qps;
        console.log(
          `${name}: max ${best.toFixed(0)} qps (<0.1% loss) [${s.note}]\n` +
            `  at the max: ${cpuText(bestRun ? (cpus.get(bestRun) ?? null) : null, direct)}\n` +
            `  at ${FIXED_QPS} qps: achieved ${fixed.run.qps.toFixed(0)}, loss ${(lossOf(fixed.run) * 100).toFixed(3)}%, p50 ${p50.toFixed(3)} ms, p99 ${p99.toFixed(3)} ms, p99.9 ${percentile(sorted, 99.9).toFixed(3)} ms; ` +
            `${cpuText(fixed.cpu, direct)}${direct ? '' : `; server ${usPerQuery.toFixed(1)} us CPU per query`}`,
        );
        results.set(name, {
          qps: best,
          p50,
          p99,
          note: s.note,
          cpu: bestRun ? (cpus.get(bestRun) ?? null) : null,
          usPerQuery,
        });
      } finally {
        if (!direct) {
          await stop(s.child);
          for (const c of s.more ?? []) await stop(c);
        }
      }
    }
    const ours = results.get('namegate');
    const q = (n: string) => results.get(n)?.qps ?? Number.NaN;
    const ratio = (n: string) => (ours ? ours.qps / q(n) : Number.NaN);
    console.log('');
    console.log(`load average at the end: ${loadText()}`);
    const ceiling = results.get('direct');
    if (ceiling) {
      console.log(
        `ceiling (dnsperf -> knotd, no proxy): ${ceiling.qps.toFixed(0)} qps; a forwarder adds a process that needs CPU on the same ${os.cpus().length} cores`,
      );
      for (const [n, r] of results) {
        if (n === 'direct') continue;
        console.log(
          `  ${n.padEnd(11)} ${r.qps.toFixed(0).padStart(6)} qps = ${((r.qps / ceiling.qps) * 100).toFixed(0)}% of the ceiling; ${r.usPerQuery.toFixed(1)} us server CPU per query at ${FIXED_QPS} qps; machine ${f2(r.cpu?.machine ?? Number.NaN)} cores busy at its max`,
        );
      }
    }
    console.log(`namegate / dnsmasq: ${ratio('dnsmasq').toFixed(2)} (target >= 1.5)`);
    console.log(`namegate / unbound: ${ratio('unbound').toFixed(2)}`);
    console.log(
      `namegate / coredns: ${ratio('coredns').toFixed(2)} (target >= 1.0)${skipped.has('coredns') ? ' [CoreDNS skipped]' : ''}`,
    );
    console.log(`namegate p99 at ${FIXED_QPS} qps: ${ours?.p99.toFixed(3) ?? 'n/a'} ms (target < 2 ms)`);
    const rp = results.get(`namegate-x${REUSEPORT}`);
    if (rp && ours) console.log(`${REUSEPORT} reuse-port processes / 1: ${(rp.qps / ours.qps).toFixed(2)}`);
    const fmt = (v: number) => (Number.isFinite(v) ? v.toFixed(0) : 'NaN');
    console.log(
      `RESULT dns qps=${fmt(q('namegate'))} dnsmasq_qps=${fmt(q('dnsmasq'))} unbound_qps=${fmt(q('unbound'))} coredns_qps=${fmt(q('coredns'))} ratio_vs_dnsmasq=${ratio('dnsmasq').toFixed(2)} p99_ms_at_10k=${ours ? ours.p99.toFixed(3) : 'NaN'}`,
    );
  } finally {
    await cleanup();
  }
}

await main();
