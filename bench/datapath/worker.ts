/**
 * Runs inside a network namespace (the driver's addon works in-process):
 *   commit EXECUTOR RATE SECONDS   learn() one element per call at RATE calls/s; print latencies
 *   fill COUNT SOURCE DEST PORT    reconcile SOURCE as Enforce, learn COUNT filler elements and
 *                                  one that allows SOURCE -> DEST:PORT/TCP; leave the table
 * Prints one JSON line.
 */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type { AllowElement } from '../../src/datapath/datapath.ts';
import { NftDatapath } from '../../src/datapath/nft-driver.ts';
import { type NftExecutor, openExecutor } from '../../src/datapath/nft-executor.ts';

/** Times every transaction, to tell queueing from kernel time. */
function timed(inner: NftExecutor, into: number[]): NftExecutor {
  return {
    kind: inner.kind,
    run: async (commands, options) => {
      const t0 = performance.now();
      const r = await inner.run(commands, options);
      if (!commands.startsWith('list ')) into.push(performance.now() - t0);
      return r;
    },
    close: () => inner.close(),
  };
}

const [mode, ...args] = process.argv.slice(2);

function filler(i: number, source: string): AllowElement {
  // Destinations in 198.18.0.0/15 (benchmark range), unique per i.
  const d = 198 * 2 ** 24 + 18 * 2 ** 16 + i;
  const destination = [24, 16, 8, 0].map((s) => (d >>> s) & 255).join('.');
  return { source, destination, protocol: 'TCP', portFrom: 443, portTo: 443, timeoutMs: 600_000 };
}

async function commit(executor: 'addon' | 'spawn', rate: number, seconds: number): Promise<void> {
  const txns: number[] = [];
  const dp = await NftDatapath.open({
    executor: timed(await openExecutor(executor), txns),
    conntrack: null,
    maxQueuedElements: 1_000_000,
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
  const latencies: number[] = [];
  const pending: Promise<void>[] = [];
  let failures = 0;
  const start = performance.now();
  let issued = 0;
  while (issued < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate));
    for (; issued < due; issued++) {
      const t0 = performance.now();
      const source = sources[issued % sources.length] as string;
      pending.push(
        dp.learn([filler(issued, source)]).then(
          () => {
            latencies.push(performance.now() - t0);
          },
          () => {
            failures++;
          },
        ),
      );
    }
    // A 1 ms tick, not a busy loop: the generator must not starve the driver of CPU.
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(pending);
  loop.disable();
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  const q = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? Number.NaN;
  await dp.close();
  txns.sort((a, b) => a - b);
  const tq = (p: number) => txns[Math.min(txns.length - 1, Math.floor(p * txns.length))] ?? Number.NaN;
  console.log(
    JSON.stringify({
      executor,
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
    }),
  );
}

async function fill(count: number, source: string, dest: string, port: number): Promise<void> {
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
    dp.learn([
      { source, destination: dest, protocol: 'TCP', portFrom: port, portTo: port, timeoutMs: 600_000 },
    ]),
  );
  await Promise.all(calls);
  const seconds = (performance.now() - start) / 1000;
  await dp.close();
  console.log(JSON.stringify({ filled: count, seconds, executor: dp.executorKind }));
}

if (mode === 'commit')
  await commit(args[0] === 'spawn' ? 'spawn' : 'addon', Number(args[1]), Number(args[2]));
else if (mode === 'fill') await fill(Number(args[0]), args[1] ?? '', args[2] ?? '', Number(args[3]));
else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
