/**
 * forget() and UDP without NAT in between: once the source's conntrack entry is deleted, a peer
 * that keeps sending opens a new entry in the other direction, and the source's datagrams then
 * pass as its "replies". With the revoke window (the default) the peer's new datagrams are
 * dropped while it keeps sending; with it turned off the flow comes back (what the window fixes).
 *
 * What passes is read from the router's kernel, not inferred from silence after a sleep: a table
 * of this test in the router's namespace counts the flow's datagrams as they arrive (prerouting)
 * and as they leave towards the other side (postrouting, so only what the forward chain let
 * through). "Nothing passes" is then: the arrival counters grew (both sides kept sending) and the
 * departure counters did not.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { StaticState } from '../../../src/datapath/datapath.ts';
import { type Netns, waitFor } from '../netns.ts';
import { A4, DriverClient, S4, startStreamer, topology, UdpClient } from './topology.ts';

const STATE: StaticState = { sources: [{ ip: A4, mode: 'Enforce' }], cidrs: [], verify: [] };
/** The streamer sends a datagram every 50 ms (peer.ts); setInterval never fires early. */
const TICK_MS = 50;
/** Waits for events the test causes; the bound only turns a hang into a named failure. */
const EVENT_WAIT_MS = 60_000;

const key = (port: number) => ({
  source: A4,
  destination: S4,
  protocol: 'UDP' as const,
  portFrom: port,
  portTo: port,
});

/** The flow's datagrams in the router: arrived from either side, and left towards the other. */
interface Counts {
  /** From the peer (S4) towards the pod: arrived at the router, and forwarded to the pod. */
  readonly downIn: number;
  readonly downOut: number;
  /** From the pod towards the peer: arrived, and forwarded. */
  readonly upIn: number;
  readonly upOut: number;
}

const COUNTERS = ['downIn', 'downOut', 'upIn', 'upOut'] as const;

/** The counting table for UDP `port` (its own table; the namespace goes with the topology). */
async function countFlow(router: Netns, port: number): Promise<() => Promise<Counts>> {
  const t = `ngtest${port}`;
  const down = `ip saddr ${S4} ip daddr ${A4} udp sport ${port}`;
  const up = `ip saddr ${A4} ip daddr ${S4} udp dport ${port}`;
  await router.run(['nft', '-f', '-'], {
    input: [
      `table inet ${t} {`,
      ...COUNTERS.map((c) => `  counter ${c} { }`),
      '  chain pre {',
      '    type filter hook prerouting priority -350; policy accept;',
      `    iifname "up0" ${down} counter name downIn`,
      `    iifname "poda" ${up} counter name upIn`,
      '  }',
      '  chain post {',
      '    type filter hook postrouting priority 400; policy accept;',
      `    oifname "poda" ${down} counter name downOut`,
      `    oifname "up0" ${up} counter name upOut`,
      '  }',
      '}',
      '',
    ].join('\n'),
  });
  return async () => {
    const doc = JSON.parse(await router.run(['nft', '-j', 'list', 'counters', 'table', 'inet', t])) as {
      nftables: { counter?: { name: string; packets: number } }[];
    };
    const get = (n: string) => doc.nftables.find((x) => x.counter?.name === n)?.counter?.packets ?? 0;
    return { downIn: get('downIn'), downOut: get('downOut'), upIn: get('upIn'), upOut: get('upOut') };
  };
}

const since = (now: Counts, base: Counts): Counts => ({
  downIn: now.downIn - base.downIn,
  downOut: now.downOut - base.downOut,
  upIn: now.upIn - base.upIn,
  upOut: now.upOut - base.upOut,
});

/**
 * Learn, start the stream, forget; then three datagrams from the pod (each seen arriving at the
 * router) while the peer sends at least `ticks` datagrams: what the router let through since.
 */
async function afterForget(
  dp: DriverClient,
  client: UdpClient,
  counts: () => Promise<Counts>,
  port: number,
  ticks: number,
): Promise<{ base: Counts; delta: Counts }> {
  await dp.call('learn', [{ ...key(port), timeoutMs: 60_000 }]);
  client.send();
  await waitFor('the stream', async () => (await client.count()).received > 0, EVENT_WAIT_MS, 20);
  await dp.call('forget', [key(port)]);
  // Counted from here: every datagram the router handles now meets the state forget() left.
  const base = await counts();
  for (let i = 1; i <= 3; i++) {
    client.send();
    await waitFor(
      `the pod's datagram ${i} at the router`,
      async () => since(await counts(), base).upIn >= i,
      EVENT_WAIT_MS,
      10,
    );
  }
  await waitFor(
    `${ticks} datagrams of the peer at the router`,
    async () => since(await counts(), base).downIn >= ticks,
    EVENT_WAIT_MS,
    20,
  );
  return { base, delta: since(await counts(), base) };
}

test('forget ends a UDP flow even when the peer keeps sending (no NAT)', async (t) => {
  const topo = await topology(t);
  await startStreamer(topo.inet, 6000);
  await startStreamer(topo.inet, 6001);

  await t.test('revoke window off: the peer revives the flow (the problem)', async () => {
    const dp = await DriverClient.start(topo.router, { config: { revokeWindowMs: 0 } });
    try {
      await dp.call('reconcile', STATE);
      const client = await UdpClient.open(topo.podA, S4, 6001);
      t.after(() => client.close());
      const counts = await countFlow(topo.router, 6001);
      await afterForget(dp, client, counts, 6001, 10);
      // The pod's datagrams pass as replies again and the peer's echoes come back to it.
      let seen = { received: 0, echoes: 0 };
      await waitFor(
        'the revived flow at the pod',
        async () => {
          client.send();
          const c = await client.count();
          seen = { received: seen.received + c.received, echoes: seen.echoes + c.echoes };
          return seen.received > 0 && seen.echoes > 0;
        },
        EVENT_WAIT_MS,
        50,
      );
      client.close();
    } finally {
      await dp.close();
    }
  });

  await t.test('revoke window on: nothing passes either way while the peer keeps sending', async () => {
    const windowMs = 2_000;
    const dp = await DriverClient.start(topo.router, { config: { revokeWindowMs: windowMs } });
    t.after(() => dp.close());
    await dp.call('reconcile', STATE);
    const client = await UdpClient.open(topo.podA, S4, 6000);
    t.after(() => client.close());
    const counts = await countFlow(topo.router, 6000);
    const { base, delta } = await afterForget(dp, client, counts, 6000, 10);
    assert.deepEqual(
      { downOut: delta.downOut, upOut: delta.upOut },
      { downOut: 0, upOut: 0 },
      JSON.stringify(delta),
    );
    const set = await topo.router.run(['nft', 'list', 'set', 'inet', 'namegate', 'revoked4']);
    assert.match(set, new RegExp(`${A4} \\. ${S4} \\. udp`));

    // Past the window: once the peer has sent for longer than it (counted in its own datagrams,
    // each at least TICK_MS after the one before), its datagrams have kept extending it.
    const pastWindow = Math.ceil(windowMs / TICK_MS) + 10;
    await waitFor(
      `${pastWindow} datagrams of the peer since forget`,
      async () => since(await counts(), base).downIn >= pastWindow,
      EVENT_WAIT_MS,
      50,
    );
    const before = since(await counts(), base).upIn;
    client.send();
    await waitFor(
      "the pod's datagram at the router",
      async () => since(await counts(), base).upIn > before,
      EVENT_WAIT_MS,
      10,
    );
    const late = since(await counts(), base);
    assert.deepEqual(
      { downOut: late.downOut, upOut: late.upOut },
      { downOut: 0, upOut: 0 },
      JSON.stringify(late),
    );
    assert.match(
      await topo.router.run(['nft', 'list', 'set', 'inet', 'namegate', 'revoked4']),
      new RegExp(`${A4} \\. ${S4} \\. udp`),
    );

    // Learned again, the source's own new flow works (its replies are established).
    await client.count();
    await dp.call('learn', [{ ...key(6000), timeoutMs: 60_000 }]);
    client.send();
    await waitFor('the echo', async () => (await client.count()).echoes > 0, EVENT_WAIT_MS, 50);
  });
});
