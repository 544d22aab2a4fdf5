/**
 * Proxy benchmark (not a test), two parts in one run.
 *
 * Part 1, the SNI verify path. On loopback, against the same backend and the same load:
 *   direct    the backend itself (the floor for time to first byte)
 *   namegate  the SNI proxy (bench/proxy/peer.ts sni): ClientHello reassembly, policy decision,
 *             learned-address check, flow-log lines formatted, upstream connect, relay
 *   haproxy   Debian haproxy in TCP mode, `tcp-request inspect-delay` + `req.ssl_hello_type 1` +
 *             `use_backend if { req.ssl_sni -i api.example.com }`, nbthread 1 (one core, like Node)
 * Connections per second and time to first byte: C concurrent clients each open a connection,
 * send a real ClientHello (curl's, captured in test/testdata/proxy), wait for the first byte of
 * the backend's answer, close, repeat, for a fixed time. Bulk: one connection downloads
 * NAMEGATE_BENCH_BULK_MIB through each. Rounds alternate the targets; figures are the medians.
 * Time to first byte p99 is also taken at a fixed rate of RATE (default 1,000) new connections
 * per second (open loop: connections start on schedule whatever the earlier ones do); that is
 * the ttfb_p99_ms of the RESULT line, conn_per_s is the closed-loop maximum.
 *
 * Part 2, TLS inspection against Squid ssl-bump: bench/proxy/inspect.ts.
 *
 * Last lines:
 *   RESULT proxy conn_per_s=<ours> haproxy_conn_per_s=<x> ratio=<r> ttfb_p99_ms=<ms>
 *   RESULT inspect rps=<n> squid_rps=<n> ratio=<ours/squid> handshakes_ratio=<ours/squid> cold_p99_ms=<ms>
 * Env: NAMEGATE_BENCH_SECONDS (per round, default 3), NAMEGATE_BENCH_ROUNDS (default 3),
 * NAMEGATE_BENCH_CONCURRENCY (default 32), NAMEGATE_BENCH_BULK_MIB (default 512),
 * NAMEGATE_BENCH_RATE (default 1000), NAMEGATE_BENCH_COLD (cold names per round, default 100).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import {
  coldRound,
  handshakeRound,
  type InspectTarget,
  keepAliveRound,
  makeCa,
  nginxUpstream,
  readCa,
  squidConfig,
} from './inspect.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const NODE = path.join(ROOT, 'node_modules/node/bin/node');
const SECONDS = Number(process.env['NAMEGATE_BENCH_SECONDS'] ?? 3);
const ROUNDS = Number(process.env['NAMEGATE_BENCH_ROUNDS'] ?? 3);
const CONCURRENCY = Number(process.env['NAMEGATE_BENCH_CONCURRENCY'] ?? 32);
const BULK_MIB = Number(process.env['NAMEGATE_BENCH_BULK_MIB'] ?? 512);
const HELLO = readFileSync(path.join(ROOT, 'test/testdata/proxy/curl-default.bin'));
const RATE = Number(process.env['NAMEGATE_BENCH_RATE'] ?? 1000);
const COLD = Number(process.env['NAMEGATE_BENCH_COLD'] ?? 100);
/** Development: run one part only ('sni' or 'inspect'); the RESULT lines need both. */
const ONLY = process.env['NAMEGATE_BENCH_ONLY'] ?? '';
const MAX_CONNECTIONS_PER_ROUND = 500_000;

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

async function freePort(host = '127.0.0.1'): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, host, r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function startChild(
  cmd: string,
  args: string[],
  ready: (line: string) => boolean,
): Promise<ChildProcess> {
  const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  await new Promise<void>((resolve, reject) => {
    const rl = readline.createInterface({ input: child.stdout! });
    rl.on('line', (l) => {
      if (ready(l)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`${cmd} exited ${code}: ${err}`)));
  });
  return child;
}

async function waitListening(port: number, host = '127.0.0.1'): Promise<void> {
  for (let i = 0; i < 300; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, host);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${port}`);
}

interface ConnRound {
  readonly connPerS: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
}

/** Time-to-first-byte samples and failures of one round. */
class Samples {
  readonly ttfb: number[] = [];
  errors = 0;

  /** One connection: connect, send the hello, wait for the first byte, close. */
  connection(port: number, host: string): Promise<void> {
    return new Promise<void>((resolve) => {
      const t0 = performance.now();
      const s = net.connect({ port, host, noDelay: true });
      let done = false;
      const finish = (ok: boolean) => {
        if (done) return;
        done = true;
        if (ok) this.ttfb.push(performance.now() - t0);
        else this.errors++;
        s.destroy();
        resolve();
      };
      s.once('connect', () => s.write(HELLO));
      s.once('data', () => finish(true));
      s.once('error', () => finish(false));
      s.once('close', () => finish(false));
      s.setTimeout(5000, () => finish(false));
    });
  }

  round(seconds: number): ConnRound {
    const t = [...this.ttfb].sort((a, b) => a - b);
    const q = (p: number) => t[Math.min(t.length - 1, Math.floor(p * t.length))] ?? Number.NaN;
    return { connPerS: t.length / seconds, p50: q(0.5), p99: q(0.99), errors: this.errors };
  }
}

/** C loops of connect -> hello -> first byte -> close, for `seconds`. */
async function connectionRound(port: number, host: string, seconds: number): Promise<ConnRound> {
  const samples = new Samples();
  const end = performance.now() + seconds * 1000;
  const one = () => samples.connection(port, host);
  const loop = async () => {
    while (performance.now() < end && samples.ttfb.length + samples.errors < MAX_CONNECTIONS_PER_ROUND)
      await one();
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, loop));
  return samples.round((performance.now() - started) / 1000);
}

/** New connections started at `rate` per second for `seconds` (open loop); time to first byte. */
async function pacedRound(port: number, host: string, rate: number, seconds: number): Promise<ConnRound> {
  const samples = new Samples();
  const total = Math.round(rate * seconds);
  const pending: Promise<void>[] = [];
  const one = () => samples.connection(port, host);
  const start = performance.now();
  let started = 0;
  while (started < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate) + 1);
    while (started < due) {
      pending.push(one());
      started++;
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(pending);
  return samples.round((performance.now() - start) / 1000);
}

/** One connection downloading BULK_MIB MiB; MiB/s. */
async function bulk(port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host });
    let got = 0;
    let t0 = 0;
    s.once('connect', () => {
      t0 = performance.now();
      // A ClientHello first (the proxy decides on it), then the bulk request in the same flight.
      const bulkReq = Buffer.from(`BULK ${BULK_MIB}\r\n`);
      s.write(host === '127.0.0.2' ? bulkReq : Buffer.concat([HELLO, bulkReq]));
    });
    s.on('data', (d: Buffer) => {
      got += d.length;
    });
    s.on('end', () => {
      const secs = (performance.now() - t0) / 1000;
      s.destroy();
      if (got < BULK_MIB * 1024 * 1024) reject(new Error(`bulk through ${port}: ${got} bytes`));
      else resolve(got / 1024 / 1024 / secs);
    });
    s.on('error', reject);
  });
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
};
const fmt = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : 'NaN');

/** Part 2: inspection vs Squid ssl-bump; returns the RESULT inspect line. */
async function inspectPart(dir: string): Promise<string> {
  const upstreamCa = makeCa(dir, 'public-ca');
  const oursDir = path.join(dir, 'ours');
  await mkdir(oursDir);
  const oursCa = makeCa(oursDir, 'ca');
  const squidDir = path.join(dir, 'squid');
  await mkdir(squidDir);
  const squidCa = makeCa(squidDir, 'squid-ca');
  const upstreamPort = await freePort('127.0.0.3');
  const ng = nginxUpstream(dir, upstreamCa, upstreamPort);
  const nginx = spawn(ng.cmd, ng.args, { stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(nginx);
  await waitListening(upstreamPort, '127.0.0.3').catch(async (err: unknown) => {
    const log = await readFile(path.join(dir, 'nginx-error.log'), 'utf8').catch(() => '(no error log)');
    throw new Error(`nginx did not start: ${(err as Error).message}\n${log.slice(-2000)}`);
  });
  const oursPort = await freePort();
  await startChild(
    NODE,
    ['bench/proxy/peer.ts', 'inspect', String(oursPort), String(upstreamPort), oursDir, upstreamCa.cert],
    (l) => l === 'ready',
  );
  const squidPort = await freePort();
  const sq = squidConfig(squidDir, squidCa, upstreamCa.cert, squidPort, upstreamPort);
  const squid = spawn(sq.cmd, sq.args, { stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(squid);
  await waitListening(squidPort).catch(async (err: unknown) => {
    const log = await readFile(path.join(squidDir, 'cache.log'), 'utf8').catch(() => '(no cache.log)');
    throw new Error(`squid did not start: ${(err as Error).message}\n${log.slice(-2000)}`);
  });
  const squidVersion = execFileSync('squid', ['-v']).toString().split('\n')[0] ?? 'squid';
  const targets: InspectTarget[] = [
    { name: 'ours', port: oursPort, ca: readCa(oursCa.cert), connect: false },
    { name: 'squid', port: squidPort, ca: readCa(squidCa.cert), connect: true },
  ];
  // Warm-up: JIT, squid's helpers, both certificate caches for api.bench.test.
  for (const t of targets) await keepAliveRound(t, upstreamPort, 0.5, 4);
  const rps = { ours: [] as number[], squid: [] as number[] };
  const hs = { ours: [] as number[], squid: [] as number[] };
  const cold = { ours: [] as number[], squid: [] as number[] };
  const errors = { ours: 0, squid: 0 };
  let nextCold = 0;
  for (let r = 0; r < ROUNDS; r++) {
    for (const t of targets) {
      const k = await keepAliveRound(t, upstreamPort, SECONDS, CONCURRENCY);
      rps[t.name].push(k.rps);
      errors[t.name] += k.errors;
    }
    for (const t of targets) {
      const h = await handshakeRound(t, upstreamPort, SECONDS, Math.min(CONCURRENCY, 16));
      hs[t.name].push(h.perS);
      errors[t.name] += h.errors;
    }
    for (const t of targets) {
      const c = await coldRound(t, upstreamPort, nextCold, COLD);
      cold[t.name].push(...c.ms);
      errors[t.name] += c.errors;
    }
    nextCold += COLD;
  }
  const q = (xs: number[], p: number) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? Number.NaN;
  };
  const figures = (n: 'ours' | 'squid') => ({
    rps: median(rps[n]),
    hs: median(hs[n]),
    coldP50: q(cold[n], 0.5),
    coldP99: q(cold[n], 0.99),
  });
  const o = figures('ours');
  const s = figures('squid');
  console.log('');
  console.log(
    `inspection: ${squidVersion} (ssl-bump, 1 worker), nginx upstream (TLS, 1 KiB answer, 1 worker)`,
  );
  console.log(
    `load: ${CONCURRENCY} keep-alive connections; ${Math.min(CONCURRENCY, 16)} handshake loops; ${COLD} cold names per round; ${ROUNDS} rounds of ${SECONDS} s (medians)`,
  );
  console.log('target  keep-alive req/s  new TLS conn/s  cold first request p50 / p99 ms  errors');
  for (const [n, f] of [
    ['ours', o],
    ['squid', s],
  ] as const) {
    console.log(
      `${n.padEnd(7)} ${fmt(f.rps, 0).padStart(17)}  ${fmt(f.hs, 0).padStart(14)}  ${fmt(f.coldP50, 2).padStart(14)} / ${fmt(f.coldP99, 2).padStart(8)}  ${errors[n]}`,
    );
  }
  return `RESULT inspect rps=${fmt(o.rps, 0)} squid_rps=${fmt(s.rps, 0)} ratio=${fmt(o.rps / s.rps, 2)} handshakes_ratio=${fmt(o.hs / s.hs, 2)} cold_p99_ms=${fmt(o.coldP99, 2)}`;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ng-bench-proxy-'));
  try {
    if (ONLY === 'inspect') {
      console.log(await inspectPart(dir));
      return;
    }
    const backendPort = await freePort('127.0.0.2');
    await startChild(NODE, ['bench/proxy/peer.ts', 'backend', String(backendPort)], (l) => l === 'ready');
    const oursPort = await freePort();
    await startChild(
      NODE,
      ['bench/proxy/peer.ts', 'sni', String(oursPort), String(backendPort)],
      (l) => l === 'ready',
    );
    const haPort = await freePort();
    const cfg = path.join(dir, 'haproxy.cfg');
    // The bulk request rides behind the hello in the same flight; haproxy forwards it as payload.
    await writeFile(
      cfg,
      `global
  maxconn 9000
  nbthread 1
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:${haPort}
  tcp-request inspect-delay 5s
  tcp-request content accept if { req.ssl_hello_type 1 }
  use_backend be if { req.ssl_sni -i api.example.com }
  default_backend refuse
backend be
  server s1 127.0.0.2:${backendPort}
backend refuse
  tcp-request content reject
`,
    );
    const haproxy = spawn('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.add(haproxy);
    await waitListening(haPort);
    const haVersion = execFileSync('haproxy', ['-v']).toString().split('\n')[0] ?? 'haproxy';

    const targets = [
      { name: 'direct', port: backendPort, host: '127.0.0.2' },
      { name: 'namegate', port: oursPort, host: '127.0.0.1' },
      { name: 'haproxy', port: haPort, host: '127.0.0.1' },
    ];
    // Warm-up (JIT, connection tracking tables), not counted.
    for (const t of targets) await connectionRound(t.port, t.host, 0.5);
    const rounds = new Map<string, ConnRound[]>(targets.map((t) => [t.name, []]));
    for (let r = 0; r < ROUNDS; r++) {
      for (const t of targets) rounds.get(t.name)!.push(await connectionRound(t.port, t.host, SECONDS));
    }
    const paced = new Map<string, ConnRound[]>(targets.map((t) => [t.name, []]));
    for (let r = 0; r < ROUNDS; r++) {
      for (const t of targets) paced.get(t.name)!.push(await pacedRound(t.port, t.host, RATE, SECONDS));
    }
    const pacedSummary = (name: string) => {
      const rs = paced.get(name)!;
      return {
        p50: median(rs.map((x) => x.p50)),
        p99: median(rs.map((x) => x.p99)),
        errors: rs.reduce((a, x) => a + x.errors, 0),
      };
    };
    const summary = (name: string) => {
      const rs = rounds.get(name)!;
      return {
        cps: median(rs.map((x) => x.connPerS)),
        p50: median(rs.map((x) => x.p50)),
        p99: median(rs.map((x) => x.p99)),
        errors: rs.reduce((a, x) => a + x.errors, 0),
      };
    };
    const direct = summary('direct');
    const ours = summary('namegate');
    const ha = summary('haproxy');

    const bulkRuns = { direct: [] as number[], namegate: [] as number[], haproxy: [] as number[] };
    for (let r = 0; r < 2; r++) {
      bulkRuns.direct.push(await bulk(backendPort, '127.0.0.2'));
      bulkRuns.namegate.push(await bulk(oursPort, '127.0.0.1'));
      bulkRuns.haproxy.push(await bulk(haPort, '127.0.0.1'));
    }

    const cpu = os.cpus();
    console.log(
      `machine: ${cpu.length} x ${cpu[0]?.model ?? '?'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Linux ${os.release()}, Node ${process.version}, ${haVersion}; load ${os
        .loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}`,
    );
    console.log(
      `load: ${CONCURRENCY} concurrent clients, ${ROUNDS} rounds of ${SECONDS} s per target (medians), ClientHello ${HELLO.length} bytes`,
    );
    console.log('target     conn/s     ttfb p50 ms  ttfb p99 ms  errors');
    for (const [name, s] of [
      ['direct', direct],
      ['namegate', ours],
      ['haproxy', ha],
    ] as const) {
      console.log(
        `${name.padEnd(10)} ${fmt(s.cps, 0).padStart(7)}    ${fmt(s.p50, 3).padStart(9)}    ${fmt(s.p99, 3).padStart(9)}  ${s.errors}`,
      );
    }
    const ratio = ours.cps / ha.cps;
    console.log(`ratio namegate/haproxy conn/s: ${fmt(ratio, 2)}`);
    console.log(`at ${RATE} new connections/s (open loop): target ttfb p50 / p99 ms, errors`);
    for (const name of ['direct', 'namegate', 'haproxy']) {
      const p = pacedSummary(name);
      console.log(
        `  ${name.padEnd(10)} ${fmt(p.p50, 3).padStart(8)} / ${fmt(p.p99, 3).padStart(8)}  ${p.errors}`,
      );
    }
    const oursPaced = pacedSummary('namegate');
    console.log(
      `added ttfb vs direct: namegate p50 +${fmt(ours.p50 - direct.p50, 3)} ms, p99 +${fmt(ours.p99 - direct.p99, 3)} ms; haproxy p50 +${fmt(ha.p50 - direct.p50, 3)} ms, p99 +${fmt(ha.p99 - direct.p99, 3)} ms`,
    );
    const b = {
      direct: median(bulkRuns.direct),
      namegate: median(bulkRuns.namegate),
      haproxy: median(bulkRuns.haproxy),
    };
    console.log(
      `bulk ${BULK_MIB} MiB, one connection: direct ${fmt(b.direct, 0)} MiB/s, namegate ${fmt(b.namegate, 0)} MiB/s (${fmt(b.namegate / b.direct, 2)} of direct), haproxy ${fmt(b.haproxy, 0)} MiB/s`,
    );
    const resultProxy = `RESULT proxy conn_per_s=${fmt(ours.cps, 0)} haproxy_conn_per_s=${fmt(ha.cps, 0)} ratio=${fmt(ratio, 2)} ttfb_p99_ms=${fmt(oursPaced.p99, 3)}`;
    const resultInspect =
      ONLY === 'sni' ? '(inspection not run: NAMEGATE_BENCH_ONLY=sni)' : await inspectPart(dir);
    console.log(
      `load average after the run: ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
    console.log(resultProxy);
    console.log(resultInspect);
  } finally {
    for (const c of children) c.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
process.exit(0);
