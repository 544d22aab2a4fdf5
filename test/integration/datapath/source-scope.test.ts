/**
 * Source CIDRs and anti-spoofing against the real kernel (L3-05, K8S-04). The router governs
 * 10.0.0.0/16 and fd00::/16 (both pods' networks): podA (10.0.1.1, fd00:1::1) is governed in
 * Enforce, podB (10.0.2.1, fd00:2::1) is known and ungoverned, podB's /24 is internal.
 *
 * - a known ungoverned source passes untouched (traffic, and DNS to its own resolver);
 * - any other address of the source CIDRs (podA claims 10.0.1.99 and fd00:1::99) gets no grants:
 *   dropped and counted (`unknown`), its DNS redirected to the proxy, what podA learned does not
 *   help it; internal destinations and DNS to a known address of the node pass;
 * - antiSpoof: a pod that sends with another pod's address (podA as 10.0.2.1 or fd00:2::1, podB
 *   as podA's governed 10.0.1.1) is dropped before conntrack and counted (`spoofed`); the node's
 *   own traffic over loopback from an address inside the CIDRs is untouched;
 * - the ungoverned list and the source CIDRs change by difference (no set recreated, counters
 *   kept); without source CIDRs the old behaviour is back (an unknown address is not governed).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { StaticState } from '../../../src/datapath/datapath.ts';
import type { DropCount, SourceDrops } from '../../../src/datapath/metrics.ts';
import type { ReconcileSummary } from '../../../src/datapath/nft-driver.ts';
import { waitFor } from '../netns.ts';
import {
  A4,
  A6,
  B4,
  B6,
  DriverClient,
  OTHER_RESOLVER,
  probe,
  S4,
  S6,
  startServer,
  topology,
} from './topology.ts';

const SCOPE = ['10.0.0.0/16', 'fd00::/16'];
const CONFIG = { sourceCidrs: SCOPE, internalCidrs: ['10.0.2.0/24', 'fd00:2::/64'] };
/** Addresses of podA's subnets that no identity knows. */
const U4 = '10.0.1.99';
const U6 = 'fd00:1::99';

const STATE: StaticState = {
  sources: [
    { ip: A4, mode: 'Enforce' },
    { ip: A6, mode: 'Enforce' },
  ],
  cidrs: [],
  verify: [],
  ungoverned: [B4, B6],
};

test('source CIDRs: unknown addresses get nothing, spoofed ones are dropped, known ones as before', async (t) => {
  const topo = await topology(t);
  await topo.podA.addAddress('eth0', `${U4}/24`);
  await topo.podA.addAddress('eth0', `${U6}/64`);
  await startServer(topo.inet, 'inet', [53, 80, 443, 5011]);
  await startServer(topo.router, 'proxy', [5353]);
  await startServer(topo.podB, 'podB', [53, 7000]);

  let dp = await DriverClient.start(topo.router, { config: CONFIG });
  t.after(() => dp.close());
  const first = await dp.call<ReconcileSummary>('reconcile', STATE);
  assert.ok(first.createdTable);
  assert.ok(!first.newlyGoverned.includes(B4), 'the known ungoverned pod is not redirected');
  const drops = () => dp.call<SourceDrops>('sourceDrops');
  await dp.call('learn', [
    { source: A4, destination: S4, protocol: 'TCP', portFrom: 443, portTo: 443, timeoutMs: 120_000 },
    { source: A6, destination: S6, protocol: 'TCP', portFrom: 443, portTo: 443, timeoutMs: 120_000 },
  ]);

  await t.test('a known ungoverned source passes untouched: traffic and its own DNS', async () => {
    assert.equal((await probe(topo.podB, 'tcp', S4, 80)).result, 'ok');
    assert.equal((await probe(topo.podB, 'tcp', S6, 443)).result, 'ok');
    assert.match((await probe(topo.podB, 'udp', S4, 53)).reply ?? '', /^inet:/, 'not redirected');
    assert.equal((await drops()).unknown, 0);
  });

  await t.test('the governed source keeps what it learned and nothing else', async () => {
    assert.equal((await probe(topo.podA, 'tcp', S4, 443, 1500, A4)).result, 'ok');
    assert.equal((await probe(topo.podA, 'tcp', S4, 80, 800, A4)).result, 'timeout');
    assert.match((await probe(topo.podA, 'udp', OTHER_RESOLVER, 53, 1500, A4)).reply ?? '', /^proxy:/);
  });

  await t.test(
    'L3-05: an address of the subnet no identity knows gets no grants (IPv4 and IPv6)',
    async () => {
      const before = await drops();
      // What podA learned is per address: its other address gets none of it.
      assert.equal((await probe(topo.podA, 'tcp', S4, 443, 800, U4)).result, 'timeout');
      assert.equal((await probe(topo.podA, 'tcp', S4, 80, 800, U4)).result, 'timeout');
      assert.equal((await probe(topo.podA, 'udp', S4, 5011, 800, U4)).result, 'timeout');
      assert.equal((await probe(topo.podA, 'tcp', S6, 443, 800, U6)).result, 'timeout');
      const after = await waitFor('unknown drops counted', async () => {
        const d = await drops();
        return d.unknown >= before.unknown + 4 ? d : undefined;
      });
      assert.equal(after.spoofed, before.spoofed, 'not a spoof: the route back uses the same link');
      // Counted in its own counter, never as a per-source label (bounded).
      const rows = await dp.call<DropCount[]>('readDrops');
      assert.ok(!rows.some((r) => r.source === U4 || r.source === U6), JSON.stringify(rows));
    },
  );

  await t.test(
    'K8S-04: its DNS goes to the proxy (which refuses unknown sources), never elsewhere',
    async () => {
      assert.match((await probe(topo.podA, 'udp', OTHER_RESOLVER, 53, 1500, U4)).reply ?? '', /^proxy:/);
      assert.match((await probe(topo.podA, 'tcp', S4, 53, 1500, U4)).reply ?? '', /^proxy:/);
      assert.match((await probe(topo.podA, 'udp', S6, 53, 1500, U6)).reply ?? '', /^proxy:/);
    },
  );

  await t.test('internal destinations pass; DNS to a known address is not redirected', async () => {
    assert.match((await probe(topo.podA, 'tcp', B4, 7000, 1500, U4)).reply ?? '', /^podB:/);
    assert.match((await probe(topo.podA, 'tcp', B6, 7000, 1500, U6)).reply ?? '', /^podB:/);
    // Another node's pod asking a DNS server pod of this node keeps its destination.
    assert.match((await probe(topo.podA, 'udp', B4, 53, 1500, U4)).reply ?? '', /^podB:/);
  });

  const conntrack = async (src: string, port: number): Promise<string> =>
    (
      await topo.router.exec([
        'conntrack',
        '-L',
        '-f',
        src.includes(':') ? 'ipv6' : 'ipv4',
        '-s',
        src,
        '-p',
        'udp',
        '--dport',
        String(port),
      ])
    ).stdout;

  const forgetFlows = async (src: string, port: number): Promise<void> => {
    const family = src.includes(':') ? 'ipv6' : 'ipv4';
    // Exit 1 when there was nothing to delete.
    await topo.router.exec([
      'conntrack',
      '-D',
      '-f',
      family,
      '-s',
      src,
      '-p',
      'udp',
      '--dport',
      String(port),
    ]);
  };

  await t.test(
    "antiSpoof: another pod's address from the wrong link is dropped before conntrack",
    async () => {
      await topo.podA.addAddress('eth0', `${B4}/32`);
      await topo.podA.addAddress('eth0', `${B6}/128`);
      await topo.podB.addAddress('eth0', `${A4}/32`);
      const before = await drops();
      // podA as the ungoverned podB (which may reach everything), and podB as the governed podA
      // (which learned S4:443).
      assert.equal((await probe(topo.podA, 'udp', S4, 5011, 800, B4)).result, 'timeout');
      assert.equal((await probe(topo.podA, 'udp', S6, 5011, 800, B6)).result, 'timeout');
      assert.equal((await probe(topo.podB, 'tcp', S4, 443, 800, A4)).result, 'timeout');
      const after = await waitFor('spoofed drops counted', async () => {
        const d = await drops();
        return d.spoofed >= before.spoofed + 3 ? d : undefined;
      });
      assert.equal(after.unknown, before.unknown, 'dropped in prerouting, never reached forward');
      assert.doesNotMatch(await conntrack(B4, 5011), /dport=5011/, 'no conntrack entry: dropped at raw');
      assert.doesNotMatch(await conntrack(B6, 5011), /dport=5011/);
      // The real owners are unaffected.
      assert.equal((await probe(topo.podB, 'udp', S4, 5011, 1500, B4)).result, 'ok');
      assert.equal((await probe(topo.podA, 'tcp', S4, 443, 1500, A4)).result, 'ok');
    },
  );

  await t.test("the node's own traffic from an address inside the source CIDRs is untouched", async () => {
    const before = await drops();
    const r = await topo.router.exec(['ping', '-c', '1', '-W', '2', '-I', '10.0.1.254', '10.0.2.254']);
    assert.equal(r.code, 0, r.stderr);
    const r6 = await topo.router.exec(['ping', '-6', '-c', '1', '-W', '2', '-I', 'fd00:1::fe', 'fd00:2::fe']);
    assert.equal(r6.code, 0, r6.stderr);
    assert.deepEqual(await drops(), before);
  });

  await t.test(
    'the ungoverned list changes by difference: a pod that leaves is unknown at once',
    async () => {
      const gone: StaticState = { ...STATE, ungoverned: [B6] };
      const r = await dp.call<ReconcileSummary>('reconcile', gone);
      assert.deepEqual(
        r.elementChanges.map((c) => [c.set, c.added, c.removed]),
        [['ungoverned4', 0, 1]],
      );
      assert.deepEqual(r.recreatedSets, []);
      assert.deepEqual(r.newlyGoverned, [B4], 'its DNS conntrack entries are flushed (K8S-05)');
      assert.equal((await probe(topo.podB, 'tcp', S4, 80, 800)).result, 'timeout');
      assert.match((await probe(topo.podB, 'udp', OTHER_RESOLVER, 53, 1500)).reply ?? '', /^proxy:/);
      assert.equal(
        (await probe(topo.podB, 'tcp', S6, 443, 1500)).result,
        'ok',
        'its IPv6 address is still known',
      );
      const back = await dp.call<ReconcileSummary>('reconcile', STATE);
      assert.deepEqual(
        back.elementChanges.map((c) => [c.set, c.added, c.removed]),
        [['ungoverned4', 1, 0]],
      );
      assert.equal((await probe(topo.podB, 'tcp', S4, 80)).result, 'ok');
      const again = await dp.call<ReconcileSummary>('reconcile', STATE);
      assert.deepEqual(again.elementChanges, []);
      assert.deepEqual(again.newlyGoverned, []);
    },
  );

  await t.test('the source CIDRs change by difference; counters and learned elements are kept', async () => {
    const counted = await drops();
    await dp.close();
    dp = await DriverClient.start(topo.router, { config: { ...CONFIG, sourceCidrs: ['10.0.1.0/24'] } });
    const r = await dp.call<ReconcileSummary>('reconcile', STATE);
    assert.deepEqual(
      r.elementChanges.map((c) => [c.set, c.added, c.removed]),
      [
        ['scope4', 1, 1],
        ['scope6', 0, 1],
      ],
    );
    assert.deepEqual(r.recreatedSets, []);
    assert.deepEqual(r.rebuiltSets, []);
    const kept = await drops();
    assert.ok(kept.unknown >= counted.unknown && kept.spoofed >= counted.spoofed, JSON.stringify(kept));
    assert.equal((await probe(topo.podA, 'tcp', S4, 443, 1500, A4)).result, 'ok', 'learned element kept');
    assert.equal((await probe(topo.podA, 'tcp', S4, 80, 800, U4)).result, 'timeout', 'still in scope');
    // fd00::/16 is no longer listed: the IPv6 address is not governed any more, nor checked.
    assert.equal((await probe(topo.podA, 'tcp', S6, 80, 1500, U6)).result, 'ok');
    await forgetFlows(B6, 5011);
    assert.equal((await probe(topo.podA, 'udp', S6, 5011, 1500, B6)).result, 'timeout', 'reply goes to podB');
    assert.match(await conntrack(B6, 5011), /dport=5011/, 'no longer checked: it reached conntrack');
  });

  await t.test(
    'antiSpoof off: a spoofed packet reaches conntrack (the check is what stopped it)',
    async () => {
      await dp.close();
      dp = await DriverClient.start(topo.router, { config: { ...CONFIG, antiSpoof: false } });
      await dp.call('reconcile', STATE);
      const status = await topo.router.run(['nft', 'list', 'table', 'inet', 'namegate']);
      assert.doesNotMatch(status, /chain filter_prerouting|fib saddr/);
      await forgetFlows(B4, 5011);
      await probe(topo.podA, 'udp', S4, 5011, 800, B4);
      assert.match(await conntrack(B4, 5011), /dport=5011/);
    },
  );

  await t.test(
    'without source CIDRs the old behaviour is back: unknown addresses are not governed',
    async () => {
      await dp.close();
      dp = await DriverClient.start(topo.router, { config: { internalCidrs: CONFIG.internalCidrs } });
      const r = await dp.call<ReconcileSummary>('reconcile', STATE);
      assert.deepEqual(r.recreatedSets, []);
      const table = await topo.router.run(['nft', 'list', 'table', 'inet', 'namegate']);
      assert.doesNotMatch(table, /chain (nat_unknown|unknown_deny|filter_prerouting)/);
      assert.equal((await probe(topo.podA, 'tcp', S4, 80, 1500, U4)).result, 'ok');
      assert.equal(
        (await probe(topo.podA, 'tcp', S4, 80, 800, A4)).result,
        'timeout',
        'the governed pod still is',
      );
    },
  );
});
