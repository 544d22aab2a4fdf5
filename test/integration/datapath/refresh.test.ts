/**
 * A repeated answer extends its elements' life, with the same timeout as before (root, one
 * network namespace). On this kernel (6.18) re-adding a present element with an equal `timeout`
 * leaves its expiry where it was; only an explicit `expires` restarts it. Expiries are read back
 * with `nft -j list set` after shortening them by hand, so no test waits for time to pass.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AllowElement } from '../../../src/datapath/datapath.ts';
import { lifeText } from '../../../src/datapath/nft-elements.ts';
import { Netns } from '../netns.ts';
import { DriverClient } from './topology.ts';

const SRC = '10.9.0.1';
const TIMEOUT_MS = 60_000;

/** One element of each learned set: [set, element text, its key as nft -j prints it, ports]. */
function shapes(dst: string): [string, string, unknown[], [number, number]][] {
  return [
    ['allow4', `${SRC} . ${dst} . tcp . 443`, [SRC, dst, 'tcp', 443], [443, 443]],
    ['allowall4', `${SRC} . ${dst} . udp`, [SRC, dst, 'udp'], [0, 65535]],
    ['allowrange4', `${SRC} . ${dst} . tcp . 10-20`, [SRC, dst, 'tcp', { range: [10, 20] }], [10, 20]],
  ];
}

interface KElem {
  elem?: { val: { concat: unknown[] }; timeout?: number; expires?: number };
}

/** Seconds left of one element (nft prints whole seconds), or null when absent. */
async function expiresOf(ns: Netns, set: string, key: unknown[]): Promise<number | null> {
  const out = JSON.parse(await ns.run(['nft', '-j', 'list', 'set', 'inet', 'namegate', set])) as {
    nftables: { set?: { elem?: KElem[] } }[];
  };
  const elems = out.nftables.find((x) => x.set)?.set?.elem ?? [];
  const e = elems.find((x) => JSON.stringify(x.elem?.val.concat) === JSON.stringify(key))?.elem;
  return e ? (e.expires ?? null) : null;
}

/** Leave the element present with its timeout but only `seconds` to live (as if time passed). */
async function age(ns: Netns, set: string, text: string, seconds: number): Promise<void> {
  await ns.run([
    'nft',
    `add element inet namegate ${set} { ${text} timeout ${TIMEOUT_MS}ms expires ${seconds}s }`,
  ]);
}

test('repeated answers with equal timeouts extend the element (kernel and driver) (TIME-03)', async (t) => {
  const router = await Netns.create(t);

  await t.test('kernel: an equal timeout keeps the expiry; an explicit expires restarts it', async () => {
    // The table and sets come from a driver's reconcile, as in production.
    const dp = await DriverClient.start(router, { conntrack: null });
    await dp.call('reconcile', { sources: [{ ip: SRC, mode: 'Enforce' }], cidrs: [], verify: [] });
    await dp.close();
    for (const [set, text, key] of shapes('203.0.113.90')) {
      await age(router, set, text, 5);
      await router.run(['nft', `add element inet namegate ${set} { ${text} timeout ${TIMEOUT_MS}ms }`]);
      const kept = await expiresOf(router, set, key);
      assert.ok(kept !== null && kept <= 5, `${set}: an equal timeout left the expiry at ${kept} s`);
      await router.run(['nft', `add element inet namegate ${set} { ${text} ${lifeText(TIMEOUT_MS)} }`]);
      const reset = await expiresOf(router, set, key);
      assert.ok(reset !== null && reset >= 55, `${set}: expires restarted it to ${reset} s`);
    }
  });

  for (const [executorKind, dst] of [
    ['addon', '203.0.113.91'],
    ['spawn', '203.0.113.92'],
  ] as const) {
    await t.test(
      `driver (${executorKind}): a repeated learn with the same timeout restarts every element`,
      async () => {
        const dp = await DriverClient.start(router, { executorKind, conntrack: null });
        t.after(() => dp.close());
        assert.equal(await dp.call('status').then((s) => (s as { executor: string }).executor), executorKind);
        await dp.call('reconcile', { sources: [{ ip: SRC, mode: 'Enforce' }], cidrs: [], verify: [] });
        const elements = (): AllowElement[] =>
          shapes(dst).map(([, text, , [from, to]]) => ({
            source: SRC,
            destination: dst,
            protocol: text.includes('udp') ? 'UDP' : 'TCP',
            portFrom: from,
            portTo: to,
            timeoutMs: TIMEOUT_MS,
          }));
        await dp.call('learn', elements());
        // Ten seconds before expiry, as far as the kernel is concerned (the driver does not know).
        for (const [set, text, key] of shapes(dst)) {
          await age(router, set, text, 10);
          const left = await expiresOf(router, set, key);
          assert.ok(left !== null && left <= 10, `${set}: aged to ${left} s`);
        }
        // The same answer again, with the same TTL.
        await dp.call('learn', elements());
        for (const [set, , key] of shapes(dst)) {
          const left = await expiresOf(router, set, key);
          assert.ok(
            left !== null && left >= 55,
            `${set}: the repeated answer left ${left} s (want about 60)`,
          );
        }
      },
    );
  }
});
