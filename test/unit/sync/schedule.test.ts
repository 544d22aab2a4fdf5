/** When names are resolved again: before expiry, within the bounds, jittered; failures back off. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { timeoutMsFor } from '../../../src/store/ttl.ts';
import { failureDelayMs, refreshDelayMs } from '../../../src/sync/schedule.ts';
import { SETTINGS } from './helpers.ts';

test('a short TTL is re-resolved at its TTL, not at the store clamp (rotation is seen)', () => {
  assert.equal(refreshDelayMs(5, { ...SETTINGS, jitter: 0 }, 0.5), 5000);
  assert.equal(refreshDelayMs(1, { ...SETTINGS, jitter: 0 }, 0.5), 5000, 'minRefresh is the floor');
  assert.equal(refreshDelayMs(3600, { ...SETTINGS, jitter: 0 }, 0.5), 300_000, 'maxRefresh is the ceiling');
  assert.equal(refreshDelayMs(null, { ...SETTINGS, jitter: 0 }, 0), 30_000, 'no addresses: minTTL');
});

test('property: the delay is within [base * (1 - jitter), base] and before the store would expire the answer', () => {
  fc.assert(
    fc.property(
      fc.option(fc.integer({ min: 0, max: 200_000 }), { nil: null }),
      fc.double({ min: 0, max: 0.999, noNaN: true }),
      fc.double({ min: 0, max: 0.5, noNaN: true }),
      (ttl, random, jitter) => {
        const s = { ...SETTINGS, jitter };
        const d = refreshDelayMs(ttl, s, random);
        assert.ok(d >= 1);
        assert.ok(d <= s.maxRefreshMs);
        assert.ok(d <= timeoutMsFor(ttl ?? 0, s.ttl), 'before the answer would expire');
        const base = refreshDelayMs(ttl, { ...s, jitter: 0 }, 0);
        assert.ok(d >= Math.floor(base * (1 - jitter)) - 1 && d <= base);
      },
    ),
  );
});

test('failures back off by doubling up to maxRefresh', () => {
  const s = { ...SETTINGS, jitter: 0 };
  assert.deepEqual(
    [1, 2, 3, 4, 10, 100].map((n) => failureDelayMs(n, s, 0)),
    [5000, 10_000, 20_000, 40_000, 300_000, 300_000],
  );
});
