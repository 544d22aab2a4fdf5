/**
 * Governed sources as CIDR groups (the gateway case), against the real kernel: a /24 Enforce
 * group with a /32 Audit host and a /32 Enforce host (with rules of its own) inside it, and an
 * ungoverned /32 carved out. Longest prefix decides the mode and which CIDR allows apply; drop
 * counters count per owned range; learning stays per address; DNS conntrack of a newly governed
 * CIDR is flushed; a second reconcile with the same state changes nothing.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseCidr } from '../../../src/core/ip.ts';
import type { StaticState } from '../../../src/datapath/datapath.ts';
import type { DropCount } from '../../../src/datapath/metrics.ts';
import type { ReconcileSummary } from '../../../src/datapath/nft-driver.ts';
import { waitFor } from '../netns.ts';
import { DriverClient, OTHER_RESOLVER, probe, S4, S4c, S6, startServer, topology } from './topology.ts';

// podA carries several addresses of 10.0.1.0/24 and fd00:1::/64.
const H1 = '10.0.1.1'; // the /24 (Enforce)
const H2 = '10.0.1.2'; // its own /32, Audit
const H3 = '10.0.1.3'; // its own /32, Enforce, without the /24's CIDR allow
const H4 = '10.0.1.4'; // the /24
const H5 = '10.0.1.5'; // its own /32, which no policy governs
const V1 = 'fd00:1::1'; // the /64 (Enforce)
const V2 = 'fd00:1::2'; // its own /128, Audit

function cidr(text: string) {
  const c = parseCidr(text);
  if (typeof c === 'string') throw new Error(c);
  return c;
}

const STATE: StaticState = {
  sources: [
    { ip: '10.0.1.0/24', mode: 'Enforce' },
    { ip: '10.0.1.2/32', mode: 'Audit' },
    { ip: H3, mode: 'Enforce' },
    { ip: 'fd00:1::/64', mode: 'Enforce' },
    { ip: 'fd00:1::2/128', mode: 'Audit' },
  ],
  cidrs: [
    {
      source: '10.0.1.0/24',
      cidr: cidr('203.0.113.12/32'),
      except: [],
      protocol: 'TCP',
      portFrom: 5010,
      portTo: 5010,
    },
  ],
  verify: [],
  ungoverned: ['10.0.1.5/32'],
};

function rows(drops: DropCount[], source: string): DropCount[] {
  return drops.filter((d) => d.source === source);
}

function packets(drops: DropCount[], source: string): number {
  return rows(drops, source).reduce((n, d) => n + d.packets, 0);
}

test('CIDR sources: longest prefix wins, counters per range, learning per address', async (t) => {
  const topo = await topology(t);
  for (const a of ['10.0.1.2/24', '10.0.1.3/24', '10.0.1.4/24', '10.0.1.5/24', 'fd00:1::2/64'])
    await topo.podA.addAddress('eth0', a);
  await startServer(topo.inet, 'inet', [53, 80, 443, 5010]);
  await startServer(topo.router, 'proxy', [5353]);

  const dp = await DriverClient.start(topo.router);
  t.after(() => dp.close());
  // Another source first (the table, and with it conntrack, exist in the router namespace).
  await dp.call('reconcile', { sources: [{ ip: '10.0.2.0/24', mode: 'Enforce' }], cidrs: [], verify: [] });
  // Not governed yet: H4's DNS goes straight out and leaves a conntrack entry.
  assert.match((await probe(topo.podA, 'udp', S4, 53, 1500, H4)).reply ?? '', /^inet:/);
  const ctDns = ['conntrack', '-L', '-f', 'ipv4', '-s', H4, '-p', 'udp', '--dport', '53'];
  assert.match(await topo.router.run(ctDns), /dport=53/);

  const first = await dp.call<ReconcileSummary>('reconcile', STATE);
  assert.ok(first.newlyGoverned.includes('10.0.1.0/30'), JSON.stringify(first.newlyGoverned));
  assert.ok(!first.newlyGoverned.includes(H5), 'the ungoverned /32 is not governed');

  await t.test('the DNS conntrack entries of a newly governed CIDR are gone (K8S-05)', async () => {
    const after = await topo.router.exec(ctDns);
    assert.doesNotMatch(after.stdout, /dport=53/);
    const r = await probe(topo.podA, 'udp', OTHER_RESOLVER, 53, 1500, H4);
    assert.match(r.reply ?? '', /^proxy:/);
  });

  await t.test("the /24's CIDR allow applies to its own addresses only", async () => {
    assert.equal((await probe(topo.podA, 'tcp', S4c, 5010, 1500, H1)).result, 'ok');
    assert.equal((await probe(topo.podA, 'tcp', S4c, 5010, 1500, H4)).result, 'ok');
    // The /32 Enforce host has no CIDR allow of its own.
    assert.equal((await probe(topo.podA, 'tcp', S4c, 5010, 800, H3)).result, 'timeout');
  });

  await t.test('Enforce drops and counts per owned range; the Audit host passes and is counted', async () => {
    assert.equal((await probe(topo.podA, 'tcp', S4, 80, 800, H1)).result, 'timeout');
    assert.equal((await probe(topo.podA, 'tcp', S4, 80, 800, H3)).result, 'timeout');
    assert.equal((await probe(topo.podA, 'tcp', S4, 80, 1500, H2)).result, 'ok');
    // The Audit host is not covered by the /24's CIDR allow either: a would-be drop.
    assert.equal((await probe(topo.podA, 'tcp', S4c, 5010, 1500, H2)).result, 'ok');
    const drops = await waitFor('counters', async () => {
      const d = await dp.call<DropCount[]>('readDrops');
      return packets(d, '10.0.1.0/24') > 0 && packets(d, H2) > 0 && packets(d, H3) > 0 ? d : undefined;
    });
    assert.deepEqual(
      rows(drops, '10.0.1.0/24').map((d) => [d.range, d.mode]),
      [
        ['10.0.1.0-10.0.1.1', 'Enforce'],
        ['10.0.1.4', 'Enforce'],
        ['10.0.1.6-10.0.1.255', 'Enforce'],
      ],
    );
    assert.ok((rows(drops, '10.0.1.0/24')[0]?.packets ?? 0) > 0, JSON.stringify(drops));
    assert.deepEqual(
      rows(drops, H2).map((d) => [d.range, d.mode]),
      [[H2, 'Audit']],
    );
    assert.deepEqual(
      rows(drops, H3).map((d) => d.mode),
      ['Enforce'],
    );
  });

  await t.test('an ungoverned /32 inside the group is not governed at all', async () => {
    assert.equal((await probe(topo.podA, 'tcp', S4, 80, 1500, H5)).result, 'ok');
    assert.match((await probe(topo.podA, 'udp', S4, 53, 1500, H5)).reply ?? '', /^inet:/);
    const drops = await dp.call<DropCount[]>('readDrops');
    assert.ok(!drops.some((d) => d.range === H5), JSON.stringify(drops));
  });

  await t.test('IPv6: the /64 enforces, its /128 audits', async () => {
    assert.equal((await probe(topo.podA, 'tcp', S6, 443, 800, V1)).result, 'timeout');
    assert.equal((await probe(topo.podA, 'tcp', S6, 443, 1500, V2)).result, 'ok');
  });

  await t.test('learning is per address: another host of the group does not get it', async () => {
    await dp.call('learn', [
      { source: H1, destination: S4, protocol: 'TCP', portFrom: 443, portTo: 443, timeoutMs: 60_000 },
    ]);
    assert.equal((await probe(topo.podA, 'tcp', S4, 443, 1500, H1)).result, 'ok');
    assert.equal((await probe(topo.podA, 'tcp', S4, 443, 800, H4)).result, 'timeout');
  });

  await t.test('a second reconcile with the same state changes nothing (counters kept)', async () => {
    const before = await dp.call<DropCount[]>('readDrops');
    const again = await dp.call<ReconcileSummary>('reconcile', STATE);
    assert.deepEqual(again.elementChanges, []);
    assert.deepEqual(again.recreatedSets, []);
    assert.deepEqual(again.rebuiltSets, []);
    assert.deepEqual(again.newlyGoverned, []);
    const after = await dp.call<DropCount[]>('readDrops');
    for (const b of before) {
      const a = after.find((x) => x.range === b.range);
      assert.ok(a && a.packets >= b.packets, `${b.range}: ${JSON.stringify(a)}`);
    }
  });

  await t.test('the partition follows the state: without its /32 the host joins the /24', async () => {
    const merged: StaticState = { ...STATE, sources: STATE.sources.filter((s) => s.ip !== '10.0.1.2/32') };
    const r = await dp.call<ReconcileSummary>('reconcile', merged);
    assert.ok(r.elementChanges.length > 0);
    assert.equal((await probe(topo.podA, 'tcp', S4c, 5010, 1500, H2)).result, 'ok');
    assert.equal((await probe(topo.podA, 'tcp', S4, 80, 800, H2)).result, 'timeout');
    const again = await dp.call<ReconcileSummary>('reconcile', merged);
    assert.deepEqual(again.elementChanges, []);
    const enforce = await topo.router.run(['nft', 'list', 'set', 'inet', 'namegate', 'enforcenet4']);
    assert.match(enforce, /10\.0\.1\.0-10\.0\.1\.4\b/);
    assert.match(enforce, /10\.0\.1\.6-10\.0\.1\.255\b/);
  });
});
