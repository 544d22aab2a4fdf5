/**
 * forget() and UDP without NAT in between: once the source's conntrack entry is deleted, a peer
 * that keeps sending opens a new entry in the other direction, and the source's datagrams then
 * pass as its "replies". With the revoke window (the default) the peer's new datagrams are
 * dropped while it keeps sending; with it turned off the flow comes back (what the window fixes).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { StaticState } from '../../../src/datapath/datapath.ts';
import { waitFor } from '../netns.ts';
import { A4, DriverClient, S4, startStreamer, topology, UdpClient } from './topology.ts';

const STATE: StaticState = { sources: [{ ip: A4, mode: 'Enforce' }], cidrs: [], verify: [] };

const key = (port: number) => ({
  source: A4,
  destination: S4,
  protocol: 'UDP' as const,
  portFrom: port,
  portTo: port,
});

/** Learn, start the stream, forget; then what arrives in both directions over ~1.5 s. */
async function afterForget(
  dp: DriverClient,
  client: UdpClient,
  port: number,
): Promise<{ received: number; echoes: number }> {
  await dp.call('learn', [{ ...key(port), timeoutMs: 60_000 }]);
  client.send();
  await waitFor('the stream', async () => (await client.count()).received > 0, 10_000, 100);
  await dp.call('forget', [key(port)]);
  // Let what was in flight arrive, then count from zero.
  await sleep(200);
  await client.count();
  for (let i = 0; i < 3; i++) {
    client.send();
    await sleep(300);
  }
  await sleep(500);
  return client.count();
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
      const r = await afterForget(dp, client, 6001);
      assert.ok(r.received > 0 && r.echoes > 0, JSON.stringify(r));
      client.close();
    } finally {
      await dp.close();
    }
  });

  await t.test('revoke window on: nothing passes either way while the peer keeps sending', async () => {
    const dp = await DriverClient.start(topo.router, { config: { revokeWindowMs: 2_000 } });
    t.after(() => dp.close());
    await dp.call('reconcile', STATE);
    const client = await UdpClient.open(topo.podA, S4, 6000);
    t.after(() => client.close());
    const r = await afterForget(dp, client, 6000);
    assert.deepEqual(r, { result: 'count', received: 0, echoes: 0 });
    const set = await topo.router.run(['nft', 'list', 'set', 'inet', 'namegate', 'revoked4']);
    assert.match(set, new RegExp(`${A4} \\. ${S4} \\. udp`));
    // Past the 2 s window: the peer's datagrams kept extending it, so it is still closed.
    await sleep(2_500);
    await client.count();
    client.send();
    await sleep(500);
    assert.deepEqual(await client.count(), { result: 'count', received: 0, echoes: 0 });
    // Learned again, the source's own new flow works (its replies are established).
    await dp.call('learn', [{ ...key(6000), timeoutMs: 60_000 }]);
    client.send();
    await waitFor('the echo', async () => (await client.count()).echoes > 0, 5_000, 100);
  });
});
