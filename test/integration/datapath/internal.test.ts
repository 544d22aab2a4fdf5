/**
 * Cluster-internal destinations (config.internalCidrs) against the real kernel, in namespaces:
 * a governed source reaches them without learning (Enforce and Audit, IPv4 and IPv6, nothing
 * counted), and still cannot reach a non-internal address it did not learn; DNS to an internal
 * address is still redirected to the proxy while verify ports to one are not; revoking a grant
 * there ends no flow; an in-cluster flow towards an Enforce source survives a lost conntrack
 * entry; and a changed list is applied by difference, learned elements untouched.
 *
 * podB's network (10.0.2.0/24, fd00:2::/64) plays the pod CIDR, 203.0.113.11 a service.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AllowElement, StaticState } from '../../../src/datapath/datapath.ts';
import type { DropCount } from '../../../src/datapath/metrics.ts';
import type { ReconcileSummary } from '../../../src/datapath/nft-driver.ts';
import { waitFor } from '../netns.ts';
import {
  A4,
  A6,
  B4,
  B6,
  DriverClient,
  probe,
  S4,
  S4b,
  S4c,
  S6,
  S6b,
  Session,
  startServer,
  topology,
} from './topology.ts';

const INTERNAL = ['10.0.2.0/24', 'fd00:2::/64', `${S4b}/32`];
const VERIFY_PORT = 8443;

const STATE: StaticState = {
  sources: [
    { ip: A4, mode: 'Enforce' },
    { ip: A6, mode: 'Enforce' },
    { ip: B4, mode: 'Audit' },
  ],
  cidrs: [],
  verify: [
    { source: A4, protocol: 'TCP', portFrom: 443, portTo: 443 },
    { source: A6, protocol: 'TCP', portFrom: 443, portTo: 443 },
  ],
};

function el(source: string, destination: string, port: number): AllowElement {
  return { source, destination, protocol: 'TCP', portFrom: port, portTo: port, timeoutMs: 120_000 };
}

async function drops(dp: DriverClient, source: string): Promise<number> {
  const all = await dp.call<DropCount[]>('readDrops');
  return all.filter((d) => d.source === source).reduce((n, d) => n + d.packets, 0);
}

test('internal destinations are reached without learning; everything else stays governed', async (t) => {
  const topo = await topology(t);
  await startServer(topo.podB, 'podb', [80, 7000]);
  await startServer(topo.podA, 'poda', [7100]);
  await startServer(topo.inet, 'inet', [80, 443, 7000]);
  await startServer(topo.router, 'proxy', [5353, VERIFY_PORT]);
  const dp = await DriverClient.start(topo.router, {
    config: { internalCidrs: INTERNAL, verifyPort: VERIFY_PORT },
  });
  t.after(() => dp.close());
  const first = await dp.call<ReconcileSummary>('reconcile', STATE);
  assert.ok(
    first.elementChanges.some((c) => c.set === 'internal4' && c.added === 2),
    JSON.stringify(first.elementChanges),
  );

  await t.test(
    'Enforce source: internal destinations pass, IPv4 and IPv6, TCP and UDP, uncounted',
    async () => {
      for (const [host, proto, port] of [
        [B4, 'tcp', 80],
        [B4, 'udp', 7000],
        [B6, 'tcp', 80],
        [B6, 'udp', 7000],
      ] as const) {
        const r = await probe(topo.podA, proto, host, port);
        assert.equal(r.result, 'ok', `${proto} ${host}:${port}`);
        assert.match(r.reply ?? '', /^podb:/);
      }
      // A /32 "service" in the internet namespace, on a verify port: not sent to the SNI proxy.
      const svc = await probe(topo.podA, 'tcp', S4b, 443);
      assert.equal(svc.result, 'ok');
      assert.match(svc.reply ?? '', /^inet:/, 'verify ports to internal destinations are not redirected');
      assert.equal(await drops(dp, A4), 0, 'internal traffic is not counted as a drop');
      assert.equal(await drops(dp, A6), 0);
    },
  );

  await t.test('Enforce source: a non-internal destination it did not learn is still dropped', async () => {
    assert.equal((await probe(topo.podA, 'tcp', S4, 80, 800)).result, 'timeout');
    assert.equal((await probe(topo.podA, 'tcp', S4c, 7000, 800)).result, 'timeout');
    assert.equal((await probe(topo.podA, 'udp', S4, 7000, 800)).result, 'timeout');
    assert.equal((await probe(topo.podA, 'tcp', S6, 80, 800)).result, 'timeout');
    assert.equal((await probe(topo.podA, 'tcp', S6b, 80, 800)).result, 'timeout');
    assert.ok((await drops(dp, A4)) > 0, 'counted');
    // ... and once learned it passes, the verify port of a non-internal address is redirected.
    await dp.call('learn', [el(A4, S4, 80), el(A6, S6, 80)]);
    assert.match((await probe(topo.podA, 'tcp', S4, 80)).reply ?? '', /^inet:/);
    assert.match((await probe(topo.podA, 'tcp', S6, 80)).reply ?? '', /^inet:/);
    assert.match((await probe(topo.podA, 'tcp', S4, 443)).reply ?? '', /^proxy:/, 'SNI redirect kept');
  });

  await t.test('DNS to an internal address is still redirected to the proxy', async () => {
    for (const proto of ['udp', 'tcp'] as const) {
      for (const host of [B4, S4b, B6]) {
        const r = await probe(topo.podA, proto, host, 53);
        assert.equal(r.result, 'ok', `${proto} ${host}`);
        assert.match(r.reply ?? '', /^proxy:/, `${proto} ${host}`);
      }
    }
  });

  await t.test('Audit source: internal passes uncounted, the rest is counted (and passes)', async () => {
    const r = await probe(topo.podB, 'tcp', S4b, 80);
    assert.match(r.reply ?? '', /^inet:/);
    assert.equal(await drops(dp, B4), 0, 'internal traffic of an Audit source is not a would-be drop');
    assert.match((await probe(topo.podB, 'tcp', S4, 80)).reply ?? '', /^inet:/);
    await waitFor('the audit counter', async () => (await drops(dp, B4)) > 0);
  });

  await t.test('revoking a grant to an internal destination ends no flow; elsewhere it does', async () => {
    await dp.call('learn', [el(A4, B4, 7000), el(A4, S4, 7000)]);
    const internal = await Session.open(topo.podA, B4, 7000);
    t.after(() => internal.close());
    const outside = await Session.open(topo.podA, S4, 7000);
    t.after(() => outside.close());
    assert.equal((await internal.ping()).result, 'ok');
    assert.equal((await outside.ping()).result, 'ok');
    const key = (dst: string) => ({
      source: A4,
      destination: dst,
      protocol: 'TCP',
      portFrom: 7000,
      portTo: 7000,
    });
    await dp.call('forget', [key(B4), key(S4)]);
    assert.equal((await internal.ping()).result, 'ok', 'the in-cluster flow goes on');
    assert.notEqual((await outside.ping(800)).result, 'ok', 'the revoked flow to the internet ends');
  });

  await t.test('an in-cluster flow towards an Enforce source survives a lost conntrack entry', async () => {
    // podB (internal) talks to a server on podA (Enforce). The entry goes; podB's next segment is
    // a mid-stream pickup, which namegate drops only for peers outside the internal ranges.
    const s = await Session.open(topo.podB, A4, 7100);
    t.after(() => s.close());
    assert.equal((await s.ping()).result, 'ok');
    await topo.router.run(['conntrack', '-D', '-p', 'tcp', '-s', B4, '-d', A4, '--dport', '7100']);
    const r = await s.ping();
    assert.equal(r.result, 'ok', JSON.stringify(r));
    assert.match(r.reply ?? '', /^poda:/);
  });

  await t.test('a changed list is applied by difference; learned elements stay', async () => {
    const learnedBefore = await dp.call<AllowElement[]>('listLearned');
    assert.ok(learnedBefore.some((e) => e.destination === S4 && e.portFrom === 80));
    await dp.close();
    // A new agent with another list: podB's IPv4 network and the /32 go, S4c comes.
    const next = await DriverClient.start(topo.router, {
      config: { internalCidrs: ['fd00:2::/64', `${S4c}/32`], verifyPort: VERIFY_PORT },
    });
    t.after(() => next.close());
    const summary = await next.call<ReconcileSummary>('reconcile', STATE);
    assert.equal(summary.createdTable, false);
    assert.deepEqual(summary.recreatedSets, []);
    assert.deepEqual(summary.rebuiltSets, []);
    assert.deepEqual(
      summary.elementChanges.map((c) => [c.set, c.added, c.removed]),
      [['internal4', 1, 2]],
    );
    const set = await topo.router.run(['nft', 'list', 'set', 'inet', 'namegate', 'internal4']);
    assert.match(set, new RegExp(`elements = \\{ ${S4c.replaceAll('.', '\\.')} \\}`));
    const learnedAfter = await next.call<AllowElement[]>('listLearned');
    assert.deepEqual(
      learnedAfter.map((e) => `${e.source}>${e.destination}:${e.portFrom}`).sort(),
      learnedBefore.map((e) => `${e.source}>${e.destination}:${e.portFrom}`).sort(),
      'learned elements survive the new list',
    );
    assert.equal((await probe(topo.podA, 'tcp', B4, 80, 800)).result, 'timeout', 'no longer internal');
    assert.match((await probe(topo.podA, 'tcp', S4c, 7000)).reply ?? '', /^inet:/, 'newly internal');
    assert.match((await probe(topo.podA, 'tcp', B6, 80)).reply ?? '', /^podb:/, 'IPv6 unchanged');
    assert.match((await probe(topo.podA, 'tcp', S4, 80)).reply ?? '', /^inet:/, 'learned still passes');
    // Control for the mid-stream exemption: podB is no longer internal, so the same pickup is
    // dropped now (podB is an Audit source: its SYN passes and is counted).
    const s = await Session.open(topo.podB, A4, 7100);
    t.after(() => s.close());
    assert.equal((await s.ping()).result, 'ok');
    await topo.router.run(['conntrack', '-D', '-p', 'tcp', '-s', B4, '-d', A4, '--dport', '7100']);
    assert.notEqual((await s.ping()).result, 'ok', 'a pickup from outside the internal ranges is dropped');
    // The same list again: nothing to do.
    assert.deepEqual((await next.call<ReconcileSummary>('reconcile', STATE)).elementChanges, []);
  });
});
