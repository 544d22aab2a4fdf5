/**
 * Shared parts of the DNS benchmarks (bench/dns/main.ts, bench/dns/steady.ts): the zone and
 * query files, the policies, starting and stopping the servers, dnsperf runs, the max-rate
 * search, and CPU accounting per process (/proc) so a run can say which process, or the
 * machine, was the limit.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import dnsPacket from 'dns-packet';
import { freePort, zone } from '../../test/integration/dns/knot.ts';

export const run = promisify(execFile);
export const ROOT = path.resolve(import.meta.dirname, '../..');
export const NODE = path.join(ROOT, 'node_modules/node/bin/node');
export const NAMES = 10_000;
export const PATTERNS = 10_000;
export const MAX_LOSS = 0.001;

/**
 * Where the servers listen and where the upstream (knotd) listens. Loopback by default
 * (bench/dns/steady.ts); bench/dns/main.ts runs in its own network namespace and moves them
 * (useAddresses) so that its clients can come from many source addresses.
 */
export const addresses = { server: '127.0.0.1', upstream: '127.0.0.1' };
export function useAddresses(server: string, upstream: string): void {
  addresses.server = server;
  addresses.upstream = upstream;
}

export interface Server {
  readonly name: string;
  readonly port: number;
  readonly child: ChildProcess;
  /** Further processes of the same server (the reuse-port experiment). */
  readonly more?: ChildProcess[];
  readonly note: string;
}

export interface PerfRun {
  readonly target: number | null;
  readonly seconds: number;
  readonly sent: number;
  readonly completed: number;
  readonly lost: number;
  readonly qps: number;
  readonly avgLatencyMs: number;
  /** dnsperf's own CPU over the run (user + system seconds), when /usr/bin/time is there. */
  readonly perfCpu: number | null;
}

const children = new Set<ChildProcess>();

/** Start a process; its stderr is kept (first 4 KB) for the message if it fails, and passed on. */
export function start(
  cmd: string,
  args: string[],
  cwd: string,
  onStderr?: (text: string) => void,
): ChildProcess {
  const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr?.on('data', (d: Buffer) => {
    const text = d.toString();
    if (err.length < 4000) err += text;
    onStderr?.(text);
  });
  child.once('exit', (code, signal) => {
    if (children.has(child) && code !== 0 && signal === null) console.error(`${cmd} exited ${code}: ${err}`);
    children.delete(child);
  });
  children.add(child);
  return child;
}

export async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  children.delete(child);
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

export async function stopAll(): Promise<void> {
  for (const c of [...children]) await stop(c);
}

/** Wait until `port` answers an A query for a name the zone has (bounded). */
export async function ready(
  port: number,
  name = 'h0.bench.test',
  timeoutMs = 20_000,
  host = addresses.server,
): Promise<void> {
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
        host,
      );
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing answers on ${host}:${port}`);
}

// ---------------------------------------------------------------------------------------------
// CPU accounting

/** user + system seconds of a process (all its threads) so far; null when it is gone. */
export function processCpu(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command (which may hold spaces) start after the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return null;
  }
}

/** Busy and total CPU seconds of the whole machine so far (/proc/stat, every core). */
export function machineCpu(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: (total - idle) / 100, total: total / 100 };
}

/** CPU used by some processes and the machine between start() and end(), in cores. */
export class CpuWindow {
  readonly #pids: ReadonlyMap<string, number | undefined>;
  #before = new Map<string, number | null>();
  #machine = machineCpu();
  #at = performance.now();

  constructor(pids: ReadonlyMap<string, number | undefined>) {
    this.#pids = pids;
  }

  start(): void {
    this.#before = new Map([...this.#pids].map(([k, pid]) => [k, processCpu(pid)]));
    this.#machine = machineCpu();
    this.#at = performance.now();
  }

  /** Cores used per process, and by the machine as a whole (of os.cpus().length). */
  end(): { seconds: number; cores: Map<string, number>; machine: number } {
    const seconds = (performance.now() - this.#at) / 1000;
    const cores = new Map<string, number>();
    for (const [k, pid] of this.#pids) {
      const a = this.#before.get(k);
      const b = processCpu(pid);
      if (a !== null && a !== undefined && b !== null) cores.set(k, (b - a) / seconds);
    }
    const m = machineCpu();
    return { seconds, cores, machine: (m.busy - this.#machine.busy) / seconds };
  }
}

// ---------------------------------------------------------------------------------------------
// dnsperf

const HAVE_TIME = existsSync('/usr/bin/time');
/** dnsperf sockets (-c): spread over knotd's per-worker sockets, which are chosen by port. */
export const PERF_CLIENTS = 8;

export interface PerfOptions {
  readonly seconds: number;
  /** Queries per second to offer; null: as fast as the outstanding limit lets it. */
  readonly qps: number | null;
  /** Collect every query's latency (dnsperf -v). */
  readonly latencies?: boolean;
  readonly clients?: number;
  readonly outstanding?: number;
  /** dnsperf -T: pairs of send/receive threads (default 1). */
  readonly threads?: number;
  /** Where to send (default: addresses.server). */
  readonly host?: string;
}

export async function dnsperf(
  port: number,
  queries: string,
  o: PerfOptions,
): Promise<{ run: PerfRun; latencies: number[] }> {
  // -b: dnsperf's socket buffers (KiB, capped by net.core.rmem_max); its default drops replies
  // whenever it is descheduled, which shows up as the server's loss.
  const args = [
    '-s',
    o.host ?? addresses.server,
    '-p',
    String(port),
    '-d',
    queries,
    '-l',
    String(o.seconds),
    '-t',
    '1',
    '-c',
    String(o.clients ?? PERF_CLIENTS),
    '-q',
    String(o.outstanding ?? 1000),
    '-b',
    '4096',
  ];
  if (o.qps !== null) args.push('-Q', String(o.qps));
  if (o.threads !== undefined) args.push('-T', String(o.threads));
  if (o.latencies) args.push('-v');
  const timeFile = path.join(path.dirname(queries), `time-${process.pid}-${port}.txt`);
  const [cmd, argv] = HAVE_TIME
    ? ['/usr/bin/time', ['-f', '%U %S', '-o', timeFile, 'dnsperf', ...args]]
    : ['dnsperf', args];
  const { stdout } = await run(cmd as string, argv as string[], {
    maxBuffer: 256 * 1024 * 1024,
    timeout: (o.seconds + 15) * 1000,
  });
  let perfCpu: number | null = null;
  if (HAVE_TIME) {
    const t = (await readFile(timeFile, 'utf8').catch(() => '')).trim().split('\n').pop() ?? '';
    const [u, s] = t.split(' ').map(Number);
    if (Number.isFinite(u) && Number.isFinite(s)) perfCpu = (u as number) + (s as number);
    await rm(timeFile, { force: true });
  }
  const num = (re: RegExp) => Number(re.exec(stdout)?.[1] ?? Number.NaN);
  const latencies: number[] = [];
  if (o.latencies) {
    for (const m of stdout.matchAll(/^> \S+ \S+ \S+ ([0-9.]+)$/gm)) latencies.push(Number(m[1]) * 1000);
  }
  return {
    run: {
      target: o.qps,
      seconds: o.seconds,
      sent: num(/Queries sent:\s+(\d+)/),
      completed: num(/Queries completed:\s+(\d+)/),
      lost: num(/Queries lost:\s+(\d+)/),
      qps: num(/Queries per second:\s+([0-9.]+)/),
      avgLatencyMs: num(/Average Latency \(s\):\s+([0-9.]+)/) * 1000,
      perfCpu,
    },
    latencies,
  };
}

export const lossOf = (r: PerfRun) => (r.sent > 0 ? r.lost / r.sent : 1);

/** A step passes when it loses under 0.1% and achieves at least 97% of the offered rate. */
export const passes = (r: PerfRun) => lossOf(r) < MAX_LOSS && r.target !== null && r.qps >= 0.97 * r.target;

/**
 * The highest offered rate a server sustains: the rate climbs from `from` (2,000) qps by x1.3 until a
 * step fails (0.1% loss or more, or under 97% of the offered rate achieved), then bisects
 * between the last passing and the first failing rate until they are within 3% (about 4 more
 * steps); when the first rate already fails, it steps down by /1.3 first. A failing step is
 * run once more before it counts as failed: on a shared VM a single scheduling stall can overflow a socket buffer somewhere in the chain, and one such stall says
 * nothing about the rate. The figure is the best achieved rate of a passing step. `each` sees
 * every step.
 */
export async function maxQps(
  port: number,
  queries: string,
  seconds: number,
  each: (r: PerfRun) => void = () => {},
  step: (target: number) => Promise<PerfRun> = async (target) =>
    (await dnsperf(port, queries, { seconds, qps: target })).run,
  from = 2000,
): Promise<{ best: number; runs: PerfRun[] }> {
  const runs: PerfRun[] = [];
  let best = 0;
  let good = 0;
  let bad = 0;
  const once = async (target: number): Promise<boolean> => {
    const r = await step(target);
    runs.push(r);
    each(r);
    if (passes(r)) best = Math.max(best, r.qps);
    return passes(r);
  };
  const tryRate = async (target: number): Promise<boolean> => (await once(target)) || (await once(target));
  for (let target = from; target <= 400_000; target = Math.round((target * 1.3) / 100) * 100) {
    if (await tryRate(target)) good = target;
    else {
      bad = target;
      break;
    }
  }
  // The starting rate already failed (a busy machine): step down until one passes.
  for (let target = Math.round(from / 1.3 / 100) * 100; good === 0 && target >= 500; ) {
    if (await tryRate(target)) good = target;
    else {
      bad = target;
      target = Math.round(target / 1.3 / 100) * 100;
    }
  }
  while (good > 0 && bad > 0 && bad - good > 0.03 * good) {
    const target = Math.round((good + bad) / 2 / 100) * 100;
    if (await tryRate(target)) good = target;
    else bad = target;
  }
  return { best, runs };
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

// ---------------------------------------------------------------------------------------------
// Data

export async function buildFiles(dir: string): Promise<{ zoneText: string; queries: string }> {
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
export async function buildPolicies(dir: string): Promise<string> {
  const folder = path.join(dir, 'policies');
  await mkdir(folder);
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

// ---------------------------------------------------------------------------------------------
// Servers

/**
 * knotd has no socket-buffer option: each UDP worker's socket gets the kernel default
 * (net.core.rmem_default, 208 KiB here), which holds a few milliseconds of queries at these
 * rates. On a shared 2-vCPU VM a worker descheduled for longer drops queries, and that loss, not
 * any server's speed, ended the max-rate search of every forwarder at the same rate. More
 * workers give more sockets (SO_REUSEPORT spreads senders over them by port) and so more buffer
 * in all; the workers themselves are idle most of the time.
 */
export const KNOT_UDP_WORKERS = Number(process.env['NAMEGATE_BENCH_KNOT_WORKERS'] ?? 8);

export async function startKnot(
  dir: string,
  zoneText: string,
  udpWorkers = KNOT_UDP_WORKERS,
): Promise<Server> {
  const port = await freePort();
  await writeFile(path.join(dir, 'bench.test.zone'), zoneText);
  const conf = [
    'server:',
    `    rundir: "${dir}"`,
    `    listen: ${addresses.upstream}@${port}`,
    `    udp-workers: ${udpWorkers}`,
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
  await ready(port, undefined, undefined, addresses.upstream);
  return { name: 'knot', port, child, note: `knotd (authoritative upstream, ${udpWorkers} UDP workers)` };
}

export interface NamegateOptions {
  /** Processes sharing the port with SO_REUSEPORT (bench/dns/reuseport-proxy.ts); default 1. */
  readonly processes?: number;
  /**
   * Run `node <nodeFlags> src/cli/main.ts dns` instead of bin/namegate (profiling: --cpu-prof,
   * --trace-gc, --import bench/dns/probe.ts). bin/namegate's own V8 flags are then not applied.
   */
  readonly nodeFlags?: readonly string[];
  /** Extra lines for the `dns:` section of the config. */
  readonly dnsConfig?: readonly string[];
  /** Extra arguments of `namegate dns` (e.g. --metrics 127.0.0.1:PORT). */
  readonly args?: readonly string[];
  /** Run the namegate of another checkout (before/after comparisons); default this one. */
  readonly root?: string;
  readonly onStderr?: (text: string) => void;
  /**
   * `nftables`: `namegate agent` with the real datapath in the current network namespace
   * (root), learning into the kernel (hold until commit); its sources are the `sources` CIDRs.
   * Default `recording`: `namegate dns`, nothing in the kernel.
   */
  readonly datapath?: 'recording' | 'nftables';
  /** Source CIDRs of the bench identity (default loopback). */
  readonly sources?: readonly string[];
}

export async function startNamegate(
  dir: string,
  upstream: number,
  policies: string,
  o: NamegateOptions = {},
): Promise<Server> {
  const processes = o.processes ?? 1;
  const port = await freePort();
  const kernel = o.datapath === 'nftables';
  const config = [
    'dns:',
    `  listen: ["${addresses.server}:${port}"]`,
    `  upstreams: ["${addresses.upstream}:${upstream}"]`,
    '  flowLog: { mode: all, path: /dev/null }',
    // dnsperf is one source standing for many clients: per-source bounds would throttle it.
    '  limits: { ratePerSource: 1000000, burstPerSource: 1000000, maxPendingPerSource: 100000, maxPending: 100000 }',
    ...(o.dnsConfig ?? []).map((l) => `  ${l}`),
    // Many sources x 10,000 names learn more elements than the defaults hold (a full set makes
    // answers fail, never allow): the kernel set and the store are sized for the run.
    `store: { maxIpsPerSource: 100000${kernel ? ', maxEntries: 4000000' : ''} }`,
    ...(kernel ? ['datapath: { driver: nftables, sizes: { allow: 2097152 } }'] : []),
    'sources:',
    '  - name: bench',
    '    namespace: bench',
    '    labels: { role: client }',
    `    cidrs: [${(o.sources ?? ['127.0.0.0/8']).join(', ')}]`,
    `policies: ["${policies}"]`,
    '',
  ].join('\n');
  const file = path.join(dir, `namegate-${port}.yaml`);
  await writeFile(file, config);
  if (processes > 1) {
    const all = Array.from({ length: processes }, () =>
      start(NODE, [...binFlags(), path.join(ROOT, 'bench/dns/reuseport-proxy.ts'), file], dir, o.onStderr),
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
  // Through bin/namegate, as people run it (it also sets the V8 flags of `dns` and `agent`).
  const args = [kernel ? 'agent' : 'dns', '--config', file, ...(o.args ?? [])];
  const child = o.nodeFlags
    ? start(NODE, [...o.nodeFlags, path.join(o.root ?? ROOT, 'src/cli/main.ts'), ...args], dir, o.onStderr)
    : start(path.join(o.root ?? ROOT, 'bin/namegate'), args, dir, o.onStderr);
  await ready(port);
  return {
    name: 'namegate',
    port,
    child,
    note: kernel
      ? `namegate agent, ${PATTERNS} patterns, learning into nftables (hold until commit), flow log, 1 thread`
      : `namegate dns, ${PATTERNS} patterns, learning on, recording datapath, flow log, 1 thread`,
  };
}

/** The V8 flags bin/namegate gives `namegate dns` (so helper processes run the same way). */
export function binFlags(): string[] {
  const text = readFileSync(path.join(ROOT, 'bin/namegate'), 'utf8');
  const m = /^\s*(?:[a-z]+ \| )*dns(?: \| [a-z]+)*\) exec "\$node" ((?:--\S+ )*)"\$root/m.exec(text);
  return m?.[1]?.trim().split(/\s+/).filter(Boolean) ?? [];
}

export async function startDnsmasq(dir: string, upstream: number): Promise<Server> {
  const port = await freePort();
  const child = start(
    'dnsmasq',
    [
      '-k',
      '-C',
      '/dev/null',
      `--listen-address=${addresses.server}`,
      `--port=${port}`,
      '--bind-interfaces',
      '--cache-size=0',
      '--no-resolv',
      `--server=${addresses.upstream}#${upstream}`,
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

export async function startUnbound(dir: string, upstream: number): Promise<Server> {
  const port = await freePort();
  const conf = [
    'server:',
    `  interface: ${addresses.server}`,
    `  port: ${port}`,
    '  do-daemonize: no',
    '  username: ""',
    '  chroot: ""',
    `  directory: "${dir}"`,
    '  pidfile: ""',
    '  use-syslog: no',
    '  logfile: ""',
    '  verbosity: 0',
    '  access-control: 0.0.0.0/0 allow',
    '  do-not-query-localhost: no',
    '  module-config: "iterator"',
    '  qname-minimisation: no',
    '  cache-max-ttl: 0',
    '  cache-max-negative-ttl: 0',
    '  msg-cache-size: 64k',
    '  rrset-cache-size: 64k',
    '  num-threads: 1',
    // Socket buffers: the caller gives every server the same (bench/dns/main.ts: equalBuffers).
    // .test is a special-use name unbound answers NXDOMAIN for unless told otherwise.
    '  local-zone: "test." nodefault',
    'forward-zone:',
    '  name: "."',
    `  forward-addr: ${addresses.upstream}@${upstream}`,
    '',
  ].join('\n');
  const file = path.join(dir, `unbound-${port}.conf`);
  await writeFile(file, conf);
  const child = start('unbound', ['-d', '-c', file], dir);
  await ready(port);
  return {
    name: 'unbound',
    port,
    child,
    note: 'unbound forwarder, cache-max-ttl 0, 1 thread',
  };
}

export async function startCoredns(dir: string, upstream: number): Promise<Server | string> {
  let bin: string;
  try {
    const { stdout } = await run(path.join(ROOT, 'scripts/build-test-bins.sh'), ['--print-path', 'coredns']);
    bin = stdout.trim();
  } catch (err) {
    return `CoreDNS not built yet (scripts/build-test-bins.sh coredns): ${String((err as { stdout?: string }).stdout ?? err).trim()}`;
  }
  const port = await freePort();
  const file = path.join(dir, `Corefile-${port}`);
  await writeFile(
    file,
    `.:${port} {\n  bind ${addresses.server}\n  forward . ${addresses.upstream}:${upstream}\n}\n`,
  );
  const child = start(bin, ['-conf', file, '-quiet'], dir);
  await ready(port);
  return {
    name: 'coredns',
    port,
    child,
    note: `CoreDNS ${path.basename(path.dirname(bin))} forward, no cache`,
  };
}

// ---------------------------------------------------------------------------------------------
// Socket buffers

/** What every server's listening socket gets (the kernel doubles it: 8 MiB of skb memory). */
export const SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

/**
 * Give the UDP sockets of `pid` bound to `port` SOCKET_BUFFER_BYTES for receiving and sending
 * (bench/dns/sockbuf.py: pidfd_getfd + SO_RCVBUFFORCE; dnsmasq, CoreDNS and knotd have no
 * option for it). Returns the effective sizes, one per socket, as the kernel reports them.
 */
export async function equalBuffers(
  pid: number | undefined,
  port: number,
): Promise<Array<{ rcvbuf: number; sndbuf: number }>> {
  if (pid === undefined) throw new Error('equalBuffers: no pid');
  const { stdout } = await run('python3', [
    path.join(ROOT, 'bench/dns/sockbuf.py'),
    String(pid),
    String(port),
    String(SOCKET_BUFFER_BYTES),
  ]);
  const r = JSON.parse(stdout) as { sockets: Array<{ rcvbuf: number; sndbuf: number }> };
  if (r.sockets.length === 0)
    throw new Error(`equalBuffers: process ${pid} has no UDP socket on port ${port}`);
  return r.sockets;
}
