/**
 * End to end, policy changes (root, own lab): the agent watches the policy folder. Removing a
 * policy ends what it allowed: its learned elements leave the kernel and a connection it let
 * through is cut (its conntrack entry deleted), within a bounded time, while the pod's other
 * policy keeps working (TIME-07). An invalid edit is rejected and logged, and the last good set
 * stays in force: nothing it allowed is lost and nothing the bad file would allow opens (REL-06).
 */
import assert from 'node:assert/strict';
import { unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { findPod, type LabPlan, siteFor } from '../../../src/lab/plan.ts';
import {
  agentLog,
  assertServed,
  closeAll,
  conntrackCount,
  dig,
  downLab,
  ECHO_PORT,
  EchoServer,
  HeldConnection,
  hasElement,
  http,
  learnedSnapshot,
  metrics,
  paymentsPolicy,
  policyDir,
  removeDir,
  skip,
  sum,
  tcpConnects,
  uniqueLabName,
  upLab,
  waitFor,
  waitForLog,
} from './helpers.ts';

const NAME = uniqueLabName('reload');
const PAY = 'payments-api';
const FAMILIES = [4, 6] as const;
/** How long removing a policy may take to reach the kernel and conntrack (file watch + sync). */
const REVOKE_DEADLINE_MS = 15_000;

/** A second policy for payments-api: example.org on the echo port. Removed by the test. */
const EXTRA_POLICY = paymentsPolicy('e2e-extra', ['example.org']);

/** payments-stripe.yaml made invalid (a port out of range) while also naming evil.example.com. */
const INVALID_STRIPE = `apiVersion: namegate.dev/v1alpha1
kind: EgressPolicy
metadata:
  name: stripe-only
  namespace: payments
spec:
  podSelector:
    matchLabels:
      app: payments-api
  mode: Enforce
  egress:
    - toFQDNs:
        - name: api.stripe.com
        - name: evil.example.com
      ports:
        - port: 70000
          protocol: TCP
`;

describe('end to end: policy removal and invalid edits', { skip, concurrency: false }, () => {
  let plan: LabPlan;
  let dir = '';
  const open: Array<{ stop?: () => void; close?: () => void }> = [];

  before(async () => {
    dir = await policyDir({ 'e2e-extra.yaml': EXTRA_POLICY });
    plan = await upLab(NAME, { policies: [dir] });
    open.push(await EchoServer.start(plan, ECHO_PORT));
  });
  after(async () => {
    closeAll(open);
    await downLab(NAME);
    await removeDir(dir);
  });

  it('removing a policy removes its elements and cuts its established flows, within a bounded time (TIME-07)', async (t) => {
    const pay = findPod(plan, PAY);
    const src = { 4: pay.ipv4, 6: pay.ipv6 };
    const org = siteFor(plan, 'example.org');
    const stripe = siteFor(plan, 'api.stripe.com');
    assert.ok(org && stripe);
    const orgIp = { 4: org.ipv4[0]!, 6: org.ipv6[0]! };
    const stripeIp = { 4: stripe.ipv4[0]!, 6: stripe.ipv6[0]! };

    const conns: Record<4 | 6, HeldConnection> = {} as never;
    for (const f of FAMILIES) {
      assert.deepEqual((await dig(plan, PAY, 'example.org', f === 4 ? 'A' : 'AAAA')).addresses, [orgIp[f]]);
      assert.ok(await hasElement(plan, src[f], orgIp[f], ECHO_PORT), `IPv${f} element learned`);
      conns[f] = await HeldConnection.open(plan, PAY, orgIp[f], ECHO_PORT);
      open.push(conns[f]);
      assert.ok(await conns[f].ping(), `IPv${f} connection echoes`);
      assertServed(
        await http(plan, PAY, 'api.stripe.com', { family: f }),
        'api.stripe.com',
        `IPv${f} stripe`,
      );
      const family = f === 4 ? 'ipv4' : 'ipv6';
      const flows = await conntrackCount(plan, [
        '-f',
        family,
        '-p',
        'tcp',
        '-s',
        src[f],
        '-d',
        orgIp[f],
        '--dport',
        `${ECHO_PORT}`,
      ]);
      assert.equal(flows, 1, `IPv${f}: one conntrack entry for the held connection`);
    }
    const m0 = await metrics(plan);

    const removedAt = Date.now();
    await unlink(path.join(dir, 'e2e-extra.yaml'));
    await Promise.all(
      FAMILIES.map(async (f) => {
        await waitFor(
          `the IPv${f} element of the removed policy to leave the set`,
          async () => !(await hasElement(plan, src[f], orgIp[f], ECHO_PORT)),
          { timeoutMs: REVOKE_DEADLINE_MS },
        );
        const family = f === 4 ? 'ipv4' : 'ipv6';
        await waitFor(
          `the IPv${f} conntrack entry of the held connection to be deleted`,
          async () =>
            (await conntrackCount(plan, [
              '-f',
              family,
              '-p',
              'tcp',
              '-s',
              src[f],
              '-d',
              orgIp[f],
              '--dport',
              `${ECHO_PORT}`,
            ])) === 0,
          { timeoutMs: REVOKE_DEADLINE_MS },
        );
      }),
    );
    t.diagnostic(`elements removed and flows ended ${Date.now() - removedAt} ms after the file was removed`);
    await Promise.all(
      FAMILIES.map(async (f) => {
        const [echoed, connects] = await Promise.all([
          conns[f].ping(),
          tcpConnects(plan, PAY, orgIp[f], ECHO_PORT),
        ]);
        assert.equal(echoed, false, `IPv${f}: the established connection is cut`);
        assert.equal(connects, false, `IPv${f}: no new connection`);
        // The pod's other policy is untouched.
        assert.ok(await hasElement(plan, src[f], stripeIp[f], 443), `IPv${f}: stripe element kept`);
        assertServed(
          await http(plan, PAY, 'api.stripe.com', { family: f }),
          'api.stripe.com',
          `IPv${f} stripe after`,
        );
        const d = await dig(plan, PAY, 'example.org', f === 4 ? 'A' : 'AAAA');
        assert.equal(d.status, 'REFUSED', 'the removed policy no longer answers');
      }),
    );
    const m1 = await metrics(plan);
    const deleted = (m: typeof m0) => sum(m, 'namegate_datapath_conntrack_deleted_total');
    assert.ok(deleted(m1) >= deleted(m0) + 2, 'namegate_datapath_conntrack_deleted_total counts both flows');
    assert.equal(
      sum(m1, 'namegate_agent_policies'),
      sum(m0, 'namegate_agent_policies') - 1,
      'one policy fewer',
    );
  });

  it('an invalid edit is rejected and logged; the last good set stays in force (REL-06)', async () => {
    const stripe = siteFor(plan, 'api.stripe.com');
    assert.ok(stripe);
    for (const f of FAMILIES) {
      assertServed(
        await http(plan, PAY, 'api.stripe.com', { family: f }),
        'api.stripe.com',
        `IPv${f} before`,
      );
    }
    const before = await learnedSnapshot(plan);
    const m0 = await metrics(plan);
    const logged = agentLog(plan).length;

    await writeFile(path.join(dir, 'payments-stripe.yaml'), INVALID_STRIPE);
    const rejected = await waitForLog(
      plan,
      'the agent to log the rejected reload',
      (l) => l['reason'] === 'policy_reload_rejected',
      logged,
    );
    assert.match(String(rejected['msg']), /last good set stays in force/);
    assert.ok(
      agentLog(plan)
        .slice(logged)
        .some((l) => l['reason'] === 'policy_invalid' && /payments-stripe\.yaml/.test(String(l['msg']))),
      'the problem is logged with its file',
    );

    assert.deepEqual(await learnedSnapshot(plan), before, 'the kernel keeps every learned element');
    const m1 = await metrics(plan);
    assert.equal(
      sum(m1, 'namegate_agent_policies'),
      sum(m0, 'namegate_agent_policies'),
      'same policies in force',
    );
    for (const f of FAMILIES) {
      const qtype = f === 4 ? 'A' : 'AAAA';
      const ok = await dig(plan, PAY, 'api.stripe.com', qtype);
      assert.deepEqual(
        ok.addresses,
        [f === 4 ? stripe.ipv4[0] : stripe.ipv6[0]],
        'the good policy still answers',
      );
      assertServed(await http(plan, PAY, 'api.stripe.com', { family: f }), 'api.stripe.com', `IPv${f} after`);
      // Nothing the invalid file names opens.
      assert.equal((await dig(plan, PAY, 'evil.example.com', qtype)).status, 'REFUSED', 'evil stays refused');
    }
  });
});
