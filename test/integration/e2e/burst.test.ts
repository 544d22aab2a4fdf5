/**
 * End to end, NODE-06 (DNS burst; DNS-25 is the same class from one pod): one governed pod
 * floods the agent's DNS listener with UDP queries, as fast as a Node client with eight sockets
 * can send them (bounded: at most 1,000,000 packets, about ten seconds, stopped as soon as the checks made during
 * the flood are done). The agent must:
 * - survive (same process, /readyz ready) with its memory bounded and no query left pending;
 * - keep answering other pods during the flood;
 * - limit the flooding source, twice: in the kernel (a per-source packet rate on the proxy's
 *   UDP ports, the `dnsflood` counter), so the flood cannot fill the listening socket for
 *   everyone, and in the proxy (token bucket per source); count what each refused;
 * - account for every packet: each one sent is a counted query, a counted drop (proxy or
 *   kernel guard), a drop on the listening socket (its receive buffer was full; `ss` shows it
 *   per socket) or on a link of the path.
 * The listening socket's receive buffer is the configured one (recvBufferBytes), not the
 * kernel default.
 */
import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AGENT_HTTP_LISTEN } from '../../../src/lab/agent-config.ts';
import { labExec } from '../../../src/lab/exec.ts';
import { findPod, type LabPlan, siteFor } from '../../../src/lab/plan.ts';
import { findTool, run } from '../../../src/lab/run.ts';
import {
  agentPid,
  dig,
  downLab,
  flowLog,
  isRunning,
  metrics,
  type Sample,
  skip,
  sum,
  uniqueLabName,
  upLab,
  waitFor,
  withoutSniProxy,
} from './helpers.ts';

/** Unique per run: two runs of this file at once (two engineers) must not share a lab. */
const NAME = uniqueLabName('bst');
const PAY = 'payments-api';
const FLOOD = fileURLToPath(new URL('./dns-flood.ts', import.meta.url));
const MAX_PACKETS = 1_000_000;
/**
 * The other pods ask once this many queries have left: more than both limits let through at once
 * (the kernel guard's burst of 16,000 and the proxy's bucket of 4,000, the defaults).
 */
const FLOODING_AFTER = 40_000;
/** RSS the agent may gain from the flood (its steady RSS is ~160 MB with default metrics). */
const RSS_GROWTH_BOUND = 128 * 1024 * 1024;

function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, 'VmRSS');
  return Number(m[1]) * 1024;
}

describe('end to end: a DNS burst from one pod', { skip, concurrency: false }, () => {
  let plan: LabPlan;
  let flooder: ChildProcessWithoutNullStreams | null = null;

  /** The kernel's view of the IPv4 listener: receive buffer size and packets it dropped. */
  const listener = async (): Promise<{ rb: number; drops: number }> => {
    const r = await run(
      [
        'ip',
        'netns',
        'exec',
        plan.nodeNetns,
        'ss',
        '-Hulnm',
        `src ${plan.resolver.ipv4}:${plan.resolver.port}`,
      ],
      { timeoutMs: 10_000 },
    );
    assert.equal(r.code, 0, r.stderr);
    const m = /skmem:\(.*\brb(\d+),.*\bd(\d+)\)/.exec(r.stdout);
    assert.ok(m, `ss: ${r.stdout}`);
    return { rb: Number(m[1]), drops: Number(m[2]) };
  };
  /**
   * Packets the interfaces of these namespaces dropped (a veth drops when the receiving CPU's
   * backlog is full, before any socket sees the packet): RX and TX drops of every link.
   */
  const linkDrops = async (netnses: readonly string[]): Promise<number> => {
    let total = 0;
    for (const netns of netnses) {
      const r = await run(['ip', '-n', netns, '-s', '-j', 'link', 'show'], { timeoutMs: 10_000 });
      assert.equal(r.code, 0, r.stderr);
      const links = JSON.parse(r.stdout) as {
        stats64?: { rx?: { dropped?: number }; tx?: { dropped?: number } };
      }[];
      for (const l of links) total += (l.stats64?.rx?.dropped ?? 0) + (l.stats64?.tx?.dropped ?? 0);
    }
    return total;
  };
  /** UDP packets to the proxy the kernel's flood guard dropped (the `dnsflood` counter). */
  const guardDrops = async (): Promise<number> => {
    const r = await run(
      ['ip', 'netns', 'exec', plan.nodeNetns, 'nft', '-j', 'list', 'counter', 'inet', 'namegate', 'dnsflood'],
      {
        timeoutMs: 10_000,
      },
    );
    assert.equal(r.code, 0, `the flood guard's counter exists: ${r.stderr}`);
    const m = /"packets":\s*(\d+)/.exec(r.stdout);
    assert.ok(m, r.stdout);
    return Number(m[1]);
  };
  const queries = (m: readonly Sample[]) => sum(m, 'namegate_dns_queries_total');
  const drops = (m: readonly Sample[], reason?: string) =>
    sum(m, 'namegate_dns_drops_total', reason ? { reason } : {});

  before(async () => {
    plan = await upLab(NAME, { config: withoutSniProxy });
  });
  after(async () => {
    if (flooder && flooder.exitCode === null) flooder.kill('SIGKILL');
    await downLab(NAME);
  });

  it('NODE-06: the agent survives a burst, limits and counts it, accounts for every packet, and still answers other pods', async (t) => {
    const pay = findPod(plan, PAY);
    const github = siteFor(plan, 'github.com')?.ipv4[0];
    const pypi = siteFor(plan, 'pypi.org')?.ipv4[0];
    assert.ok(github && pypi);
    const pid = await agentPid(plan);
    // Warm up (first answers, lazily created series), then take the baseline.
    assert.equal((await dig(plan, PAY, 'api.stripe.com')).status, 'NOERROR');
    const rss0 = rssBytes(pid);
    const m0 = await metrics(plan);
    const l0 = await listener();
    const path = [plan.nodeNetns, findPod(plan, PAY).netns];
    const links0 = await linkDrops(path);
    const guard0 = await guardDrops();
    assert.ok(l0.rb >= 4 * 1024 * 1024, `the listener's receive buffer was raised (rb ${l0.rb})`);
    const logged = flowLog(plan).length;

    // The flood: mostly a denied name (answered locally), one in four allowed (to the upstream).
    const netns = pay.netns;
    const child = spawn(findTool('ip') ?? 'ip', [
      'netns',
      'exec',
      netns,
      process.execPath,
      FLOOD,
      plan.resolver.ipv4,
      String(plan.resolver.port),
      String(MAX_PACKETS),
      'evil.example.com,evil.example.com,evil.example.com,api.stripe.com',
      '8',
      String(FLOODING_AFTER),
    ]);
    flooder = child;
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const exited = new Promise<void>((r) => child.on('close', () => r()));
    await waitFor('the flood to be under way', () => {
      if (child.exitCode !== null) throw new Error(`flooder exited: ${out}`);
      return out.includes('flooding');
    });

    // During the flood, other pods ask, retrying as real resolvers do: on a loaded machine the
    // agent drains its socket more slowly than the guard lets the flood in, so a datagram of
    // another pod can meet a full socket (counted as a socket drop). The check is that they are
    // answered, not how fast, nor at the first try; each retry is a query of the accounting.
    const patient = { timeoutS: 5, tries: 4 };
    const others = await Promise.all([
      ...Array.from({ length: 5 }, () => dig(plan, 'ci-runner', 'github.com', 'A', patient)),
      ...Array.from({ length: 3 }, () => dig(plan, 'web', 'pypi.org', 'A', patient)),
    ]);
    child.stdin.write('stop\n');
    // It stops sending at once and prints its result after a one-second drain.
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
    const result = JSON.parse(out.split('\n').find((l) => l.startsWith('{')) ?? 'null') as {
      sent: number;
      replies: number;
      ms: number;
      stoppedEarly: boolean;
    } | null;
    assert.ok(result, `flooder output: ${out}`);
    assert.equal(result.stoppedEarly, true, 'the other pods asked while the flood was still going');
    for (const d of others.slice(0, 5))
      assert.deepEqual(d.addresses, [github], `ci-runner during the flood: ${d.raw}`);
    for (const d of others.slice(5)) assert.deepEqual(d.addresses, [pypi], `web during the flood: ${d.raw}`);

    // Settled: nothing pending (a query waits at most attempts x timeout for the upstream), and
    // every packet counted somewhere. On a loaded machine the agent is still reading its socket's
    // backlog when the flooder is done: wait for the counters to reach what was sent (they only
    // grow), then check that they add up exactly.
    // dig prints one "timed out" line per query that got no answer; the last one answered.
    const digQueries = (d: { raw: string }) =>
      (d.raw.match(/communications error[^\n]*timed out/g) ?? []).length +
      (d.raw.includes('->>HEADER<<-') ? 1 : 0);
    const sent = result.sent + others.reduce((n, d) => n + digQueries(d), 0);
    let seen = '';
    const { m1, l1, links1, guard1 } = await waitFor(
      'every packet counted (nothing pending, the socket backlog read)',
      async () => {
        const m = await metrics(plan);
        if (sum(m, 'namegate_dns_pending') !== 0) return null;
        const l = await listener();
        const links = await linkDrops(path);
        const guard = await guardDrops();
        const counted =
          queries(m) -
          queries(m0) +
          (drops(m) - drops(m0)) +
          (guard - guard0) +
          (l.drops - l0.drops) +
          (links - links0);
        seen = `${counted} of ${sent}`;
        return counted >= sent ? { m1: m, l1: l, links1: links, guard1: guard } : null;
      },
      { timeoutMs: 120_000, intervalMs: 500 },
    ).catch((err: Error) => {
      throw new Error(`${err.message}; counted ${seen}`);
    });

    // Survived, bounded.
    assert.equal(await agentPid(plan), pid);
    assert.ok(isRunning(pid), 'the agent survived');
    const ready = await labExec(plan, 'node', [
      'curl',
      '-sf',
      '--max-time',
      '2',
      `http://${AGENT_HTTP_LISTEN}/readyz`,
    ]);
    assert.equal(ready.code, 0, '/readyz after the flood');
    const growth = rssBytes(pid) - rss0;
    assert.ok(growth < RSS_GROWTH_BOUND, `RSS grew by ${(growth / 2 ** 20).toFixed(1)} MiB`);

    // Limited and counted.
    const limited = drops(m1, 'rate_limited') - drops(m0, 'rate_limited');
    assert.ok(limited > 0, 'the per-source token bucket refused part of the flood');
    const summaries = flowLog(plan)
      .slice(logged)
      .filter((l) => l['src'] === pay.ipv4 && l['verdict'] === 'drop' && l['reason'] === 'rate_limited');
    assert.ok(summaries.length >= 1, 'the flow log summarises the drops');
    assert.ok(
      summaries.length <= Math.ceil(result.ms / 1000) + 2,
      `at most one summary line per second: ${summaries.length} in ${result.ms} ms`,
    );
    const summarised = summaries.reduce((n, l) => n + Number(l['dropped']), 0);
    assert.ok(summarised <= limited, 'summaries never claim more than was dropped');

    // Every packet accounted for: answered (a counted query), refused by the limiter (a counted
    // drop), or dropped by the kernel on the full socket buffer (the socket's drop counter).
    const answered = queries(m1) - queries(m0);
    const appDrops = drops(m1) - drops(m0);
    const kernelDrops = l1.drops - l0.drops;
    const pathDrops = links1 - links0;
    const guarded = guard1 - guard0;
    assert.ok(guarded > 0, "the kernel's per-source guard cut the flood before the proxy's socket");
    t.diagnostic(
      `flood: ${result.sent} sent in ${result.ms} ms; agent: ${answered} answered, ${limited} rate-limited, ${guarded} dropped by the kernel's flood guard, ${kernelDrops} by the socket, ${pathDrops} by the links; RSS +${(growth / 2 ** 20).toFixed(1)} MiB`,
    );
    assert.equal(
      answered + appDrops + guarded + kernelDrops + pathDrops,
      sent,
      `sent ${sent} = queries ${answered} + namegate drops ${appDrops} + guard drops ${guarded} + socket drops ${kernelDrops} + link drops ${pathDrops}`,
    );
  });
});
