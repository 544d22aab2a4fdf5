/**
 * Profiling probe for a server process under load (not shipped): load it with
 * `node --import ./bench/dns/probe.ts ...`. Each SIGUSR2 prints one JSON line to stderr with
 * what happened since the previous one, then starts a new window:
 *   {"probe":{"seconds":..,"cpu":{"user":..,"system":..},"eld":{"p50":..,"p99":..,"max":..},
 *    "gc":{"minor":{"n":..,"ms":..,"max":..},"major":{..},..},"heapMb":..}}
 * eld is the event-loop delay (perf_hooks.monitorEventLoopDelay, 1 ms resolution); gc sums
 * the pauses the process reported, by kind. bench/dns/steady.ts reads these lines.
 *
 * With NAMEGATE_PROBE_ALLOC=FILE it also samples allocations (every 8 KB, collected objects
 * included, so the profile shows what allocates, not what is retained) from the first SIGUSR2
 * to the second, and writes them to FILE as a .heapprofile.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { constants, monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';

const KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

interface GcSum {
  n: number;
  ms: number;
  max: number;
}

let gc = new Map<string, GcSum>();
let pauses: number[] = [];
const obs = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const kind = KINDS[(e as unknown as { detail?: { kind?: number } }).detail?.kind ?? -1] ?? 'other';
    let s = gc.get(kind);
    if (!s) {
      s = { n: 0, ms: 0, max: 0 };
      gc.set(kind, s);
    }
    s.n++;
    s.ms += e.duration;
    s.max = Math.max(s.max, e.duration);
    if (pauses.length < 100_000) pauses.push(e.duration);
  }
});
obs.observe({ entryTypes: ['gc'] });

const eld = monitorEventLoopDelay({ resolution: 1 });
eld.enable();
let cpu = process.cpuUsage();
let at = performance.now();

const r = (v: number) => Math.round(v * 1000) / 1000;

const allocFile = process.env['NAMEGATE_PROBE_ALLOC'];
let signals = 0;
let session: Session | null = null;
if (allocFile) {
  session = new Session();
  session.connect();
}

process.on('SIGUSR2', () => {
  signals++;
  if (session && signals === 1) {
    session.post('HeapProfiler.startSampling', {
      samplingInterval: 8192,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
  } else if (session && signals === 2) {
    session.post('HeapProfiler.stopSampling', (err, res) => {
      if (!err) writeFileSync(allocFile as string, JSON.stringify(res.profile));
    });
  }
  const now = performance.now();
  const c = process.cpuUsage(cpu);
  const sorted = pauses.sort((a, b) => a - b);
  const line = {
    probe: {
      seconds: r((now - at) / 1000),
      cpu: { user: r(c.user / 1e6), system: r(c.system / 1e6) },
      eld: {
        p50: r(eld.percentile(50) / 1e6),
        p99: r(eld.percentile(99) / 1e6),
        p999: r(eld.percentile(99.9) / 1e6),
        max: r(eld.max / 1e6),
      },
      gc: Object.fromEntries([...gc].map(([k, s]) => [k, { n: s.n, ms: r(s.ms), max: r(s.max) }])),
      gcP99: r(sorted[Math.floor(sorted.length * 0.99)] ?? 0),
      heapMb: r(process.memoryUsage().heapUsed / 2 ** 20),
    },
  };
  process.stderr.write(`${JSON.stringify(line)}\n`);
  eld.reset();
  gc = new Map();
  pauses = [];
  cpu = process.cpuUsage();
  at = now;
});
