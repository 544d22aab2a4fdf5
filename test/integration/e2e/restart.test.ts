/**
 * End to end, the agent dies (root, own lab): SIGKILL leaves the kernel as it was. While the
 * agent is down, established flows keep running and learned addresses keep taking new
 * connections (REL-01, REL-02), the learned sets do not change, and new DNS fails closed:
 * the redirect stays and nothing answers. After a restart everything works again, and the
 * store came back from the checkpoint before any new answer (REL-03).
 *
 * The lab's agent config gets a checkpoint (every second) for this test.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { findPod, type LabPlan, labPlan, siteFor } from '../../../src/lab/plan.ts';
import {
  agentLog,
  agentPid,
  assertServed,
  closeAll,
  debugLearned,
  dig,
  downLab,
  ECHO_PORT,
  EchoServer,
  HeldConnection,
  hasElement,
  http,
  isRunning,
  learnedSnapshot,
  metrics,
  paymentsPolicy,
  policyDir,
  removeDir,
  skip,
  startLabAgent,
  sum,
  uniqueLabName,
  upLab,
  waitFor,
  waitForLog,
  withoutSniProxy,
} from './helpers.ts';

const NAME = uniqueLabName('restart');
const PAY = 'payments-api';
const FAMILIES = [4, 6] as const;

/** payments-api may also reach example.org on the echo port (a long-lived connection). */
const HOLD_POLICY = paymentsPolicy('e2e-hold', ['example.org']);

describe('end to end: SIGKILL and restart of the agent', { skip, concurrency: false }, () => {
  let plan: LabPlan;
  let dir: string | undefined;
  let checkpoint = '';
  const open: Array<{ stop?: () => void; close?: () => void }> = [];

  before(async () => {
    dir = await policyDir({ 'e2e-hold.yaml': HOLD_POLICY });
    checkpoint = path.join(labPlan(NAME).stateDir, 'store.ckpt');
    plan = await upLab(NAME, {
      policies: [dir],
      config: (c) => ({
        ...withoutSniProxy(c),
        store: { checkpoint: { path: checkpoint, intervalSeconds: 1 } },
      }),
    });
    open.push(await EchoServer.start(plan, ECHO_PORT));
  });
  after(async () => {
    closeAll(open);
    await downLab(NAME);
    await removeDir(dir);
  });

  it('keeps established flows and learned elements while down, fails closed for new DNS, and restores the store on restart (REL-01, REL-02, REL-03)', async () => {
    const pay = findPod(plan, PAY);
    const src = { 4: pay.ipv4, 6: pay.ipv6 };
    const stripe = siteFor(plan, 'api.stripe.com');
    const org = siteFor(plan, 'example.org');
    assert.ok(stripe && org);
    const stripeIp = { 4: stripe.ipv4[0]!, 6: stripe.ipv6[0]! };
    const orgIp = { 4: org.ipv4[0]!, 6: org.ipv6[0]! };

    // Learn, and hold one connection per family.
    const conns: Record<4 | 6, HeldConnection> = {} as never;
    for (const f of FAMILIES) {
      assertServed(
        await http(plan, PAY, 'api.stripe.com', { family: f }),
        'api.stripe.com',
        `IPv${f} before`,
      );
      const d = await dig(plan, PAY, 'example.org', f === 4 ? 'A' : 'AAAA');
      assert.deepEqual(d.addresses, [orgIp[f]]);
      conns[f] = await HeldConnection.open(plan, PAY, orgIp[f], ECHO_PORT);
      open.push(conns[f]);
      assert.ok(await conns[f].ping(), `IPv${f} held connection echoes`);
    }
    // The checkpoint holds what was learned (written every second).
    await waitFor('the checkpoint to hold the learned entries', async () => {
      const text = await readFile(checkpoint, 'utf8').catch(() => '');
      return [stripeIp[4], stripeIp[6], orgIp[4], orgIp[6]].every((ip) => text.includes(`"${ip}"`));
    });
    const before = await learnedSnapshot(plan);
    assert.ok(before.length >= 4, `learned elements present: ${before.join(', ')}`);

    // SIGKILL: no shutdown code runs.
    const pid = await agentPid(plan);
    assert.ok(isRunning(pid), 'the agent runs');
    process.kill(pid, 'SIGKILL');
    await waitFor('the agent to die', () => !isRunning(pid));

    // While it is down...
    for (const f of FAMILIES) {
      assert.ok(await conns[f].ping(), `IPv${f}: the established flow keeps running (REL-01)`);
      // ... a learned address still takes new connections (REL-02) ...
      assertServed(
        await http(plan, PAY, 'api.stripe.com', { family: f, via: stripeIp[f] }),
        'api.stripe.com',
        `IPv${f}: a new connection to a learned address while the agent is down`,
      );
    }
    // ... new DNS fails closed: no answer, over UDP, TCP, and to another resolver ...
    for (const options of [{}, { tcp: true }, { server: plan.otherResolver.ipv4 }]) {
      const d = await dig(plan, PAY, 'api.stripe.com', 'A', { timeoutS: 2, ...options });
      assert.equal(d.status, null, `no DNS answer while down (${JSON.stringify(options)}): ${d.raw}`);
      assert.deepEqual(d.addresses, []);
    }
    const unmanaged = await dig(plan, 'unmanaged', 'api.stripe.com', 'A', { server: plan.upstream.ipv4 });
    assert.equal(unmanaged.status, 'NOERROR', 'the upstream itself is fine (control)');
    // ... and the kernel is as it was.
    assert.deepEqual(await learnedSnapshot(plan), before, 'learned sets unchanged while down (REL-01)');

    // Restart.
    const logged = agentLog(plan).length;
    await startLabAgent(plan);
    const restored = await waitForLog(
      plan,
      'the agent to log "checkpoint restored"',
      (l) => l['msg'] === 'checkpoint restored',
      logged,
    );
    assert.ok(Number(restored['kept']) >= 4, `restored entries: ${JSON.stringify(restored)}`);
    const m = await metrics(plan);
    assert.ok(sum(m, 'namegate_store_restored_entries') >= 4, 'namegate_store_restored_entries');
    // The store knows what was learned before the kill, with no new answer yet (REL-03).
    const learned = await debugLearned(plan);
    for (const [name, ips] of [
      ['api.stripe.com', stripeIp],
      ['example.org', orgIp],
    ] as const) {
      for (const f of FAMILIES) {
        assert.ok(
          learned.some((e) => e.source === src[4] && e.name === name && e.ip === ips[f]),
          `store has ${src[4]} ${name} ${ips[f]} after restart: ${JSON.stringify(learned)}`,
        );
      }
    }
    for (const f of FAMILIES) {
      assert.ok(await hasElement(plan, src[f], orgIp[f], ECHO_PORT), `IPv${f} element kept`);
      assert.ok(await conns[f].ping(), `IPv${f}: the flow survived the restart`);
      const d = await dig(plan, PAY, 'api.stripe.com', f === 4 ? 'A' : 'AAAA');
      assert.deepEqual(d.addresses, [stripeIp[f]], 'DNS answers again');
      assertServed(await http(plan, PAY, 'api.stripe.com', { family: f }), 'api.stripe.com', `IPv${f} after`);
      assert.equal((await dig(plan, PAY, 'evil.example.com', f === 4 ? 'A' : 'AAAA')).status, 'REFUSED');
    }
  });
});
