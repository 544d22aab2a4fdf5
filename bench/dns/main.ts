/**
 * DNS proxy benchmark (not a test). In one run, against the same upstream (knotd on loopback,
 * 10,000 names) and the same dnsperf load, it measures:
 *   namegate  `namegate dns` (policy with 10,000 patterns, learning on, recording datapath,
 *             flow log on and written to /dev/null)
 *   dnsmasq   --cache-size=0 --no-resolv --server=127.0.0.1#<knot>
 *   unbound   forwarder to knot with its caches minimized (cache-max-ttl 0)
 *   CoreDNS   forward plugin, no cache (built from its Go module by scripts/build-test-bins.sh)
 * For each: the highest rate with < 0.1% loss (dnsperf -Q stepped up until loss or saturation;
 * the figure is the achieved rate), then p50/p99 latency at a fixed 10,000 qps (dnsperf -v).
 * Every run is bounded (a few seconds). Prints the machine, every figure, the ratios, and last:
 *   RESULT dns qps=<ours> dnsmasq_qps=<x> unbound_qps=<y> coredns_qps=<z> ratio_vs_dnsmasq=<r> p99_ms_at_10k=<ms>
 *
 * Options (env): NAMEGATE_BENCH_SECONDS (per run, default 3); NAMEGATE_BENCH_ONLY (comma list of
 * servers to run); NAMEGATE_BENCH_REUSEPORT=N adds an informational run of N namegate processes
 * sharing the port with SO_REUSEPORT (separate stores; bench/dns/reuseport-proxy.ts) to show
 * what more cores give on this machine. It is not part of the RESULT line.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import dnsPacket from 'dns-packet';
import { freePort, zone } from '../../test/integration/dns/knot.ts';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');
const SECONDS = Number(process.env['NAMEGATE_BENCH_SECONDS'] ?? 3);
const REUSEPORT = Number(process.env['NAMEGATE_BENCH_REUSEPORT'] ?? 0);
const ONLY = process.env['NAMEGATE_BENCH_ONLY']?.split(',') ?? null;
const NAMES = 10_000;
const PATTERNS = 10_000;
const FIXED_QPS = 10_000;
const MAX_LOSS = 0.001;

interface Server {
  readonly name: string;
  readonly port: number;
  readonly child: ChildProcess;
  /** Further processes of the same server (the reuse-port experiment). */
  readonly more?: ChildProcess[];
  readonly note: string;
}

interface PerfRun {
  readonly target: number | null;
  readonly sent: number;
  readonly completed: number;
  readonly lost: number;
  readonly qps: number;
  readonly avgLatencyMs: number;
}

const children = new Set<ChildProcess>();

function start(cmd: string, args: string[], cwd: string): ChildProcess {
  const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr?.on('data', (d: Buffer) => {
    if (err.length < 4000) err += d.toString();
  });
  child.once('exit', (code, signal) => {
    if (children.has(child) && code !== 0 && signal === null) console.error(`${cmd} exited ${code}: ${err}`);
    children.delete(child);
  });
  children.add(child);
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  children.delete(child);
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/** Wait until `port` answers an A query for a name the zone has (bounded). */
async function ready(port: number, name = 'h0.bench.test', timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = dgram.createSocket('udp4');
      const done = (v: boolean) => {
        clearTimeout(t);
        s.close();
        resolve(v);
      };
      const t = setTimeout(() => done(false), 300);
      s.on('message', (m) => {
        try {
          done((dnsPacket.decode(m).answers?.length ?? 0) > 0);
        } catch {
          done(false);
        }
      });
      s.on('error', () => done(false));
      s.send(
        dnsPacket.encode({ type: 'query', id: 7, flags: 256, questions: [{ type: 'A', name }] }),
        port,
        '127.0.0.1',
      );
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing answers on 127.0.0.1:${port}`);
}

async function dnsperf(
  port: number,
  queries: string,
  qps: number | null,
  verbose = false,
): Promise<{ run: PerfRun; latencies: number[] }> {
  // -b: dnsperf's socket buffers (KiB, capped by net.core.rmem_max); its default drops replies
  // whenever it is descheduled, which shows up as the server's loss.
  const args = [
    '-s',
    '127.0.0.1',
    '-p',
    String(port),
    '-d',
    queries,
    '-l',
    String(SECONDS),
    '-t',
    '1',
    '-c',
    '4',
    '-q',
    '1000',
    '-b',
    '4096',
  ];
  if (qps !== null) args.push('-Q', String(qps));
  if (verbose) args.push('-v');
  const { stdout } = await run('dnsperf', args, {
    maxBuffer: 256 * 1024 * 1024,
    timeout: (SECONDS + 15) * 1000,
  });
  const num = (re: RegExp) => Number(re.exec(stdout)?.[1] ?? Number.NaN);
  const latencies: number[] = [];
  if (verbose) {
    for (const m of stdout.matchAll(/^> \S+ \S+ \S+ ([0-9.]+)$/gm)) latencies.push(Number(m[1]) * 1000);
  }
  return {
    run: {
      target: qps,
      sent: num(/Queries sent:\s+(\d+)/),
      completed: num(/Queries completed:\s+(\d+)/),
      lost: num(/Queries lost:\s+(\d+)/),
      qps: num(/Queries per second:\s+([0-9.]+)/),
      avgLatencyMs: num(/Average Latency \(s\):\s+([0-9.]+)/) * 1000,
    },
    latencies,
  };
}

const lossOf = (r: PerfRun) => (r.sent > 0 ? r.lost / r.sent : 1);

/**
 * Step the offered load up from 2,000 qps (x1.3 each step) until a step loses 0.1% or more, or
 * the server falls behind (achieves < 95% of the offered rate); then try once between the last
 * good step and the first bad one. The figure is the best achieved rate of a step under 0.1%
 * loss. At most ~14 runs.
 */
async function maxQps(port: number, queries: string): Promise<{ best: number; runs: PerfRun[] }> {
  const runs: PerfRun[] = [];
  let best = 0;
  let good = 0;
  let bad = 0;
  for (let target = 2000; target <= 400_000; target = Math.round((target * 1.3) / 100) * 100) {
    const r = (await dnsperf(port, queries, target)).run;
    runs.push(r);
    if (lossOf(r) < MAX_LOSS && r.qps >= 0.95 * target) {
      best = Math.max(best, r.qps);
      good = target;
    } else {
      if (lossOf(r) < MAX_LOSS) best = Math.max(best, r.qps);
      bad = target;
      break;
    }
  }
  if (good > 0 && bad > 0) {
    const target = Math.round((good + bad) / 2 / 100) * 100;
    const r = (await dnsperf(port, queries, target)).run;
    runs.push(r);
    if (lossOf(r) < MAX_LOSS) best = Math.max(best, r.qps);
  }
  return { best, runs };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function buildFiles(dir: string): Promise<{ zoneText: string; queries: string }> {
  const rrs: string[] = [];
  const lines: string[] = [];
  for (let i = 0; i < NAMES; i++) {
    rrs.push(`h${i} A 198.51.${100 + Math.floor(i / 250)}.${(i % 250) + 1}`);
    lines.push(`h${i}.bench.test A`);
  }
  // Shuffle so consecutive queries hit different names (no in-flight merging of duplicates).
  for (let i = lines.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [lines[i], lines[j]] = [lines[j]!, lines[i]!];
  }
  const queries = path.join(dir, 'queries.txt');
  await writeFile(queries, `${lines.join('\n')}\n`);
  return { zoneText: zone('bench.test', rrs), queries };
}

/** 10 policies x 1,000 patterns: exact names for half the queried names, unrelated wildcards, one catch-all. */
async function buildPolicies(dir: string): Promise<string> {
  const folder = path.join(dir, 'policies');
  await import('node:fs/promises').then((fs) => fs.mkdir(folder));
  const patterns: string[] = [];
  for (let i = 0; i < NAMES / 2; i++) patterns.push(`    - name: h${i}.bench.test`);
  for (let i = 0; patterns.length < PATTERNS - 1; i++)
    patterns.push(`    - pattern: "*.svc${i}.example.org"`);
  patterns.push('    - pattern: "*.bench.test"');
  for (let p = 0; p < 10; p++) {
    const doc = [
      'apiVersion: namegate.dev/v1alpha1',
      'kind: ClusterEgressPolicy',
      'metadata:',
      `  name: bench-${p}`,
      'spec:',
      '  podSelector: { matchLabels: { role: client } }',
      '  egress:',
      '  - toFQDNs:',
      ...patterns.slice(p * 1000, (p + 1) * 1000),
      '    ports: [{ port: 443 }]',
    ];
    await writeFile(path.join(folder, `p${p}.yaml`), `${doc.join('\n')}\n`);
  }
  return folder;
}

async function startKnot(dir: string, zoneText: string): Promise<Server> {
  const port = await freePort();
  await writeFile(path.join(dir, 'bench.test.zone'), zoneText);
  const conf = [
    'server:',
    `    rundir: "${dir}"`,
    `    listen: 127.0.0.1@${port}`,
    'log:',
    '  - target: stderr',
    '    any: error',
    'database:',
    `    storage: "${dir}/db"`,
    'template:',
    '  - id: default',
    `    storage: "${dir}"`,
    '    file: "%s.zone"',
    'zone:',
    '  - domain: bench.test',
    '',
  ].join('\n');
  await writeFile(path.join(dir, 'knot.conf'), conf);
  const child = start('knotd', ['-c', path.join(dir, 'knot.conf'), '-s', path.join(dir, 'knot.sock')], dir);
  await ready(port);
  return { name: 'knot', port, child, note: 'knotd (authoritative upstream)' };
}

async function startNamegate(
  dir: string,
  upstream: number,
  policies: string,
  processes = 1,
): Promise<Server> {
  const port = await freePort();
  const config = [
    'dns:',
    `  listen: ["127.0.0.1:${port}"]`,
    `  upstreams: ["127.0.0.1:${upstream}"]`,
    '  flowLog: { mode: all, path: /dev/null }',
    // dnsperf is one source standing for many clients: per-source bounds would throttle it.
    '  limits: { ratePerSource: 1000000, burstPerSource: 1000000, maxPendingPerSource: 100000, maxPending: 100000 }',
    'store: { maxIpsPerSource: 100000 }',
    'sources:',
    '  - name: bench',
    '    namespace: bench',
    '    labels: { role: client }',
    '    cidrs: [127.0.0.0/8]',
    `policies: ["${policies}"]`,
    '',
  ].join('\n');
  const file = path.join(dir, 'namegate.yaml');
  await writeFile(file, config);
  const node = path.join(ROOT, 'node_modules/node/bin/node');
  if (processes > 1) {
    const all = Array.from({ length: processes }, () =>
      start(node, [path.join(ROOT, 'bench/dns/reuseport-proxy.ts'), file], dir),
    );
    await ready(port);
    return {
      name: `namegate-x${processes}`,
      port,
      child: all[0]!,
      more: all.slice(1),
      note: `${processes} namegate processes sharing the port (SO_REUSEPORT, separate stores; informational)`,
    };
  }
  // Through bin/namegate, as people run it (it also sets the agent's V8 flags).
  const child = start(path.join(ROOT, 'bin/namegate'), ['dns', '--config', file], dir);
  await ready(port);
  return {
    name: 'namegate',
    port,
    child,
    note: `namegate dns, ${PATTERNS} patterns, learning on, recording datapath, 1 thread`,
  };
}

async function startDnsmasq(dir: string, upstream: number): Promise<Server> {
  const port = await freePort();
  const child = start(
    'dnsmasq',
    [
      '-k',
      '-C',
      '/dev/null',
      '--listen-address=127.0.0.1',
      `--port=${port}`,
      '--bind-interfaces',
      '--cache-size=0',
      '--no-resolv',
      `--server=127.0.0.1#${upstream}`,
      '--no-hosts',
      '-u',
      'root',
      '--pid-file=',
      // The default of 150 queries in flight drops bursts on a busy machine; namegate's bounds
      // are raised for the benchmark too.
      '--dns-forward-max=10000',
    ],
    dir,
  );
  await ready(port);
  return { name: 'dnsmasq', port, child, note: 'dnsmasq --cache-size=0 --dns-forward-max=10000' };
}

async function startUnbound(dir: string, upstream: number): Promise<Server> {
  const port = await freePort();
  const conf = [
    'server:',
    '  interface: 127.0.0.1',
    `  port: ${port}`,
    '  do-daemonize: no',
    '  username: ""',
    '  chroot: ""',
    `  directory: "${dir}"`,
    '  pidfile: ""',
    '  use-syslog: no',
    '  logfile: ""',
    '  verbosity: 0',
    '  access-control: 127.0.0.0/8 allow',
    '  do-not-query-localhost: no',
    '  module-config: "iterator"',
    '  qname-minimisation: no',
    '  cache-max-ttl: 0',
    '  cache-max-negative-ttl: 0',
    '  msg-cache-size: 64k',
    '  rrset-cache-size: 64k',
    '  num-threads: 1',
    // .test is a special-use name unbound answers NXDOMAIN for unless told otherwise.
    '  local-zone: "test." nodefault',
    'forward-zone:',
    '  name: "."',
    `  forward-addr: 127.0.0.1@${upstream}`,
    '',
  ].join('\n');
  await writeFile(path.join(dir, 'unbound.conf'), conf);
  const child = start('unbound', ['-d', '-c', path.join(dir, 'unbound.conf')], dir);
  await ready(port);
  return { name: 'unbound', port, child, note: 'unbound forwarder, cache-max-ttl 0, 1 thread' };
}

async function startCoredns(dir: string, upstream: number): Promise<Server | string> {
  let bin: string;
  try {
    const { stdout } = await run(path.join(ROOT, 'scripts/build-test-bins.sh'), ['--print-path', 'coredns']);
    bin = stdout.trim();
  } catch (err) {
    return `CoreDNS not built yet (scripts/build-test-bins.sh coredns): ${String((err as { stdout?: string }).stdout ?? err).trim()}`;
  }
  const port = await freePort();
  await writeFile(
    path.join(dir, 'Corefile'),
    `.:${port} {\n  bind 127.0.0.1\n  forward . 127.0.0.1:${upstream}\n}\n`,
  );
  const child = start(bin, ['-conf', path.join(dir, 'Corefile'), '-quiet'], dir);
  await ready(port);
  return {
    name: 'coredns',
    port,
    child,
    note: `CoreDNS ${path.basename(path.dirname(bin))} forward, no cache`,
  };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'namegate-bench-dns-'));
  const cleanup = async () => {
    for (const c of [...children]) await stop(c);
    await rm(dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    const { stdout: kernel } = await run('uname', ['-r']);
    console.log(
      `machine: ${os.cpus()[0]?.model ?? '?'} x${os.cpus().length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Linux ${kernel.trim()}, Node ${process.version}`,
    );
    console.log(
      `load: ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')} (other work on the machine skews every figure alike)`,
    );
    const { stdout: perfVersion } = await run('dnsperf', ['-h']).catch(
      (e: { stdout?: string; stderr?: string }) => ({ stdout: `${e.stdout ?? ''}${e.stderr ?? ''}` }),
    );
    console.log(
      `dnsperf ${/Version ([0-9.]+)/.exec(perfVersion)?.[1] ?? '?'}: ${SECONDS} s per run, 4 clients, 1000 outstanding, 4 MiB buffers, ${NAMES} distinct names, no CPU pinning`,
    );
    const { zoneText, queries } = await buildFiles(dir);
    const policies = await buildPolicies(dir);
    const knot = await startKnot(dir, zoneText);

    const results = new Map<string, { qps: number; p50: number; p99: number; note: string }>();
    const skipped = new Map<string, string>();
    const starters: Array<[string, () => Promise<Server | string>]> = [
      ['namegate', () => startNamegate(dir, knot.port, policies)],
      ...(REUSEPORT > 1
        ? ([[`namegate-x${REUSEPORT}`, () => startNamegate(dir, knot.port, policies, REUSEPORT)]] as Array<
            [string, () => Promise<Server | string>]
          >)
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
      try {
        // Warm up (namegate: JIT and store), then measure.
        await dnsperf(s.port, queries, 5000);
        const { best, runs } = await maxQps(s.port, queries);
        for (const r of runs) {
          console.log(
            `  ${name.padEnd(8)} offered ${r.target === null ? 'max' : String(r.target).padStart(6)}  achieved ${r.qps.toFixed(0).padStart(6)} qps  loss ${(lossOf(r) * 100).toFixed(3)}%  avg ${r.avgLatencyMs.toFixed(2)} ms`,
          );
        }
        const fixed = await dnsperf(s.port, queries, FIXED_QPS, true);
        const sorted = fixed.latencies.sort((a, b) => a - b);
        const p50 = percentile(sorted, 50);
        const p99 = percentile(sorted, 99);
        console.log(
          `${name}: max ${best.toFixed(0)} qps (<0.1% loss); at ${FIXED_QPS} qps: achieved ${fixed.run.qps.toFixed(0)}, loss ${(lossOf(fixed.run) * 100).toFixed(3)}%, p50 ${p50.toFixed(3)} ms, p99 ${p99.toFixed(3)} ms  [${s.note}]`,
        );
        results.set(name, { qps: best, p50, p99, note: s.note });
      } finally {
        await stop(s.child);
        for (const c of s.more ?? []) await stop(c);
      }
    }
    const ours = results.get('namegate');
    const q = (n: string) => results.get(n)?.qps ?? Number.NaN;
    const ratio = (n: string) => (ours ? ours.qps / q(n) : Number.NaN);
    console.log('');
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
