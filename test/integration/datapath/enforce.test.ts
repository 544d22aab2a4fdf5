/**
 * The nftables datapath against the real kernel, in namespaces: learned elements open exactly
 * (source, destination, protocol, port) and nothing else; IPv4 and IPv6; Audit passes and
 * counts; DNS to any address is redirected to the proxy.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AllowElement, StaticState } from '../../../src/datapath/datapath.ts';
import type { DropCount } from '../../../src/datapath/metrics.ts';
import { waitFor } from '../netns.ts';
import {
  A4,
  A6,
  B4,
  DriverClient,
  OTHER_RESOLVER,
  probe,
  S4,
  S4b,
  S6,
  S6b,
  startServer,
  topology,
} from './topology.ts';

const STATE: StaticState = {
  sources: [
    { ip: A4, mode: 'Enforce' },
    { ip: A6, mode: 'Enforce' },
    { ip: B4, mode: 'Audit' },
  ],
  cidrs: [],
  verify: [],
};

function el(
  source: string,
  destination: string,
  protocol: 'TCP' | 'UDP',
  from: number,
  to = from,
): AllowElement {
  return { source, destination, protocol, portFrom: from, portTo: to, timeoutMs: 60_000 };
}

for (const executorKind of ['addon', 'spawn'] as const) {
  test(`enforce, audit and DNS redirect (${executorKind} executor)`, async (t) => {
    const topo = await topology(t);
    await startServer(topo.inet, 'inet', [80, 443, 8443, 5000, 5005, 5010, 53]);
    await startServer(topo.router, 'proxy', [5353]);
    const dp = await DriverClient.start(topo.router, { executorKind });
    t.after(() => dp.close());
    await dp.call('reconcile', STATE);
    await dp.call('learn', [
      el(A4, S4, 'TCP', 443),
      el(A4, S4, 'TCP', 5000, 5005),
      el(A4, S4, 'UDP', 8443),
      el(A6, S6, 'TCP', 443),
    ]);

    await t.test('allowed element: TCP connect works', async () => {
      assert.equal((await probe(topo.podA, 'tcp', S4, 443)).result, 'ok');
    });
    await t.test('IP not learned is dropped and counted', async () => {
      assert.equal((await probe(topo.podA, 'tcp', S4b, 443, 800)).result, 'timeout');
      const drops = await dp.call<DropCount[]>('readDrops');
      const a = drops.find((d) => d.source === A4);
      assert.ok(a && a.packets > 0 && a.mode === 'Enforce', JSON.stringify(drops));
    });
    await t.test('wrong port is dropped', async () => {
      assert.equal((await probe(topo.podA, 'tcp', S4, 80, 800)).result, 'timeout');
    });
    await t.test('port range: inside passes, outside drops', async () => {
      assert.equal((await probe(topo.podA, 'tcp', S4, 5000)).result, 'ok');
      assert.equal((await probe(topo.podA, 'tcp', S4, 5005)).result, 'ok');
      assert.equal((await probe(topo.podA, 'tcp', S4, 5010, 800)).result, 'timeout');
    });
    await t.test('UDP vs TCP: each only as learned', async () => {
      assert.equal((await probe(topo.podA, 'udp', S4, 8443)).result, 'ok');
      assert.equal((await probe(topo.podA, 'tcp', S4, 8443, 800)).result, 'timeout');
      // QUIC (UDP 443) to a destination learned for TCP 443 only.
      assert.equal((await probe(topo.podA, 'udp', S4, 443, 800)).result, 'timeout');
    });
    await t.test('IPv6 the same', async () => {
      assert.equal((await probe(topo.podA, 'tcp', S6, 443)).result, 'ok');
      assert.equal((await probe(topo.podA, 'tcp', S6b, 443, 800)).result, 'timeout');
      assert.equal((await probe(topo.podA, 'tcp', S6, 80, 800)).result, 'timeout');
    });
    await t.test('ungoverned source is untouched', async () => {
      // podB's IPv6 address is not governed at all.
      assert.equal((await probe(topo.podB, 'tcp', S6b, 80)).result, 'ok');
    });
    await t.test('Audit source passes and is counted', async () => {
      assert.equal((await probe(topo.podB, 'tcp', S4b, 80)).result, 'ok');
      const b = await waitFor('audit counter', async () =>
        (await dp.call<DropCount[]>('readDrops')).find((d) => d.source === B4 && d.packets > 0),
      );
      assert.equal(b.mode, 'Audit');
      const rules = await topo.router.run(['nft', 'list', 'chain', 'inet', 'namegate', 'audit_deny']);
      assert.match(rules, /log prefix "namegate-audit "/);
    });
    await t.test('DNS to any address (UDP and TCP 53) goes to the proxy', async () => {
      for (const proto of ['udp', 'tcp'] as const) {
        // A resolver nobody serves, and one the internet namespace does serve: both reach the proxy.
        for (const host of [OTHER_RESOLVER, S4]) {
          const r = await probe(topo.podA, proto, host, 53);
          assert.equal(r.result, 'ok', `${proto} ${host}`);
          assert.match(r.reply ?? '', /^proxy:/, `${proto} ${host}`);
        }
      }
      // An ungoverned source's DNS is not redirected.
      const r = await probe(topo.podB, 'udp', S6, 53);
      assert.match(r.reply ?? '', /^inet:/);
    });
    await t.test('ICMP and TCP 853 do not escape', async () => {
      const ping = await topo.podA.exec(['ping', '-c1', '-W1', S4]).catch(() => ({ code: 1 }));
      assert.notEqual(ping.code, 0);
      assert.equal((await probe(topo.podA, 'tcp', S4, 853, 800)).result, 'timeout');
    });
  });
}

test('DNS by dnat to an address; a family without an address fails closed', async (t) => {
  const topo = await topology(t);
  await startServer(topo.router, 'proxy', [5353]);
  await startServer(topo.inet, 'inet', [53]);
  const dp = await DriverClient.start(topo.router, {
    config: { dns: { kind: 'dnat', port: 5353, ipv4: '10.0.1.254', ipv6: null } },
  });
  t.after(() => dp.close());
  await dp.call('reconcile', STATE);
  for (const proto of ['udp', 'tcp'] as const) {
    const r = await probe(topo.podA, proto, OTHER_RESOLVER, 53);
    assert.match(r.reply ?? '', /^proxy:/, proto);
  }
  assert.equal((await probe(topo.podA, 'udp', S6, 53, 800)).result, 'timeout');
});
