/**
 * The datapath over time and failure: expiry vs established flows, refresh, restart (REL-01),
 * forget (conntrack), timeout 0, a full set (REL-07), overlapping port ranges, CIDR allows,
 * verify redirect, queue bound and the UDP/53 conntrack flush of a newly governed source.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseCidr } from '../../../src/core/ip.ts';
import type { AllowElement, StaticState } from '../../../src/datapath/datapath.ts';
import { type Netns, waitFor } from '../netns.ts';
import {
  A4,
  A6,
  B6,
  DriverClient,
  probe,
  S4,
  S4b,
  S4c,
  S6,
  Session,
  startServer,
  topology,
} from './topology.ts';

const BASE: StaticState = {
  sources: [
    { ip: A4, mode: 'Enforce' },
    { ip: A6, mode: 'Enforce' },
  ],
  cidrs: [],
  verify: [],
};

function el(
  destination: string,
  from: number,
  to = from,
  timeoutMs = 60_000,
  protocol: 'TCP' | 'UDP' = 'TCP',
): AllowElement {
  return {
    source: destination.includes(':') ? A6 : A4,
    destination,
    protocol,
    portFrom: from,
    portTo: to,
    timeoutMs,
  };
}

interface KElem {
  elem?: { val: { concat: unknown[] }; timeout?: number; expires?: number };
}

/** The allow4 elements as nft prints them: [text, timeout s, expires s]. */
async function kernelAllow(
  router: Netns,
): Promise<{ key: string; timeout: number | null; expires: number | null }[]> {
  const out = await router.run(['nft', '-j', 'list', 'set', 'inet', 'namegate', 'allow4']);
  const doc = JSON.parse(out) as { nftables: { set?: { elem?: KElem[] } }[] };
  const set = doc.nftables.find((x) => x.set)?.set;
  return (set?.elem ?? []).map((e) => ({
    key: JSON.stringify(e.elem?.val.concat ?? e),
    timeout: e.elem?.timeout ?? null,
    expires: e.elem?.expires ?? null,
  }));
}

function hasKey(list: { key: string }[], dst: string, port: number | [number, number]): boolean {
  const p = typeof port === 'number' ? port : { range: port };
  return list.some((e) => e.key === JSON.stringify([A4, dst, 'tcp', p]));
}

test('datapath lifecycle', async (t) => {
  const topo = await topology(t);
  await startServer(topo.inet, 'inet', [80, 443, 5000, 5005, 5010, 8443]);
  await startServer(topo.router, 'sni', [9443]);
  let dp = await DriverClient.start(topo.router, { config: { verifyPort: 9443 } });
  t.after(() => dp.close());
  await dp.call('reconcile', BASE);

  await t.test(
    'kernel: re-adding an element with a longer timeout refreshes it (6.18), in every learned set',
    async () => {
      const cases: [string, string, unknown[]][] = [
        ['allow4', '10.9.9.9 . 203.0.113.99 . tcp . 1', ['10.9.9.9', '203.0.113.99', 'tcp', 1]],
        ['allowall4', '10.9.9.9 . 203.0.113.99 . udp', ['10.9.9.9', '203.0.113.99', 'udp']],
        [
          'allowrange4',
          '10.9.9.9 . 203.0.113.99 . tcp . 10-20',
          ['10.9.9.9', '203.0.113.99', 'tcp', { range: [10, 20] }],
        ],
      ];
      for (const [set, text, val] of cases) {
        await topo.router.run(['nft', `add element inet namegate ${set} { ${text} timeout 3s }`]);
        await topo.router.run(['nft', `add element inet namegate ${set} { ${text} timeout 90s }`]);
        const out = JSON.parse(
          await topo.router.run(['nft', '-j', 'list', 'set', 'inet', 'namegate', set]),
        ) as {
          nftables: { set?: { elem?: KElem[] } }[];
        };
        const elems = out.nftables.find((x) => x.set)?.set?.elem ?? [];
        const e = elems.find((x) => JSON.stringify(x.elem?.val.concat) === JSON.stringify(val))?.elem;
        assert.ok(e && e.timeout === 90 && (e.expires ?? 0) > 60, `${set}: ${JSON.stringify(elems)}`);
        await topo.router.run(['nft', `delete element inet namegate ${set} { ${text} }`]);
      }
    },
  );

  await t.test('refresh through the driver extends expiry and never shortens it', async () => {
    await dp.call('learn', [el(S4c, 443, 443, 3_000)]);
    await dp.call('learn', [el(S4c, 443, 443, 120_000)]);
    let e = (await kernelAllow(topo.router)).find((x) => x.key === JSON.stringify([A4, S4c, 'tcp', 443]));
    assert.ok(e && (e.expires ?? 0) > 100, JSON.stringify(e));
    await dp.call('learn', [el(S4c, 443, 443, 2_000)]);
    e = (await kernelAllow(topo.router)).find((x) => x.key === JSON.stringify([A4, S4c, 'tcp', 443]));
    assert.ok(e && (e.expires ?? 0) > 100, `shortened: ${JSON.stringify(e)}`);
  });

  await t.test('timeout 0 never reaches the kernel', async () => {
    await dp.call('learn', [
      el(S4c, 7000, 7000, 0),
      el(S4c, 7001, 7001, -5),
      el(S4c, 7002, 7002, Number.NaN),
    ]);
    const list = await kernelAllow(topo.router);
    for (const port of [7000, 7001, 7002]) {
      const e = list.find((x) => x.key === JSON.stringify([A4, S4c, 'tcp', port]));
      assert.ok(e && e.timeout !== null && e.timeout > 0, JSON.stringify(e));
    }
  });

  await t.test('established flow outlives its element; a new connection is dropped', async () => {
    // The element lives long enough for the connection to open however slow the machine is;
    // once it is established, the element is swapped for one that expires in a second.
    await dp.call('learn', [el(S4, 443, 443, 60_000)]);
    const s = await Session.open(topo.podA, S4, 443);
    t.after(() => s.close());
    assert.equal((await s.ping()).result, 'ok');
    const elem = `${A4} . ${S4} . tcp . 443`;
    await topo.router.run(['nft', `delete element inet namegate allow4 { ${elem} }`]);
    await topo.router.run(['nft', `add element inet namegate allow4 { ${elem} timeout 1s }`]);
    await waitFor(
      'element expiry',
      async () => !hasKey(await kernelAllow(topo.router), S4, 443),
      15_000,
      100,
    );
    assert.equal((await s.ping()).result, 'ok');
    assert.equal((await probe(topo.podA, 'tcp', S4, 443, 800)).result, 'timeout');
  });

  await t.test('overlapping port ranges coexist; forget removes only its own ports', async () => {
    await dp.call('learn', [el(S4b, 5000, 5005)]);
    await dp.call('learn', [el(S4b, 5003, 5010)]);
    for (const port of [5000, 5005, 5010])
      assert.equal((await probe(topo.podA, 'tcp', S4b, port)).result, 'ok', `${port}`);
    await dp.call('forget', [
      { source: A4, destination: S4b, protocol: 'TCP', portFrom: 5000, portTo: 5005 },
    ]);
    assert.equal((await probe(topo.podA, 'tcp', S4b, 5000, 800)).result, 'timeout');
    assert.equal((await probe(topo.podA, 'tcp', S4b, 5005)).result, 'ok');
    assert.equal((await probe(topo.podA, 'tcp', S4b, 5010)).result, 'ok');
  });

  await t.test('forget ends an established flow (conntrack deleted)', async () => {
    await dp.call('learn', [el(S4b, 80)]);
    const s = await Session.open(topo.podA, S4b, 80);
    t.after(() => s.close());
    assert.equal((await s.ping()).result, 'ok');
    await dp.call('forget', [{ source: A4, destination: S4b, protocol: 'TCP', portFrom: 80, portTo: 80 }]);
    const ct = await topo.router.exec(['conntrack', '-L', '-s', A4, '-d', S4b, '-p', 'tcp', '--dport', '80']);
    assert.doesNotMatch(ct.stdout, /ESTABLISHED/);
    assert.notEqual((await s.ping(800)).result, 'ok');
    assert.equal((await probe(topo.podA, 'tcp', S4b, 80, 800)).result, 'timeout');
  });

  await t.test('REL-01: a SIGKILLed and restarted driver keeps learned elements and flows', async () => {
    await dp.call('learn', [el(S4, 8443), el(S6, 443)]);
    const s = await Session.open(topo.podA, S4, 8443);
    t.after(() => s.close());
    assert.equal((await s.ping()).result, 'ok');
    dp.kill();
    // Agent down: established and learned traffic flows, the rest stays dropped.
    assert.equal((await s.ping()).result, 'ok');
    assert.equal((await probe(topo.podA, 'tcp', S6, 443)).result, 'ok');
    assert.equal((await probe(topo.podA, 'tcp', S4, 80, 800)).result, 'timeout');
    // Restart with a changed ruleset (drop logging on): chains replaced in one transaction (REL-04).
    dp = await DriverClient.start(topo.router, { config: { verifyPort: 9443, logDrops: true } });
    await dp.call('reconcile', BASE);
    assert.equal((await s.ping()).result, 'ok');
    assert.equal((await probe(topo.podA, 'tcp', S4, 8443)).result, 'ok');
    const learned = await dp.call<AllowElement[]>('listLearned');
    assert.ok(learned.some((e) => e.destination === S6 && e.portFrom === 443 && e.timeoutMs > 30_000));
    const chain = await topo.router.run(['nft', 'list', 'chain', 'inet', 'namegate', 'enforce_deny']);
    assert.match(chain, /namegate-drop/);
    // The restarted driver's model knows the old elements: overlapping learns still commit.
    await dp.call('learn', [el(S4, 8000, 9000)]);
    assert.equal((await probe(topo.podA, 'tcp', S4, 8443)).result, 'ok');
  });

  await t.test('CIDR allows with except; verify ports go to the SNI proxy', async () => {
    const cidr = parseCidr('203.0.113.0/24');
    const hole = parseCidr('203.0.113.11/32');
    assert.ok(typeof cidr !== 'string' && typeof hole !== 'string');
    await dp.call('reconcile', {
      ...BASE,
      cidrs: [{ source: A4, cidr, except: [hole], protocol: 'TCP', portFrom: 5010, portTo: 5010 }],
      verify: [{ source: A4, protocol: 'TCP', portFrom: 8443, portTo: 8443 }],
    });
    assert.equal((await probe(topo.podA, 'tcp', S4c, 5010)).result, 'ok');
    assert.equal((await probe(topo.podA, 'tcp', S4, 5010)).result, 'ok');
    await dp.call('forget', [
      { source: A4, destination: S4b, protocol: 'TCP', portFrom: 5003, portTo: 5010 },
    ]);
    assert.equal((await probe(topo.podA, 'tcp', S4b, 5010, 800)).result, 'timeout');
    const v = await probe(topo.podA, 'tcp', S4c, 8443);
    assert.match(v.reply ?? '', /^sni:/);
  });

  await t.test('K8S-05: a newly governed source loses its UDP/53 conntrack entries', async () => {
    // podB's IPv6 address is ungoverned: its DNS goes straight to the internet namespace.
    await startServer(topo.inet, 'dns', [53]).catch(() => undefined);
    const before = await probe(topo.podB, 'udp', S6, 53);
    assert.match(before.reply ?? '', /^inet:|^dns:/);
    const listed = await topo.router.run([
      'conntrack',
      '-L',
      '-f',
      'ipv6',
      '-s',
      B6,
      '-p',
      'udp',
      '--dport',
      '53',
    ]);
    assert.match(listed, /dport=53/);
    await dp.call('reconcile', { ...BASE, sources: [...BASE.sources, { ip: B6, mode: 'Enforce' }] });
    const after = await topo.router.exec([
      'conntrack',
      '-L',
      '-f',
      'ipv6',
      '-s',
      B6,
      '-p',
      'udp',
      '--dport',
      '53',
    ]);
    assert.doesNotMatch(after.stdout, /dport=53/);
  });

  await t.test('coalesced calls settle one by one; a bad element fails only its caller', async () => {
    const calls = Array.from({ length: 40 }, (_, i) => [el(S4c, 10_000 + i)]);
    calls.push([{ ...el(S4c, 1), destination: S6 }]);
    const results = await dp.call<{ ok: boolean; code?: string }[]>('learnMany', calls);
    assert.equal(results.filter((r) => r.ok).length, 40);
    assert.equal(results.at(-1)?.code, 'NG_DATAPATH_COMMIT');
    const list = await kernelAllow(topo.router);
    for (let i = 0; i < 40; i++) assert.ok(hasKey(list, S4c, 10_000 + i));
  });
});

test('REL-07: a full set rejects learn(); the queue is bounded', async (t) => {
  const topo = await topology(t);
  const dp = await DriverClient.start(topo.router, {
    config: { sizes: { allow: 4 } },
    maxQueuedElements: 10,
  });
  t.after(() => dp.close());
  await dp.call('reconcile', BASE);
  await dp.call('learn', [el(S4, 1), el(S4, 2), el(S4, 3), el(S4, 4)]);
  await assert.rejects(dp.call('learn', [el(S4, 5)]), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'NG_DATAPATH_COMMIT');
    assert.match(err.message, /Too many open files|No space/);
    return true;
  });
  // A refresh of an element already there still commits.
  await dp.call('learn', [el(S4, 4, 4, 120_000)]);
  assert.equal((await probe(topo.podA, 'tcp', S4, 5, 800)).result, 'timeout');

  const results = await dp.call<{ ok: boolean; code?: string }[]>(
    'learnMany',
    Array.from({ length: 30 }, () => [el(S4, 4)]),
  );
  assert.ok(
    results.some((r) => r.code === 'NG_LIMIT_EXCEEDED'),
    JSON.stringify(results),
  );
});
