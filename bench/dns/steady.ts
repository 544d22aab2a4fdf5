/**
 * Steady-load probe (not a test, not part of `make bench`): one server under a fixed dnsperf
 * rate, several runs, and per run the latency percentiles, the CPU of every process involved
 * (server, knotd, dnsperf) and of the machine, and for namegate the event-loop delay and GC
 * pauses (bench/dns/probe.ts). It is how the DNS proxy's tail was profiled.
 *
 *   node bench/dns/steady.ts [--server namegate|dnsmasq|unbound|coredns|knot|bare] [--qps 10000|max]
 *        [--seconds 10] [--runs 3] [--warm 5] [--flags "--max-semi-space-size=2 --cpu-prof"]
 *        [--dns "upstreamSockets: 64"]...
 *
 * --root DIR runs the namegate of another checkout (e.g. `git archive HEAD | tar -x -C DIR`) for
 * before/after comparisons. --flags runs namegate as `node <flags> --import bench/dns/probe.ts src/cli/main.ts dns`
 * (default: bin/namegate's own V8 flags); --cpu-prof profiles land in the bench's temp dir and
 * are copied to /tmp/namegate-prof/. --server knot sends the load straight to the upstream:
 * the ceiling of dnsperf and knotd on this machine with no proxy between them; --server bare
 * runs bench/dns/bare-forwarder.ts, the floor of a Node.js forwarder.
 */
import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { freePort } from '../../test/integration/dns/knot.ts';
import {
  binFlags,
  buildFiles,
  buildPolicies,
  CpuWindow,
  dnsperf,
  equalBuffers,
  lossOf,
  NODE,
  percentile,
  ROOT,
  ready,
  type Server,
  start,
  startCoredns,
  startDnsmasq,
  startKnot,
  startNamegate,
  startUnbound,
  stop,
  stopAll,
} from './lib.ts';

const { values: a } = parseArgs({
  options: {
    server: { type: 'string', default: 'namegate' },
    qps: { type: 'string', default: '10000' },
    seconds: { type: 'string', default: '10' },
    runs: { type: 'string', default: '3' },
    warm: { type: 'string', default: '5' },
    flags: { type: 'string' },
    dns: { type: 'string', multiple: true, default: [] },
    clients: { type: 'string', default: '8' },
    threads: { type: 'string', default: '1' },
    root: { type: 'string' },
  },
});

const seconds = Number(a.seconds);
const qps = a.qps === 'max' ? null : Number(a.qps);
const fmt = (v: number, d = 3) => (Number.isFinite(v) ? v.toFixed(d) : 'n/a');

const dir = await mkdtemp(path.join(os.tmpdir(), 'namegate-steady-'));
const probeLines: string[] = [];
let waiting: ((line: string) => void) | null = null;
let partial = '';
const onStderr = (text: string) => {
  partial += text;
  let nl = partial.indexOf('\n');
  while (nl >= 0) {
    const line = partial.slice(0, nl);
    partial = partial.slice(nl + 1);
    if (line.startsWith('{"probe"')) {
      if (waiting) {
        const w = waiting;
        waiting = null;
        w(line);
      } else probeLines.push(line);
    }
    nl = partial.indexOf('\n');
  }
};

/** Cumulative bucket counts (le in seconds) of namegate's latency histograms, from /metrics. */
async function histograms(port: number): Promise<Map<string, Array<readonly [number, number]>>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out = new Map<string, Array<readonly [number, number]>>();
  for (const m of text.matchAll(
    /^namegate_dns_(query|upstream)_duration_seconds_bucket\{le="([^"]+)",transport="udp"\} (\d+)$/gm,
  )) {
    const list = out.get(m[1] as string) ?? [];
    list.push([m[2] === '+Inf' ? Number.POSITIVE_INFINITY : Number(m[2]), Number(m[3])]);
    out.set(m[1] as string, list);
  }
  return out;
}

try {
  console.log(
    `load: ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}; ${os.cpus().length} CPUs`,
  );
  const { zoneText, queries } = await buildFiles(dir);
  const policies = await buildPolicies(dir);
  const knot = await startKnot(dir, zoneText);
  let server: Server | string;
  let probe = false;
  let metricsPort = 0;
  switch (a.server) {
    case 'namegate': {
      const flags = a.flags === undefined ? binFlags() : a.flags.split(/\s+/).filter(Boolean);
      probe = true;
      metricsPort = await freePort();
      server = await startNamegate(dir, knot.port, policies, {
        args: ['--metrics', `127.0.0.1:${metricsPort}`],
        nodeFlags: [...flags, '--import', path.join(ROOT, 'bench/dns/probe.ts')],
        dnsConfig: a.dns,
        onStderr,
        ...(a.root ? { root: a.root } : {}),
      });
      console.log(`namegate: node ${flags.join(' ')}; dns config: ${a.dns.join('; ') || '(bench default)'}`);
      break;
    }
    case 'dnsmasq':
      server = await startDnsmasq(dir, knot.port);
      break;
    case 'unbound':
      server = await startUnbound(dir, knot.port);
      break;
    case 'coredns':
      server = await startCoredns(dir, knot.port);
      break;
    case 'knot':
      server = knot;
      break;
    case 'bare': {
      const port = await freePort();
      const child = start(
        NODE,
        [path.join(ROOT, 'bench/dns/bare-forwarder.ts'), String(port), String(knot.port)],
        dir,
      );
      await ready(port);
      server = { name: 'bare', port, child, note: 'bare Node forwarder' };
      break;
    }
    default:
      throw new Error(`unknown server ${a.server}`);
  }
  if (typeof server === 'string') throw new Error(server);
  const s = server;
  // Every server's listening socket gets the same buffers (as in bench/dns/main.ts).
  await equalBuffers(knot.child.pid, knot.port);
  if (s !== knot) await equalBuffers(s.child.pid, s.port);
  const pids = new Map<string, number | undefined>([
    ['server', s.child.pid],
    ...(s === knot ? [] : ([['knotd', knot.child.pid]] as Array<[string, number | undefined]>)),
  ]);
  const report = (): Promise<string | null> => {
    if (!probe) return Promise.resolve(null);
    return new Promise((resolve) => {
      waiting = resolve;
      s.child.kill('SIGUSR2');
      setTimeout(() => {
        if (waiting === resolve) {
          waiting = null;
          resolve(null);
        }
      }, 2000);
    });
  };
  if (Number(a.warm) > 0) await dnsperf(s.port, queries, { seconds: Number(a.warm), qps: 5000 });
  for (let i = 0; i < Number(a.runs); i++) {
    await report();
    const before = metricsPort ? await histograms(metricsPort) : null;
    const cpu = new CpuWindow(pids);
    cpu.start();
    const { run, latencies } = await dnsperf(s.port, queries, {
      seconds,
      qps,
      latencies: true,
      clients: Number(a.clients),
      threads: Number(a.threads),
    });
    const used = cpu.end();
    const p = await report();
    const sorted = latencies.sort((x, y) => x - y);
    const cores = [...used.cores].map(([k, v]) => `${k} ${fmt(v, 2)}`).join(', ');
    const perf = run.perfCpu === null ? '' : `, dnsperf ${fmt(run.perfCpu / used.seconds, 2)}`;
    console.log(
      `${a.server} run ${i + 1}: offered ${qps ?? 'max'} achieved ${run.qps.toFixed(0)} loss ${(lossOf(run) * 100).toFixed(3)}% ` +
        `p50 ${fmt(percentile(sorted, 50))} p90 ${fmt(percentile(sorted, 90))} p99 ${fmt(percentile(sorted, 99))} ` +
        `p99.9 ${fmt(percentile(sorted, 99.9))} max ${fmt(sorted[sorted.length - 1] ?? Number.NaN)} ms`,
    );
    console.log(
      `  cores: ${cores}${perf}, machine ${fmt(used.machine, 2)} of ${os.cpus().length}; ` +
        `server us/query ${fmt(((used.cores.get('server') ?? Number.NaN) * 1e6) / run.qps, 1)}`,
    );
    if (p) console.log(`  ${p}`);
    if (before) {
      const after = await histograms(metricsPort);
      for (const [name, h] of after) {
        const b = before.get(name);
        const counts = h.map(([le, n]) => [le, n - (b?.find(([l]) => l === le)?.[1] ?? 0)] as const);
        const total = counts[counts.length - 1]?.[1] ?? 0;
        const over = (ms: number) => total - (counts.find(([le]) => le === ms / 1000)?.[1] ?? total);
        console.log(
          `  ${name}: ${total} observed; over 1 ms ${((over(1) / total) * 100).toFixed(2)}%, over 2.5 ms ${((over(2.5) / total) * 100).toFixed(2)}%, over 10 ms ${((over(10) / total) * 100).toFixed(3)}%`,
        );
      }
    }
  }
  await stop(s.child);
  const profiles = (await readdir(dir)).filter(
    (f) => f.endsWith('.cpuprofile') || f.endsWith('.heapprofile'),
  );
  if (profiles.length > 0) {
    const out = '/tmp/namegate-prof';
    for (const f of profiles) await cp(path.join(dir, f), path.join(out, f));
    console.log(`profiles: ${profiles.map((f) => path.join(out, f)).join(' ')}`);
  }
} finally {
  await stopAll();
  await rm(dir, { recursive: true, force: true });
}
