/**
 * End to end, a rolling update on one node (REL-11; root, own lab): a second agent process starts
 * in the node namespace beside the first, with the same config, while pods keep resolving and
 * connecting. Both bind the DNS, proxy and health ports with SO_REUSEPORT, so the kernel spreads
 * queries and connections over both; both program the same table. Then the first gets SIGTERM.
 *
 * Throughout, no lookup of an allowed name may fail, no connection through the kernel's sets
 * either, and denied names stay denied; a burst of lookups runs across the first agent's exit
 * (its DNS sockets hand over without dropping a query: src/dns/server.ts). Each agent keeps what
 * the other learned: a name answered only by the first (during the overlap) and one answered only
 * by the second survive both agents' syncs and the first agent's exit, and a connection held from
 * before the second agent started keeps running. A connection to a verify port may meet the SNI
 * proxy of the agent that did not give the answer: the agents share what they learned over their
 * peer feed (src/agent/peer-feed.ts), so it must pass too, in every phase.
 *
 * Which agent answers: UDP queries from one (address, port) hash to one socket of the group, and
 * each agent's /metrics tells it apart (its process start time); a denied name, which learns
 * nothing, finds a source port per agent first.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { labExec } from '../../../src/lab/exec.ts';
import { findPod, type LabPlan, siteFor, statePaths } from '../../../src/lab/plan.ts';
import { type Daemon, startDaemon } from '../../../src/lab/processes.ts';
import { run } from '../../../src/lab/run.ts';
import {
  agentPid,
  assertDropped,
  assertServed,
  closeAll,
  DROP,
  dig,
  downLab,
  ECHO_PORT,
  EchoServer,
  HeldConnection,
  hasElement,
  http,
  isRunning,
  metrics,
  paymentsPolicy,
  policyDir,
  removeDir,
  type Sample,
  skip,
  sum,
  tcpConnects,
  uniqueLabName,
  upLab,
  waitFor,
} from './helpers.ts';

const NAME = uniqueLabName('roll');
const CLI_MAIN = fileURLToPath(new URL('../../../src/cli/main.ts', import.meta.url));
const PAY = 'payments-api';
const CI = 'ci-runner';
/** Held open across the whole update (learned by the first agent alone, before the second). */
const HELD = 'deb.debian.org';
/** Learned during the overlap by the first agent alone, and by the second alone. */
const ONLY_FIRST = 'example.org';
const ONLY_SECOND = 'example.com';

const ROLL_POLICY = paymentsPolicy('e2e-rolling', [HELD, ONLY_FIRST, ONLY_SECOND]);

/** A harmless policy file: adding one makes every agent watching the folder reload and sync. */
function touchPolicy(n: number): string {
  return `apiVersion: namegate.dev/v1alpha1
kind: EgressPolicy
metadata:
  name: e2e-touch-${n}
  namespace: nowhere
spec:
  podSelector:
    matchLabels:
      app: none
  egress:
    - toFQDNs:
        - name: touch-${n}.example.net
`;
}

type Phase = 'first alone' | 'both' | 'first stopping' | 'second alone';

interface Failure {
  readonly phase: Phase;
  readonly what: string;
  readonly detail: string;
}

/**
 * Resolves and connects from the pods in a loop until stopped, recording every failure with the
 * phase it happened in. pause() holds it between rounds (while the test counts one agent's
 * queries).
 */
class Prober {
  phase: Phase = 'first alone';
  rounds = 0;
  /** Lookups the burst sent so far. */
  burstSent = 0;
  readonly checks = new Map<Phase, number>();
  readonly failures: Failure[] = [];
  #stopped = false;
  #paused: Promise<void> | null = null;
  #resume: (() => void) | null = null;
  #idle: (() => void) | null = null;
  #loop: Promise<void> | null = null;
  readonly #plan: LabPlan;

  constructor(plan: LabPlan) {
    this.#plan = plan;
  }

  start(): void {
    this.#loop = this.#run();
  }

  async #check(what: string, probe: () => Promise<string | null>): Promise<void> {
    const phase = this.phase;
    let problem: string | null;
    try {
      problem = await probe();
    } catch (err) {
      problem = String(err);
    }
    this.checks.set(phase, (this.checks.get(phase) ?? 0) + 1);
    if (problem !== null) this.failures.push({ phase, what, detail: problem });
  }

  async #run(): Promise<void> {
    const plan = this.#plan;
    const stripe = siteFor(plan, 'api.stripe.com');
    const github = siteFor(plan, 'github.com');
    assert.ok(stripe && github);
    while (!this.#stopped) {
      if (this.#paused) {
        this.#idle?.();
        await this.#paused;
        continue;
      }
      const f = this.rounds % 2 === 0 ? 4 : 6;
      const qtype = f === 4 ? 'A' : 'AAAA';
      const want = (s: typeof stripe) => (f === 4 ? s.ipv4 : s.ipv6);
      await this.#check(`${PAY} resolves api.stripe.com ${qtype}`, async () => {
        const d = await dig(plan, PAY, 'api.stripe.com', qtype);
        return d.status === 'NOERROR' && d.addresses.join() === want(stripe).join()
          ? null
          : `${d.status} ${d.addresses.join()}`;
      });
      await this.#check(`${CI} resolves github.com ${qtype}`, async () => {
        const d = await dig(plan, CI, 'github.com', qtype);
        return d.status === 'NOERROR' && d.addresses.join() === want(github).join()
          ? null
          : `${d.status} ${d.addresses.join()}`;
      });
      await this.#check(`${PAY}: evil.example.com is refused`, async () => {
        const d = await dig(plan, PAY, 'evil.example.com', qtype);
        return d.status === 'REFUSED' && d.addresses.length === 0
          ? null
          : `${d.status} ${d.addresses.join()}`;
      });
      // Resolve and connect, as an application does: through an agent's DNS proxy, then the
      // kernel's sets (github.com).
      await this.#check(`${CI} HTTPS github.com IPv${f}`, async () => {
        const r = await http(plan, CI, 'github.com', { family: f });
        return r.code === 0 && r.status === 200 ? null : `curl ${r.code} ${r.status} ${r.stderr}`;
      });
      // api.stripe.com is a verify port: the connection goes to an SNI proxy, which one the
      // kernel picks. While both agents run, it may be the one whose DNS proxy did not answer:
      // it knows the answer from the other agent's peer feed, so nothing is refused (REL-11).
      await this.#check(`${PAY} HTTPS api.stripe.com IPv${f}`, async () => {
        const r = await http(plan, PAY, 'api.stripe.com', { family: f });
        return r.code === 0 && r.status === 200 ? null : `curl ${r.code} ${r.status} ${r.stderr}`;
      });
      if (this.rounds % 6 === 5) {
        // A raw address nobody resolved stays dropped (ci-runner: no SNI proxy in the way).
        await this.#check(`${CI} raw IP dropped`, async () => {
          const r = await http(plan, CI, 'evil.example.com', { ...DROP, via: '203.0.113.66' });
          return r.code === 28 ? null : `curl ${r.code} ${r.status}`;
        });
      }
      this.rounds++;
    }
  }

  /**
   * Lookups only, from `workers` loops at once, until `done()`: many queries in flight at any
   * moment, so some are in an agent's hands when it stops.
   */
  async burst(workers: number, done: () => boolean): Promise<number> {
    const plan = this.#plan;
    const stripe = siteFor(plan, 'api.stripe.com');
    assert.ok(stripe);
    const worker = async (w: number) => {
      for (let i = 0; !done(); i++) {
        this.burstSent++;
        const f = (i + w) % 2 === 0 ? 4 : 6;
        const qtype = f === 4 ? 'A' : 'AAAA';
        if (i % 3 === 2) {
          await this.#check(`burst: ${PAY} evil.example.com refused`, async () => {
            const d = await dig(plan, PAY, 'evil.example.com', qtype);
            return d.status === 'REFUSED' ? null : `${d.status} ${d.addresses.join()}`;
          });
          continue;
        }
        await this.#check(
          `burst: ${PAY} resolves api.stripe.com ${qtype}${i % 2 ? ' (TCP)' : ''}`,
          async () => {
            const d = await dig(plan, PAY, 'api.stripe.com', qtype, { tcp: i % 2 === 1 });
            const want = f === 4 ? stripe.ipv4 : stripe.ipv6;
            return d.status === 'NOERROR' && d.addresses.join() === want.join()
              ? null
              : `${d.status} ${d.addresses.join()} ${d.raw.slice(0, 200)}`;
          },
        );
      }
    };
    await Promise.all(Array.from({ length: workers }, (_, w) => worker(w)));
    return this.burstSent;
  }

  /** Hold the loop between rounds while `fn` runs. */
  async paused<T>(fn: () => Promise<T>): Promise<T> {
    const idle = new Promise<void>((r) => {
      this.#idle = r;
    });
    this.#paused = new Promise<void>((r) => {
      this.#resume = r;
    });
    await idle;
    try {
      return await fn();
    } finally {
      const resume = this.#resume;
      this.#paused = null;
      this.#resume = null;
      resume?.();
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#loop;
  }
}

/** One agent's /metrics, keyed by its process start time (the kernel picks the listener). */
async function perAgent(plan: LabPlan, want: number, tries = 40): Promise<Map<number, Sample[]>> {
  const out = new Map<number, Sample[]>();
  for (let i = 0; i < tries && out.size < want; i++) {
    const s = await metrics(plan);
    out.set(sum(s, 'namegate_process_start_time_seconds'), s);
  }
  return out;
}

/** Denied queries each agent counted (reason: the name is not allowed). */
async function deniedBy(plan: LabPlan): Promise<Map<number, number>> {
  const agents = await perAgent(plan, 2);
  assert.equal(agents.size, 2, 'both agents answer /metrics');
  return new Map(
    [...agents].map(([k, s]) => [
      k,
      sum(s, 'namegate_dns_queries_total', { verdict: 'deny', transport: 'udp' }),
    ]),
  );
}

/** dig from payments-api's IPv4 address and a fixed source port. */
function digFrom(plan: LabPlan, port: number, name: string, qtype: 'A' | 'AAAA') {
  const pay = findPod(plan, PAY);
  return labExec(plan, PAY, ['dig', '+time=2', '+tries=1', '-b', `${pay.ipv4}#${port}`, name, qtype], {
    timeoutMs: 10_000,
  });
}

/** The process ids listening on UDP port `port` of `ip` in the node namespace. */
async function udpListeners(plan: LabPlan, ip: string, port: number): Promise<Set<number>> {
  const r = await run(['ip', 'netns', 'exec', plan.nodeNetns, 'ss', '-Hulnp'], { timeoutMs: 10_000 });
  const pids = new Set<number>();
  for (const line of r.stdout.split('\n')) {
    if (!line.includes(`${ip}:${port} `)) continue;
    for (const m of line.matchAll(/pid=(\d+)/g)) pids.add(Number(m[1]));
  }
  return pids;
}

function logLines(file: string): Array<Record<string, unknown>> {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
}

describe('end to end: rolling update, two agents on one node (REL-11)', { skip, concurrency: false }, () => {
  let plan: LabPlan;
  let dir: string | undefined;
  const open: Array<{ stop?: () => void; close?: () => void }> = [];

  before(async () => {
    dir = await policyDir({ 'e2e-rolling.yaml': ROLL_POLICY });
    plan = await upLab(NAME, { policies: [dir] });
    open.push(await EchoServer.start(plan, ECHO_PORT));
  });
  after(async () => {
    closeAll(open);
    await downLab(NAME);
    await removeDir(dir);
  });

  it('a second agent starts beside the first, the first stops; nothing an allowed name needs ever fails (REL-11)', async (t) => {
    const pay = findPod(plan, PAY);
    const held = siteFor(plan, HELD);
    const first1 = siteFor(plan, ONLY_FIRST);
    const second1 = siteFor(plan, ONLY_SECOND);
    assert.ok(held && first1 && second1);
    const logs = statePaths(plan).logs;

    // The first agent alone: learn, and hold a connection open.
    assertServed(await http(plan, PAY, 'api.stripe.com'), 'api.stripe.com', 'before the update');
    assertServed(await http(plan, CI, 'github.com'), 'github.com', 'before the update');
    assert.deepEqual((await dig(plan, PAY, HELD, 'A')).addresses, held.ipv4);
    assert.deepEqual((await dig(plan, PAY, HELD, 'AAAA')).addresses, held.ipv6);
    const conn = await HeldConnection.open(plan, PAY, held.ipv4[0] as string, ECHO_PORT);
    open.push(conn);
    assert.ok(await conn.ping(), 'held connection echoes');
    const firstPid = await agentPid(plan);
    const [firstStart] = [...(await perAgent(plan, 1)).keys()];
    assert.ok(firstStart, 'the first agent reports its start time');

    const prober = new Prober(plan);
    t.after(() => prober.stop());
    prober.start();
    await waitFor('a few probe rounds with the first agent alone', () => prober.rounds >= 2, {
      timeoutMs: 60_000,
    });

    // The second agent: same config, same node namespace, same ports.
    const second: Daemon = await startDaemon(plan, {
      name: 'agent2',
      netns: plan.nodeNetns,
      argv: [
        process.execPath,
        '--max-semi-space-size=2',
        CLI_MAIN,
        'agent',
        '--config',
        statePaths(plan).agentConfig,
      ],
    });
    const secondPid = second.pid;
    const secondStart = await waitFor(
      'the second agent to be ready (its own /metrics, served beside the first)',
      async () => {
        assert.ok(isRunning(secondPid), `the second agent exited: see ${path.join(logs, 'agent2.log')}`);
        for (const [start, s] of await perAgent(plan, 2, 8)) {
          if (start !== firstStart && sum(s, 'namegate_agent_ready') === 1) return start;
        }
        return null;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    prober.phase = 'both';
    // Both serve DNS on the resolver address: one SO_REUSEPORT group of two processes.
    assert.deepEqual(
      [...(await udpListeners(plan, plan.resolver.ipv4, plan.resolver.port))].sort(),
      [firstPid, secondPid].sort(),
      'both agents listen on the resolver address',
    );
    await waitFor('probe rounds while both run', () => (prober.checks.get('both') ?? 0) >= 10, {
      timeoutMs: 60_000,
    });
    // Each agent follows the other's feed and holds what the other answered.
    const peering = await perAgent(plan, 2);
    for (const [start, s] of peering) {
      assert.equal(
        sum(s, 'namegate_agent_peer_feed_connections_total', { role: 'followed' }),
        1,
        `${start} follows`,
      );
      assert.equal(
        sum(s, 'namegate_agent_peer_feed_connections_total', { role: 'served' }),
        1,
        `${start} serves`,
      );
      assert.ok(sum(s, 'namegate_agent_peer_entries') > 0, `${start} holds the other agent's entries`);
      assert.equal(sum(s, 'namegate_agent_peer_feed_errors_total'), 0, `${start}: no peer feed error`);
    }

    // Which agent answers a source port: count denied queries per agent.
    const portOf = new Map<number, number>();
    await prober.paused(async () => {
      for (let port = 41000; port < 41064 && portOf.size < 2; port++) {
        const before = await deniedBy(plan);
        const r = await digFrom(plan, port, 'evil.example.com', 'A');
        assert.match(r.stdout, /status: REFUSED/);
        const after = await waitFor('the denied query to be counted', async () => {
          const now = await deniedBy(plan);
          const moved = [...now].filter(([k, v]) => v > (before.get(k) ?? 0));
          return moved.length === 1 ? moved : null;
        });
        const [agent] = after[0] ?? [];
        if (agent !== undefined && !portOf.has(agent)) portOf.set(agent, port);
      }
      const portFirst = portOf.get(firstStart);
      const portSecond = portOf.get(secondStart);
      assert.ok(portFirst && portSecond, `a source port for each agent: ${JSON.stringify([...portOf])}`);
      // One name answered by the first agent alone, one by the second alone (A and AAAA: the
      // AAAA asked over IPv4 opens payments-api's IPv6 address as well).
      for (const [port, name] of [
        [portFirst, ONLY_FIRST],
        [portSecond, ONLY_SECOND],
      ] as const) {
        for (const qtype of ['A', 'AAAA'] as const) {
          const r = await digFrom(plan, port, name, qtype);
          assert.match(r.stdout, /status: NOERROR/, `${name} ${qtype}: ${r.stdout}`);
        }
      }
    });
    const elementsOf = async (site: typeof held) =>
      (await hasElement(plan, pay.ipv4, site.ipv4[0] as string, ECHO_PORT)) &&
      (await hasElement(plan, pay.ipv6, site.ipv6[0] as string, ECHO_PORT));
    assert.ok(await elementsOf(first1), `${ONLY_FIRST} learned (by the first agent)`);
    assert.ok(await elementsOf(second1), `${ONLY_SECOND} learned (by the second agent)`);

    // Both agents sync (a policy file appears: both watch the folder, both reload and sync).
    // Neither forgets what the other learned: its own store does not explain it.
    const syncs = async (agents = 2) =>
      new Map(
        [...(await perAgent(plan, agents))].map(([k, s]) => [
          k,
          sum(s, 'namegate_agent_syncs_total', { result: 'ok' }),
        ]),
      );
    const syncsBefore = await syncs();
    await writeFile(path.join(dir as string, 'e2e-touch-1.yaml'), touchPolicy(1));
    await waitFor(
      'both agents to reload and sync',
      async () => {
        const now = await syncs();
        return now.size === 2 && [...now].every(([k, v]) => v > (syncsBefore.get(k) ?? 0));
      },
      { timeoutMs: 20_000 },
    );
    for (const site of [first1, second1, held]) {
      assert.ok(await elementsOf(site), `${site.names[0]}: elements kept through both agents' syncs`);
      assert.ok(await tcpConnects(plan, PAY, site.ipv4[0] as string, ECHO_PORT), `${site.names[0]} connects`);
    }

    // As docs/kubernetes.md asks of nodes: TCP connections a closing listener had not accepted
    // yet go to the other agent's listener instead of being reset (DNS over TCP, the proxies).
    const sysctl = await run(
      ['ip', 'netns', 'exec', plan.nodeNetns, 'sysctl', '-qw', 'net.ipv4.tcp_migrate_req=1'],
      { timeoutMs: 10_000 },
    );
    assert.equal(sysctl.code, 0, sysctl.stderr);
    // SIGTERM to the first agent in the middle of a burst of lookups; the probes go on.
    let exitedAt = 0;
    const burst = prober.burst(4, () => exitedAt > 0 && Date.now() - exitedAt > 2_000);
    await waitFor('the burst to run', () => prober.burstSent >= 16, { timeoutMs: 30_000 });
    prober.phase = 'first stopping';
    process.kill(firstPid, 'SIGTERM');
    await waitFor('the first agent to exit', () => !isRunning(firstPid), {
      timeoutMs: 30_000,
      intervalMs: 20,
    });
    exitedAt = Date.now();
    prober.phase = 'second alone';
    const burstQueries = await burst;
    const firstLog = logLines(path.join(logs, 'agent.log'));
    assert.ok(
      firstLog.some((l) => l['msg'] === 'namegate agent stopped; the kernel table stays'),
      'the first agent stopped cleanly',
    );
    assert.deepEqual(
      firstLog.filter((l) => Number(l['level']) >= 50).map((l) => l['msg']),
      [],
      'the first agent logged no error while it stopped',
    );
    assert.deepEqual(
      firstLog.filter((l) => l['reason'] === 'dns-handover-incomplete'),
      [],
      'the first agent answered every query it had taken before its DNS sockets closed',
    );
    assert.deepEqual(
      [...(await perAgent(plan, 2, 12)).keys()],
      [secondStart],
      'only the second agent answers',
    );
    assert.deepEqual(
      [...(await udpListeners(plan, plan.resolver.ipv4, plan.resolver.port))],
      [secondPid],
      'the second agent alone serves DNS',
    );
    const roundsAfter = prober.rounds;
    await waitFor('probe rounds with the second agent alone', () => prober.rounds >= roundsAfter + 4, {
      timeoutMs: 60_000,
    });

    // The second agent syncs again, alone: still nothing the first agent learned goes.
    const alone = await syncs(1);
    await writeFile(path.join(dir as string, 'e2e-touch-2.yaml'), touchPolicy(2));
    await waitFor(
      'the second agent to reload and sync',
      async () => ((await syncs(1)).get(secondStart) ?? 0) > (alone.get(secondStart) ?? 0),
      { timeoutMs: 20_000 },
    );
    for (const site of [first1, second1, held]) {
      assert.ok(await elementsOf(site), `${site.names[0]}: elements kept after the first agent left`);
      assert.ok(await tcpConnects(plan, PAY, site.ipv4[0] as string, ECHO_PORT), `${site.names[0]} connects`);
    }
    assert.ok(await conn.ping(), 'the connection held since before the update still echoes');
    assertDropped(await http(plan, CI, 'evil.example.com', { ...DROP, via: '203.0.113.66' }), 'raw IP');
    assert.equal((await dig(plan, PAY, 'evil.example.com', 'A')).status, 'REFUSED');

    assert.deepEqual(
      logLines(path.join(logs, 'agent2.log'))
        .filter((l) => Number(l['level']) >= 50)
        .map((l) => l['msg']),
      [],
      'the second agent logged no error',
    );

    await prober.stop();
    t.diagnostic(
      `probe checks per phase: ${[...prober.checks].map(([p, n]) => `${p} ${n}`).join(', ')}; ` +
        `burst around the first agent's exit: ${burstQueries} lookups; ` +
        `ports: first ${portOf.get(firstStart)}, second ${portOf.get(secondStart)}`,
    );
    for (const phase of ['first alone', 'both', 'first stopping', 'second alone'] as const)
      assert.ok((prober.checks.get(phase) ?? 0) > 0 || phase === 'first stopping', `probed while ${phase}`);
    assert.deepEqual(prober.failures, [], 'no probe failed in any phase');
  });
});
