/**
 * Observability benchmark (not a test). In one run:
 *
 * 1. DNS proxy throughput with two `namegate observe --follow -o json` clients (real CLI
 *    processes, output to /dev/null) and one dashboard stream (/dashboard/events, read and
 *    discarded, as the page's EventSource does) attached, vs none attached. The same
 *    `namegate dns` process (10,000 patterns, learning on, flow log on, the flow API on its
 *    health listener), the same knotd upstream and the same closed-loop dnsperf load
 *    (8 clients, 1,000 outstanding); rounds alternate none / attached and each arm's figure is
 *    the median of its rounds.
 * 2. Delivery latency: at a fixed 5,000 queries/s (dnsperf -Q), a follower of /flows takes each
 *    DNS event's own time (written when the proxy decided) from its arrival time: p50 and p99.
 * 3. `namegate recommend` over 1,000,000 recorded flow events (a flow log file of DNS answers and
 *    kernel audit events of 50 workloads): wall time of the whole command, median of 3.
 *
 * Prints the machine and the load average with the figures (the machine has 2 cores shared with
 * other work: figures taken under load say so) and last:
 *   RESULT observe qps_ratio=<with/without> delivery_p99_ms=<ms> recommend_s_per_million=<s>
 * Targets: qps_ratio >= 0.95, delivery_p99_ms < 500, recommend_s_per_million < 10.
 * Env: NAMEGATE_BENCH_SECONDS (per throughput round, default 5), NAMEGATE_BENCH_ROUNDS (default 3).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { FlowLog } from '../../src/dns/flow-log.ts';
import { emptyEvent, eventLine } from '../../src/flows/event.ts';
import { sourceLine } from '../../src/flows/sources.ts';
import {
  buildFiles,
  buildPolicies,
  dnsperf,
  percentile,
  ROOT,
  run,
  startKnot,
  startNamegate,
  stop,
  stopAll,
} from '../dns/lib.ts';

const SECONDS = Number(process.env['NAMEGATE_BENCH_SECONDS'] ?? 5);
const ROUNDS = Number(process.env['NAMEGATE_BENCH_ROUNDS'] ?? 3);
const DELIVERY_QPS = 5000;
const DELIVERY_SECONDS = 10;
const RECOMMEND_EVENTS = 1_000_000;

const median = (xs: number[]) =>
  percentile(
    [...xs].sort((a, b) => a - b),
    50,
  );
const load = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = http.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function metric(httpPort: number, name: string): Promise<number> {
  const text = await new Promise<string>((resolve, reject) => {
    http
      .get(`http://127.0.0.1:${httpPort}/metrics`, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

async function waitFollowers(httpPort: number, n: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  while ((await metric(httpPort, 'namegate_flows_followers')) < n) {
    if (Date.now() > deadline) throw new Error(`fewer than ${n} followers attached after 20 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The attached arm: two observe CLIs and one dashboard event stream. */
async function attach(httpPort: number): Promise<() => Promise<void>> {
  const agent = `http://127.0.0.1:${httpPort}`;
  const observers: ChildProcess[] = [0, 1].map(() =>
    spawn(path.join(ROOT, 'bin/namegate'), ['observe', '--agent', agent, '-f', '-o', 'json'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    }),
  );
  const dashboard = http.get(`${agent}/dashboard/events`, (res) => res.resume());
  await waitFollowers(httpPort, 3);
  return async () => {
    dashboard.destroy();
    for (const o of observers) o.kill('SIGINT');
    await Promise.all(
      observers.map((o) => new Promise((r) => (o.exitCode !== null ? r(null) : o.once('exit', r)))),
    );
  };
}

async function recordFlows(file: string): Promise<void> {
  const out = createWriteStream(file);
  const write = (s: string) =>
    out.write(s) ? Promise.resolve() : new Promise<void>((r) => out.once('drain', () => r()));
  const t0 = Date.parse('2026-12-01T00:00:00.000Z');
  const workloads = Array.from({ length: 50 }, (_, w) => ({
    src: `10.244.${w}.10`,
    ns: `team${w % 10}`,
    pod: `app${w}-5f6d7c8b9-abcde`,
    labels: { app: `app${w}`, 'pod-template-hash': '5f6d7c8b9' },
  }));
  for (const w of workloads)
    await write(
      sourceLine(new Date(t0).toISOString(), w.src, {
        identity: `pod:${w.ns}/${w.pod}`,
        namespace: w.ns,
        pod: w.pod,
        labels: w.labels,
        workload: null,
      }),
    );
  let now = t0;
  let chunk = '';
  const log = new FlowLog(
    {
      write: (l) => {
        chunk += l;
      },
    },
    'all',
    () => now,
  );
  for (let i = 0; i < RECOMMEND_EVENTS; i++) {
    now = t0 + i * 10;
    const w = workloads[i % workloads.length]!;
    const name = `svc${i % 40}.api${i % 7}.example${i % 5}.com`;
    if (i % 4 === 3) {
      chunk += eventLine({
        ...emptyEvent(new Date(now).toISOString(), 'kernel', w.src),
        verdict: 'audit',
        reason: 'never_resolved',
        identity: `pod:${w.ns}/${w.pod}`,
        dst: '203.0.113.7',
        dport: 443,
        proto: 'tcp',
        name,
      });
    } else {
      log.record({
        src: w.src,
        identity: `pod:${w.ns}/${w.pod}`,
        qname: name,
        qtype: 1,
        verdict: 'audit',
        reason: 'no_matching_rule',
        policy: null,
        rule: null,
        ips: ['203.0.113.7'],
        ttl: 60,
        rcode: 0,
        ms: 0.3,
        transport: 'udp',
      });
    }
    if (chunk.length > 1 << 20) {
      await write(chunk);
      chunk = '';
    }
  }
  await write(chunk);
  await new Promise<void>((r) => out.end(() => r()));
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ng-bench-observe-'));
  const [kernel] = [(await run('uname', ['-r'])).stdout.trim()];
  console.log(
    `machine: ${os.cpus()[0]?.model ?? '?'} x${os.cpus().length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Linux ${kernel}, Node ${process.version}`,
  );
  console.log(`load average at start: ${load()}`);
  try {
    const { zoneText, queries } = await buildFiles(dir);
    const policies = await buildPolicies(dir);
    const knot = await startKnot(dir, zoneText);
    const httpPort = await freePort();
    // The DNS benchmark's namegate (flow log on, to /dev/null), with its HTTP listener: /flows.
    const ng = await startNamegate(dir, knot.port, policies, {
      args: ['--metrics', `127.0.0.1:${httpPort}`],
    });
    const dnsPort = ng.port;
    const server = ng.child;

    // 1. Throughput, alternating arms.
    const none: number[] = [];
    const attached: number[] = [];
    await dnsperf(dnsPort, queries, { qps: null, seconds: 2 }); // warm-up
    for (let r = 0; r < ROUNDS; r++) {
      const a = await dnsperf(dnsPort, queries, { qps: null, seconds: SECONDS });
      none.push(a.run.qps);
      const detach = await attach(httpPort);
      const b = await dnsperf(dnsPort, queries, { qps: null, seconds: SECONDS });
      attached.push(b.run.qps);
      await detach();
      console.log(
        `round ${r + 1}: none ${a.run.qps.toFixed(0)} qps, attached ${b.run.qps.toFixed(0)} qps (load ${load()})`,
      );
    }
    const ratio = median(attached) / median(none);
    console.log(
      `DNS qps, median of ${ROUNDS}: none ${median(none).toFixed(0)}, 2 observe + 1 dashboard ${median(attached).toFixed(0)}, ratio ${ratio.toFixed(3)}`,
    );

    // 2. Delivery latency at 5,000 events/s.
    const delays: number[] = [];
    const follower = http.get(`http://127.0.0.1:${httpPort}/flows?follow=1&last=0&type=dns`, (res) => {
      let rest = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        const arrived = Date.now();
        const lines = (rest + c).split('\n');
        rest = lines.pop() ?? '';
        for (const l of lines) {
          const at = l.indexOf('"time":"');
          if (at < 0 || !l.includes('"event":"dns"')) continue;
          const t = Date.parse(l.slice(at + 8, at + 32));
          if (Number.isFinite(t)) delays.push(arrived - t);
        }
      });
    });
    await waitFollowers(httpPort, 1);
    await dnsperf(dnsPort, queries, { qps: DELIVERY_QPS, seconds: DELIVERY_SECONDS });
    await new Promise((r) => setTimeout(r, 500));
    follower.destroy();
    delays.sort((a, b) => a - b);
    const p50 = percentile(delays, 50);
    const p99 = percentile(delays, 99);
    console.log(
      `delivery at ${DELIVERY_QPS}/s: ${delays.length} events, p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms (load ${load()})`,
    );
    await stop(server);
    await stop(knot.child);

    // 3. recommend over a million recorded events.
    const flows = path.join(dir, 'flows.log');
    await recordFlows(flows);
    const times: number[] = [];
    for (let r = 0; r < 3; r++) {
      const t0 = performance.now();
      await run(path.join(ROOT, 'bin/namegate'), ['recommend', '--file', flows, '--siblings', '3'], {
        maxBuffer: 64 * 1024 * 1024,
      });
      times.push((performance.now() - t0) / 1000);
    }
    const perMillion = median(times) / (RECOMMEND_EVENTS / 1_000_000);
    console.log(
      `recommend over ${RECOMMEND_EVENTS} events: ${times.map((t) => t.toFixed(2)).join(', ')} s (median ${perMillion.toFixed(2)} s per million; load ${load()})`,
    );
    console.log(
      `peers: none run here (Hubble and Calico's recommender need their own datapaths); the figures are namegate against itself, attached vs not`,
    );
    console.log(`load average at end: ${load()}`);
    console.log(
      `RESULT observe qps_ratio=${ratio.toFixed(3)} delivery_p99_ms=${p99.toFixed(1)} recommend_s_per_million=${perMillion.toFixed(2)}`,
    );
  } finally {
    await stopAll();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
