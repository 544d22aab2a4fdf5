/**
 * End to end, time (root, one lab for the file): learned elements live as long as the answer's
 * TTL (clamped, plus grace) and no longer. When short.example.com's element expires, a TCP
 * connection that was established keeps working while a new one is dropped, and a fresh answer
 * opens it again (TIME-03). When a name moves to another address through a dynamic DNS update,
 * the new address works after the next answer and the old one stops taking new connections once
 * its element expired (TIME-05). IPv4 and IPv6 side by side.
 *
 * The lab's agent config clamps TTLs to at least 5 s with 5 s of grace, so short.example.com
 * (TTL 5) lives about 10 s in the kernel; the tests poll the set until the element is gone.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setAddresses } from '../../../src/lab/dns-update.ts';
import { findPod, type LabPlan, siteFor } from '../../../src/lab/plan.ts';
import {
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
  paymentsPolicy,
  policyDir,
  removeDir,
  skip,
  tcpConnects,
  uniqueLabName,
  upLab,
  waitFor,
  withoutSniProxy,
} from './helpers.ts';

const NAME = uniqueLabName('expiry');
const PAY = 'payments-api';
const FAMILIES = [4, 6] as const;
/** Element lifetime here is about 10 s; leave room for a slow machine. */
const EXPIRY_DEADLINE_MS = 40_000;

/** payments-api may also reach the lab's short-TTL and moving names, on 443 and the echo port. */
const HOLD_POLICY = paymentsPolicy('e2e-time', ['short.example.com', 'moving.example.com'], [443, ECHO_PORT]);

describe('end to end: TTL expiry and address changes', { skip, concurrency: false }, () => {
  let plan: LabPlan;
  let dir: string | undefined;
  const open: Array<{ stop?: () => void; close?: () => void }> = [];
  const src = (f: 4 | 6) => (f === 4 ? findPod(plan, PAY).ipv4 : findPod(plan, PAY).ipv6);
  const qtype = (f: 4 | 6) => (f === 4 ? 'A' : 'AAAA');

  before(async () => {
    dir = await policyDir({ 'e2e-time.yaml': HOLD_POLICY });
    plan = await upLab(NAME, { policies: [dir], config: withoutSniProxy });
    open.push(await EchoServer.start(plan, ECHO_PORT));
  });
  after(async () => {
    closeAll(open);
    await downLab(NAME);
    await removeDir(dir);
  });

  it('after the TTL, an established connection keeps working while a new one is dropped; a fresh answer reopens it (TIME-03)', async () => {
    const site = siteFor(plan, 'short.example.com');
    assert.ok(site);
    const addr = { 4: site.ipv4[0]!, 6: site.ipv6[0]! };
    await Promise.all(
      FAMILIES.map(async (f) => {
        const d = await dig(plan, PAY, 'short.example.com', qtype(f));
        assert.deepEqual(d.addresses, [addr[f]], d.raw);
        assert.ok(await hasElement(plan, src(f), addr[f], ECHO_PORT), `IPv${f} element learned`);
        const conn = await HeldConnection.open(plan, PAY, addr[f], ECHO_PORT);
        open.push(conn);
        assert.ok(await conn.ping(), `IPv${f}: the new connection echoes`);

        await waitFor(
          `the IPv${f} element of short.example.com to expire`,
          async () => !(await hasElement(plan, src(f), addr[f], ECHO_PORT)),
          { timeoutMs: EXPIRY_DEADLINE_MS, intervalMs: 500 },
        );
        assert.ok(await conn.ping(), `IPv${f}: the established connection still passes after expiry`);
        assert.equal(
          await tcpConnects(plan, PAY, addr[f], ECHO_PORT),
          false,
          `IPv${f}: a new connection after expiry is dropped`,
        );
        assertDropped(
          await http(plan, PAY, 'short.example.com', { family: f, via: addr[f], ...DROP }),
          `IPv${f}: https to the expired address`,
        );
        assert.ok(await conn.ping(), `IPv${f}: the established connection still passes`);

        // A fresh answer opens the address again.
        const again = await dig(plan, PAY, 'short.example.com', qtype(f));
        assert.deepEqual(again.addresses, [addr[f]]);
        assert.ok(await hasElement(plan, src(f), addr[f], ECHO_PORT), `IPv${f} element learned again`);
        assert.equal(
          await tcpConnects(plan, PAY, addr[f], ECHO_PORT, 5),
          true,
          `IPv${f}: new connections pass again`,
        );
        assertServed(
          await http(plan, PAY, 'short.example.com', { family: f }),
          'short.example.com',
          `IPv${f}: https://short.example.com`,
        );
        conn.close();
      }),
    );
  });

  it('an address change through DNS is followed: the new address works, the old one stops after expiry (TIME-05)', async () => {
    const site = siteFor(plan, 'moving.example.com');
    assert.ok(site);
    const old = { 4: site.ipv4[0]!, 6: site.ipv6[0]! };
    const moved = { 4: site.spare4[0]!, 6: site.spare6[0]! };
    // A short TTL first, so the old address expires within seconds once the name moves.
    await setAddresses(plan, 'moving.example.com', { ipv4: [old[4]], ipv6: [old[6]], ttl: 5 });
    await Promise.all(
      FAMILIES.map(async (f) => {
        const d = await dig(plan, PAY, 'moving.example.com', qtype(f));
        assert.deepEqual(d.addresses, [old[f]], d.raw);
        const r = await http(plan, PAY, 'moving.example.com', { family: f });
        assertServed(r, 'moving.example.com', `IPv${f} before the move`);
        assert.equal(r.remoteIp, old[f]);
      }),
    );

    await setAddresses(plan, 'moving.example.com', { ipv4: [moved[4]], ipv6: [moved[6]], ttl: 5 });
    await Promise.all(
      FAMILIES.map(async (f) => {
        const d = await dig(plan, PAY, 'moving.example.com', qtype(f));
        assert.deepEqual(d.addresses, [moved[f]], `IPv${f}: the new answer (${d.raw})`);
        assert.ok(await hasElement(plan, src(f), moved[f], 443), `IPv${f}: the new address learned`);
        const r = await http(plan, PAY, 'moving.example.com', { family: f });
        assertServed(r, 'moving.example.com', `IPv${f} after the move`);
        assert.equal(r.remoteIp, moved[f], `IPv${f}: connected to the new address`);

        await waitFor(
          `the IPv${f} element of the old address to expire`,
          async () => !(await hasElement(plan, src(f), old[f], 443)),
          { timeoutMs: EXPIRY_DEADLINE_MS, intervalMs: 500 },
        );
        assertDropped(
          await http(plan, PAY, 'moving.example.com', { family: f, via: old[f], ...DROP }),
          `IPv${f}: a new connection to the old address`,
        );
        // The new address keeps working as long as answers keep coming.
        await dig(plan, PAY, 'moving.example.com', qtype(f));
        const still = await http(plan, PAY, 'moving.example.com', { family: f });
        assertServed(still, 'moving.example.com', `IPv${f}: the new address after a fresh answer`);
        assert.equal(still.remoteIp, moved[f]);
      }),
    );
  });
});
