/**
 * Runs inside a network namespace (the driver's addon works in-process):
 *   commit EXECUTOR RATE SECONDS   learn() one element per call at RATE calls/s; print latencies
 *   fill COUNT SOURCE DEST PORTS   reconcile SOURCE as Enforce, learn COUNT filler elements and
 *                                  one per port (comma list) that allows SOURCE -> DEST:PORT/TCP;
 *                                  leave the table
 * Prints one JSON line.
 */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type { AllowElement } from '../../src/datapath/datapath.ts';
import { NftDatapath } from '../../src/datapath/nft-driver.ts';
import { type NftExecutor, openExecutor } from '../../src/datapath/nft-executor.ts';
import { AddonExecutor, loadAddon } from '../../src/datapath/nft-executor-addon.ts';

interface Span {
  readonly start: number;
  end: number;
}

/** Times every write transaction (start and end as the event loop sees them). */
function timed(inner: NftExecutor, into: Span[]): NftExecutor {
  return {
    kind: inner.kind,
    run: async (commands, options) => {
      const span = { start: performance.now(), end: Number.NaN };
      const r = await inner.run(commands, options);
      span.end = performance.now();
      if (!commands.startsWith('list ')) into.push(span);
      return r;
    },
    close: () => inner.close(),
  };
}

function quantile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? Number.NaN;
}

/**
 * Where each call's time went. The writer is FIFO and batches never fill at these rates, so a
 * call rides the first transaction that starts after it was made: `queued` is the wait for that
 * start (behind the transaction in flight, plus event-loop delay), `txn` the transaction as the
 * event loop sees it (libuv pool hand-off, libnftables, kernel, completion callback), `settle`
 * from its end to the caller's continuation.
 */
function breakdown(calls: readonly { t0: number; done: number }[], spans: readonly Span[]) {
  const starts = spans.map((s) => s.start);
  const parts = { queued: [] as number[], txn: [] as number[], settle: [] as number[] };
  const slow: { queued: number; txn: number; settle: number }[] = [];
  const total = calls.map((c) => c.done - c.t0).sort((a, b) => a - b);
  const p99 = quantile(total, 0.99);
  for (const c of calls) {
    let lo = 0;
    let hi = starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((starts[mid] as number) < c.t0) lo = mid + 1;
      else hi = mid;
    }
    const s = spans[lo];
    if (!s) continue;
    const x = { queued: s.start - c.t0, txn: s.end - s.start, settle: c.done - s.end };
    parts.queued.push(x.queued);
    parts.txn.push(x.txn);
    parts.settle.push(x.settle);
    if (c.done - c.t0 >= p99) slow.push(x);
  }
  const q = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return { p50: quantile(s, 0.5), p99: quantile(s, 0.99) };
  };
  const mean = (k: 'queued' | 'txn' | 'settle') =>
    slow.reduce((n, x) => n + x[k], 0) / Math.max(1, slow.length);
  return {
    queued: q(parts.queued),
    txn: q(parts.txn),
    settle: q(parts.settle),
    slowest1pct: { queued: mean('queued'), txn: mean('txn'), settle: mean('settle') },
  };
}

const [mode, ...args] = process.argv.slice(2);

/**
 * The executor as the driver opens it: the addon runs small write transactions in place when
 * the build has runSync (BENCH_SYNC=0 forces the pool, for comparison).
 */
async function benchExecutor(kind: 'addon' | 'spawn'): Promise<{ exec: NftExecutor; inPlace: boolean }> {
  if (kind === 'spawn') return { exec: await openExecutor('spawn'), inPlace: false };
  const loaded = loadAddon();
  if (typeof loaded === 'string') throw new Error(loaded);
  const syncWrites = process.env['BENCH_SYNC'] !== '0';
  return {
    exec: new AddonExecutor(loaded, { syncWrites }),
    inPlace: syncWrites && typeof loaded.runSync === 'function',
  };
}

function filler(i: number, source: string): AllowElement {
  // Destinations in 198.18.0.0/15 (benchmark range), unique per i.
  const d = 198 * 2 ** 24 + 18 * 2 ** 16 + i;
  const destination = [24, 16, 8, 0].map((s) => (d >>> s) & 255).join('.');
  return { source, destination, protocol: 'TCP', portFrom: 443, portTo: 443, timeoutMs: 600_000 };
}

async function commit(executor: 'addon' | 'spawn', rate: number, seconds: number): Promise<void> {
  const spans: Span[] = [];
  const { exec, inPlace } = await benchExecutor(executor);
  const dp = await NftDatapath.open({
    executor: timed(exec, spans),
    conntrack: null,
    maxQueuedElements: 1_000_000,
    writerStart: process.env['BENCH_WRITER_START'] === 'now' ? 'now' : 'immediate',
  });
  const sources = Array.from({ length: 100 }, (_, i) => `10.77.${i >> 8}.${i & 255}`);
  await dp.reconcile({
    sources: sources.map((ip) => ({ ip, mode: 'Enforce' as const })),
    cidrs: [],
    verify: [],
  });
  const total = Math.round(rate * seconds);
  // Tells a slow kernel from a stalled process (GC, CPU taken by other load).
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  // Preallocated, and no promise kept per call: the harness must not add its own garbage to
  // the driver's (young-generation GC pauses are the largest part of the tail).
  const t0s = new Float64Array(total);
  const dones = new Float64Array(total).fill(Number.NaN);
  let failures = 0;
  let outstanding = 0;
  let allDone: () => void = () => undefined;
  const finished = new Promise<void>((r) => {
    allDone = r;
  });
  const settle = () => {
    if (--outstanding === 0 && issued === total) allDone();
  };
  const start = performance.now();
  let issued = 0;
  while (issued < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate));
    for (; issued < due; issued++) {
      const i = issued;
      t0s[i] = performance.now();
      outstanding++;
      dp.learn([filler(i, sources[i % sources.length] as string)]).then(
        () => {
          dones[i] = performance.now();
          settle();
        },
        () => {
          failures++;
          settle();
        },
      );
    }
    // A 1 ms tick, not a busy loop: the generator must not starve the driver of CPU.
    await new Promise((r) => setTimeout(r, 1));
  }
  if (outstanding > 0) await finished;
  loop.disable();
  const calls: { t0: number; done: number }[] = [];
  const latencies: number[] = [];
  for (let i = 0; i < total; i++) {
    const done = dones[i] as number;
    if (Number.isNaN(done)) continue;
    calls.push({ t0: t0s[i] as number, done });
    latencies.push(done - (t0s[i] as number));
  }
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  const q = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? Number.NaN;
  await dp.close();
  const reconcileSpans = 1;
  const txns = spans
    .slice(reconcileSpans)
    .map((x) => x.end - x.start)
    .sort((a, b) => a - b);
  const tq = (p: number) => quantile(txns, p);
  const parts = breakdown(calls, spans.slice(reconcileSpans));
  console.log(
    JSON.stringify({
      executor,
      inPlace,
      rate,
      transactions: txns.length,
      txP50: tq(0.5),
      txP99: tq(0.99),
      txMax: txns.at(-1),
      loopP99: loop.percentile(99) / 1e6,
      loopMax: loop.max / 1e6,
      slowTx: txns.filter((x) => x > 20).length,
      elements: latencies.length,
      failures,
      elementsPerS: latencies.length / elapsed,
      p50: q(0.5),
      p99: q(0.99),
      max: latencies.at(-1),
      parts,
    }),
  );
}

async function fill(count: number, source: string, dest: string, ports: readonly number[]): Promise<void> {
  const dp = await NftDatapath.open({
    conntrack: null,
    maxQueuedElements: 1_000_000,
    config: { sizes: { allow: 262_144 } },
  });
  await dp.reconcile({ sources: [{ ip: source, mode: 'Enforce' }], cidrs: [], verify: [] });
  const start = performance.now();
  const chunk = 1000;
  const calls: Promise<void>[] = [];
  for (let i = 0; i < count; i += chunk) {
    const els = [];
    for (let j = i; j < Math.min(count, i + chunk); j++) els.push(filler(j, source));
    calls.push(dp.learn(els));
  }
  calls.push(
    dp.learn(
      ports.map((port) => ({
        source,
        destination: dest,
        protocol: 'TCP' as const,
        portFrom: port,
        portTo: port,
        timeoutMs: 600_000,
      })),
    ),
  );
  await Promise.all(calls);
  const seconds = (performance.now() - start) / 1000;
  await dp.close();
  console.log(JSON.stringify({ filled: count, seconds, executor: dp.executorKind }));
}

if (mode === 'commit')
  await commit(args[0] === 'spawn' ? 'spawn' : 'addon', Number(args[1]), Number(args[2]));
else if (mode === 'fill')
  await fill(Number(args[0]), args[1] ?? '', args[2] ?? '', (args[3] ?? '').split(',').map(Number));
else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
