/**
 * Datapath benchmark (not a test; root; network namespaces only).
 * 1. Commit latency: learn() call -> kernel commit, one element per call at 1,000 and 10,000
 *    elements/s for a few seconds, for the libnftables addon and the `nft -f` spawn fallback;
 *    with where the time went (queued behind the transaction in flight, the transaction as the
 *    event loop sees it, settling the caller).
 * 2. Bulk TCP throughput (iperf3) through a router namespace whose namegate table holds 100,000
 *    learned elements (the flow's source governed) against an identical router without a table,
 *    and one with only conntrack (a one-rule stateful table), measured in rotation in the run.
 * 3. Short TCP connections per second (bench/datapath/conn.ts: connect, one byte, close) through
 *    the same three routers in rotation: every connection's first packet is a new flow that
 *    meets the forward chain's set lookups, which one long iperf3 flow never does.
 * Last line: RESULT datapath commit_p99_ms=<addon p99 at 10k/s> elements_per_s=<achieved>
 *            throughput_ratio=<with/without> conn_ratio=<with/without>
 */
import { cpus, hostname, loadavg, release } from 'node:os';
import { Netns, NODE, veth } from '../../test/integration/netns.ts';

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 3);
const FILL = Number(process.env['BENCH_ELEMENTS'] ?? 100_000);
const IPERF_SECONDS = Number(process.env['BENCH_IPERF_SECONDS'] ?? 2);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 8);
const CONN_SECONDS = Number(process.env['BENCH_CONN_SECONDS'] ?? 2);
const CONN_ROUNDS = Number(process.env['BENCH_CONN_ROUNDS'] ?? 9);
const CONN_CONCURRENCY = Number(process.env['BENCH_CONN_CONCURRENCY'] ?? 32);
const IPERF_PORT = 5201;
const CONN_PORT = 5202;
/** `commit` or `throughput` runs only that part (the RESULT line then has NaN for the other). */
const ONLY = process.env['BENCH_ONLY'] ?? '';
/** Node flags for the commit worker, e.g. `--max-semi-space-size=2` (GC pauses; see docs). */
const NODE_FLAGS = (process.env['BENCH_NODE_FLAGS'] ?? '').split(' ').filter(Boolean);

interface Quantiles {
  p50: number;
  p99: number;
}

interface CommitResult {
  executor: string;
  inPlace: boolean;
  parts: {
    queued: Quantiles;
    txn: Quantiles;
    settle: Quantiles;
    slowest1pct: { queued: number; txn: number; settle: number };
  };
  transactions: number;
  txP50: number;
  txP99: number;
  loopP99: number;
  loopMax: number;
  rate: number;
  elements: number;
  failures: number;
  elementsPerS: number;
  p50: number;
  p99: number;
  max: number;
}

const namespaces: Netns[] = [];
async function ns(): Promise<Netns> {
  const n = await Netns.create(undefined, 'ng-b');
  namespaces.push(n);
  return n;
}

async function commitRun(executor: 'addon' | 'spawn', rate: number): Promise<CommitResult> {
  const n = await ns();
  const out = await n.run(
    [NODE, ...NODE_FLAGS, 'bench/datapath/worker.ts', 'commit', executor, String(rate), String(SECONDS)],
    {
      timeoutMs: 300_000,
    },
  );
  await n.delete();
  return JSON.parse(out.trim().split('\n').at(-1) ?? '{}');
}

/** client -- router -- server; returns the namespaces. */
async function path(
  i: number,
): Promise<{ client: Netns; router: Netns; server: Netns; clientIp: string; serverIp: string }> {
  const [client, router, server] = [await ns(), await ns(), await ns()];
  await veth(client, 'eth0', router, 'down0');
  await veth(server, 'eth0', router, 'up0');
  await router.sysctl('net.ipv4.ip_forward', '1');
  const clientIp = `10.${100 + i}.1.1`;
  const serverIp = `10.${100 + i}.2.1`;
  await client.addAddress('eth0', `${clientIp}/24`);
  await router.addAddress('down0', `10.${100 + i}.1.254/24`);
  await router.addAddress('up0', `10.${100 + i}.2.254/24`);
  await server.addAddress('eth0', `${serverIp}/24`);
  await client.route('default', `10.${100 + i}.1.254`);
  await server.route('default', `10.${100 + i}.2.254`);
  return { client, router, server, clientIp, serverIp };
}

async function iperf(client: Netns, server: string): Promise<number> {
  const out = await client.run(
    ['iperf3', '-c', server, '-p', String(IPERF_PORT), '-t', String(IPERF_SECONDS), '-J'],
    {
      timeoutMs: 60_000,
    },
  );
  const j = JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } };
  return j.end.sum_received.bits_per_second;
}

function ms(v: number): string {
  return v.toFixed(3);
}

async function main(): Promise<void> {
  console.log(
    `machine: ${hostname()} ${cpus().length}x ${cpus()[0]?.model ?? '?'} kernel ${release()} node ${process.version} load ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}${NODE_FLAGS.length > 0 ? ` worker flags ${NODE_FLAGS.join(' ')}` : ''}`,
  );
  const commits: CommitResult[] = [];
  for (const executor of ONLY === 'throughput' ? [] : (['addon', 'spawn'] as const)) {
    for (const rate of [1_000, 10_000]) {
      const r = await commitRun(executor, rate);
      commits.push(r);
      console.log(
        `commit ${(executor + (r.inPlace ? '*' : '')).padEnd(6)} ${String(rate).padStart(6)}/s: p50 ${ms(r.p50)} ms  p99 ${ms(r.p99)} ms  max ${ms(r.max)} ms  achieved ${Math.round(r.elementsPerS)}/s  failures ${r.failures}  transactions ${r.transactions} (nft p50 ${ms(r.txP50)} ms, p99 ${ms(r.txP99)} ms)  event loop delay p99 ${ms(r.loopP99)} ms max ${ms(r.loopMax)} ms  load ${loadavg()[0]?.toFixed(2)}`,
      );
      const p = r.parts;
      console.log(
        `  where the time went (p50 / p99): queued ${ms(p.queued.p50)} / ${ms(p.queued.p99)}, transaction ${ms(p.txn.p50)} / ${ms(p.txn.p99)}, settle ${ms(p.settle.p50)} / ${ms(p.settle.p99)}; slowest 1%: queued ${ms(p.slowest1pct.queued)}, transaction ${ms(p.slowest1pct.txn)}, settle ${ms(p.slowest1pct.settle)} (mean)`,
      );
    }
  }

  let ratio = Number.NaN;
  let connRatio = Number.NaN;
  if (ONLY !== 'commit') ({ ratio, connRatio } = await throughput());
  const main10k = commits.find((c) => c.executor === 'addon' && c.rate === 10_000);
  const spawn10k = commits.find((c) => c.executor === 'spawn' && c.rate === 10_000);
  if (main10k && spawn10k)
    console.log(`addon vs spawn p99 at 10k/s: ${ms(main10k.p99)} ms vs ${ms(spawn10k.p99)} ms`);
  if (commits.length > 0)
    console.log(
      main10k?.inPlace
        ? 'addon*: write transactions run on the event-loop thread (runSync)'
        : 'addon: write transactions run on the libuv pool (this addon build has no runSync; see bench/datapath/addon-runsync.patch)',
    );
  console.log(
    `RESULT datapath commit_p99_ms=${ms(main10k?.p99 ?? Number.NaN)} elements_per_s=${Math.round(main10k?.elementsPerS ?? 0)} throughput_ratio=${ratio.toFixed(3)} conn_ratio=${connRatio.toFixed(3)}`,
  );
}

function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((p, q) => p - q);
  return sorted.length % 2 === 1
    ? (sorted[(sorted.length - 1) / 2] as number)
    : ((sorted[sorted.length / 2 - 1] as number) + (sorted[sorted.length / 2] as number)) / 2;
}

async function conns(client: Netns, server: string): Promise<number> {
  const out = await client.run(
    [
      NODE,
      'bench/datapath/conn.ts',
      'client',
      server,
      String(CONN_PORT),
      String(CONN_SECONDS),
      String(CONN_CONCURRENCY),
    ],
    { timeoutMs: 60_000 },
  );
  const r = JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as { perSecond: number; failed: number };
  if (r.failed > 0) console.log(`  (${r.failed} connections failed)`);
  return r.perSecond;
}

async function throughput(): Promise<{ ratio: number; connRatio: number }> {
  const plain = await path(0);
  const gated = await path(1);
  // A router with conntrack and the same first forward rule, but nothing of namegate: tells
  // the cost of a stateful firewall at all from the cost of namegate's table.
  const stateful = await path(2);
  await stateful.router.run([
    'nft',
    'add table inet stateful; add chain inet stateful f { type filter hook forward priority 0; policy accept; }; add rule inet stateful f ct state established,related accept',
  ]);
  const paths = [plain, gated, stateful];
  for (const p of paths) {
    p.server.spawn(['iperf3', '-s', '-p', String(IPERF_PORT)]);
    p.server.spawn([NODE, 'bench/datapath/conn.ts', 'server', String(CONN_PORT)]);
    // Many short connections from one address: the whole port range, and no wait for TIME_WAIT
    // (the server closes first, so it holds those anyway).
    await p.client.sysctl('net.ipv4.ip_local_port_range', '1024 65535');
  }
  const fill = await gated.router.run(
    [
      NODE,
      'bench/datapath/worker.ts',
      'fill',
      String(FILL),
      gated.clientIp,
      gated.serverIp,
      `${IPERF_PORT},${CONN_PORT}`,
    ],
    { timeoutMs: 600_000 },
  );
  console.log(`table filled: ${fill.trim()}`);
  // iperf3 servers need a moment to listen; the first client retries until they do.
  for (const p of paths) {
    for (let i = 0; ; i++) {
      const r = await p.client.exec(['iperf3', '-c', p.serverIp, '-t', '1', '-J'], { timeoutMs: 30_000 });
      if (r.code === 0) break;
      if (i > 50) throw new Error(`iperf3 never connected: ${r.stdout.slice(0, 300)} ${r.stderr}`);
      await new Promise((res) => setTimeout(res, 100));
    }
  }
  // Rounds in rotating order; the figure is the median of the per-round ratios, which a slow
  // drift of the machine (other load) affects less than a ratio of means.
  const runs = paths.map(() => [] as number[]);
  for (let i = 0; i < ROUNDS; i++) {
    for (let k = 0; k < paths.length; k++) {
      const j = (i + k) % paths.length;
      const p = paths[j] as (typeof paths)[number];
      (runs[j] as number[]).push(await iperf(p.client, p.serverIp));
    }
  }
  const [without, withTable, withCt] = runs as [number[], number[], number[]];
  const ratio = median(withTable.map((y, i) => y / (without[i] as number)));
  const vsStateful = median(withTable.map((y, i) => y / (withCt[i] as number)));
  const mean = (xs: number[]) => xs.reduce((x, y) => x + y, 0) / xs.length;
  const count = await gated.router.run(['nft', 'list', 'set', 'inet', 'namegate', 'allow4'], {
    timeoutMs: 300_000,
  });
  const elements = (count.match(/ \. tcp \. /g) ?? []).length;
  const show = (xs: number[]) =>
    `${(mean(xs) / 1e9).toFixed(2)} Gbit/s (${xs.map((x) => (x / 1e9).toFixed(2)).join(', ')})`;
  console.log(`throughput without table: ${show(without)}`);
  console.log(`throughput with conntrack only (one ct rule): ${show(withCt)}`);
  console.log(`throughput with table (${elements} learned elements): ${show(withTable)}`);
  console.log(
    `median of per-round ratios: with table / without ${ratio.toFixed(3)}; with table / conntrack only ${vsStateful.toFixed(3)}; ratio of means ${(mean(withTable) / mean(without)).toFixed(3)}`,
  );

  // Short connections, the same rotation. The first round warms up (JIT, ARP, conntrack).
  for (const p of paths) await conns(p.client, p.serverIp);
  const rates = paths.map(() => [] as number[]);
  for (let i = 0; i < CONN_ROUNDS; i++) {
    for (let k = 0; k < paths.length; k++) {
      const j = (i + k) % paths.length;
      const p = paths[j] as (typeof paths)[number];
      (rates[j] as number[]).push(await conns(p.client, p.serverIp));
    }
  }
  const [cWithout, cWith, cCt] = rates as [number[], number[], number[]];
  const connRatio = median(cWith.map((y, i) => y / (cWithout[i] as number)));
  const connVsCt = median(cWith.map((y, i) => y / (cCt[i] as number)));
  const showConn = (xs: number[]) =>
    `median ${median(xs).toFixed(0)}/s (${xs.map((x) => x.toFixed(0)).join(', ')})`;
  console.log(
    `short connections (${CONN_CONCURRENCY} loops of connect, one byte, close; ${CONN_SECONDS} s rounds; load ${loadavg()[0]?.toFixed(2)}):`,
  );
  console.log(`  without table: ${showConn(cWithout)}`);
  console.log(`  conntrack only (one ct rule): ${showConn(cCt)}`);
  console.log(`  with table (${elements} learned elements): ${showConn(cWith)}`);
  console.log(
    `  median of per-round ratios: with table / without ${connRatio.toFixed(3)} (target >= 0.95); with table / conntrack only ${connVsCt.toFixed(3)}`,
  );
  return { ratio, connRatio };
}

try {
  await main();
} finally {
  for (const n of namespaces) await n.delete();
}
