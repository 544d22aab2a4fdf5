/**
 * End to end, REL-05: the agent hangs (SIGSTOP: alive, holding its sockets, doing nothing, as a
 * deadlocked or swapping process would). Everything that needs it fails closed and nothing
 * bypasses it:
 * - DNS redirected to it gets no answer (UDP and TCP), so nothing new is learned;
 * - HTTPS on a verify port is still redirected to the (hung) SNI proxy and never reaches the
 *   server, although the address is learned;
 * - /healthz does not answer, which is what the chart's liveness probe acts on.
 * What the kernel holds keeps working: an established flow through the IP sets, and new
 * connections to learned addresses on ports that are not verified. After SIGCONT everything
 * answers again. (OOM is a SIGKILL: test/integration/e2e/restart.test.ts.)
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AGENT_HTTP_LISTEN } from '../../../src/lab/agent-config.ts';
import { labExec } from '../../../src/lab/exec.ts';
import { type LabPlan, siteFor, statePaths } from '../../../src/lab/plan.ts';
import {
  agentPid,
  assertServed,
  closeAll,
  dig,
  downLab,
  ECHO_PORT,
  EchoServer,
  HeldConnection,
  http,
  isRunning,
  learnedSnapshot,
  paymentsPolicy,
  policyDir,
  removeDir,
  skip,
  tcpConnects,
  uniqueLabName,
  upLab,
  waitFor,
} from './helpers.ts';

/** Unique per run: two runs of this file at once (two engineers) must not share a lab. */
const NAME = uniqueLabName('hung');
const PAY = 'payments-api';

/** payments-api may also reach example.org on the echo port (not a verify port). */
const HOLD_POLICY = paymentsPolicy('e2e-hold', ['example.org']);

/** The process state letter of /proc/<pid>/stat ('T' while stopped). */
function procState(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
}

describe('end to end: the agent hangs (SIGSTOP)', { skip, concurrency: false }, () => {
  let plan: LabPlan;
  let dir: string | undefined;
  let stopped: number | null = null;
  const open: Array<{ stop?: () => void; close?: () => void }> = [];

  const resume = () => {
    if (stopped !== null && isRunning(stopped)) process.kill(stopped, 'SIGCONT');
    stopped = null;
  };
  const healthz = async (): Promise<boolean> => {
    const r = await labExec(
      plan,
      'node',
      ['curl', '-sf', '--max-time', '2', `http://${AGENT_HTTP_LISTEN}/healthz`],
      {
        timeoutMs: 6_000,
      },
    );
    return r.code === 0;
  };
  const served = (sni: string): number =>
    readFileSync(path.join(statePaths(plan).logs, 'nginx-access.log'), 'utf8')
      .split('\n')
      .filter((l) => l.includes(` sni=${sni} `)).length;

  before(async () => {
    dir = await policyDir({ 'e2e-hold.yaml': HOLD_POLICY });
    plan = await upLab(NAME, { policies: [dir] });
    open.push(await EchoServer.start(plan, ECHO_PORT));
  });
  after(async () => {
    resume();
    closeAll(open);
    await downLab(NAME);
    await removeDir(dir);
  });

  it('REL-05: a hung agent fails closed (DNS, SNI-verified HTTPS, liveness) and never bypasses; the kernel keeps what it holds; SIGCONT recovers', async () => {
    const stripe = siteFor(plan, 'api.stripe.com')?.ipv4[0];
    const org = siteFor(plan, 'example.org')?.ipv4[0];
    assert.ok(stripe && org);

    // Before: learn both names, hold a connection through the IP sets.
    assertServed(
      await http(plan, PAY, 'api.stripe.com'),
      'api.stripe.com',
      'HTTPS through the SNI proxy before',
    );
    assert.deepEqual((await dig(plan, PAY, 'example.org')).addresses, [org]);
    const held = await HeldConnection.open(plan, PAY, org, ECHO_PORT);
    open.push(held);
    assert.ok(await held.ping(), 'the held connection echoes');
    assert.equal(await healthz(), true, '/healthz answers');
    const learned = await learnedSnapshot(plan);
    const servedBefore = served('api.stripe.com');

    const pid = await agentPid(plan);
    process.kill(pid, 'SIGSTOP');
    stopped = pid;
    try {
      await waitFor('the agent to be stopped', () => procState(pid) === 'T');

      // Fail closed: no DNS answer over UDP, TCP, or to another resolver (all redirected to it).
      for (const options of [{}, { tcp: true }, { server: plan.otherResolver.ipv4 }]) {
        const d = await dig(plan, PAY, 'api.stripe.com', 'A', { timeoutS: 2, ...options });
        assert.equal(d.status, null, `no DNS answer while hung (${JSON.stringify(options)}): ${d.raw}`);
      }
      // The verify port still goes to the hung proxy: the TCP handshake completes in the kernel's
      // backlog, and nothing more happens. No byte reaches the server, though the address is learned.
      const https = await http(plan, PAY, 'api.stripe.com', { via: stripe, connectTimeoutS: 2 });
      assert.notEqual(https.code, 0, `HTTPS on a verify port while hung: ${https.status} ${https.body}`);
      assert.equal(https.status, null);
      assert.equal(served('api.stripe.com'), servedBefore, 'nginx served nothing for api.stripe.com');
      // The liveness probe sees it.
      assert.equal(await healthz(), false, '/healthz does not answer while hung');

      // The kernel keeps what it holds: the established flow, and a new connection to a learned
      // address on a port that is not verified.
      assert.ok(await held.ping(), 'the established flow keeps running');
      assert.equal(
        await tcpConnects(plan, PAY, org, ECHO_PORT),
        true,
        'a new connection to a learned address',
      );
      assert.equal(
        await tcpConnects(plan, PAY, org, 80),
        false,
        'an unlearned port (nginx listens on 80) stays dropped',
      );
      assert.deepEqual(await learnedSnapshot(plan), learned, 'the learned sets did not change');
      assert.equal(procState(pid), 'T', 'still stopped after the checks');
    } finally {
      resume();
    }

    // SIGCONT: it answers again, the flow is intact, and the hung period taught it nothing odd.
    await waitFor('/healthz to answer again', () => healthz(), { timeoutMs: 20_000 });
    assert.ok(isRunning(pid), 'the same process carries on');
    await waitFor(
      'DNS to answer again',
      async () => (await dig(plan, PAY, 'api.stripe.com')).status === 'NOERROR',
    );
    assertServed(
      await http(plan, PAY, 'api.stripe.com'),
      'api.stripe.com',
      'HTTPS through the SNI proxy after',
    );
    assert.equal((await dig(plan, PAY, 'evil.example.com')).status, 'REFUSED', 'still enforcing');
    assert.ok(await held.ping(), 'the held connection survived');
  });
});
