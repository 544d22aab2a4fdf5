import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ManualClock } from '../../../src/core/clock.ts';
import { LearnedStore, type StoreOptions } from '../../../src/store/learned-store.ts';
import { maxTimeoutMs, timeoutMsFor, ttlPolicyProblems } from '../../../src/store/ttl.ts';

const TTL = { minTtlSeconds: 30, maxTtlSeconds: 3600, graceSeconds: 20 };

function store(extra: Partial<StoreOptions> = {}): LearnedStore {
  return new LearnedStore({ ttl: TTL, ...extra });
}

describe('ttl: clamp(TTL, minTTL, maxTTL) + grace, never 0', () => {
  test('clamps and adds grace', () => {
    assert.equal(timeoutMsFor(0, TTL), 50_000);
    assert.equal(timeoutMsFor(100, TTL), 120_000);
    assert.equal(timeoutMsFor(2 ** 31 - 1, TTL), 3_620_000);
    assert.equal(timeoutMsFor(Number.NaN, TTL), 50_000);
    assert.equal(timeoutMsFor(-5, TTL), 50_000);
    assert.equal(maxTimeoutMs(TTL), 3_620_000);
  });
  test('never below one second, whatever the policy', () => {
    fc.assert(
      fc.property(
        fc.nat(100),
        fc.nat(100),
        fc.nat(100),
        fc.integer({ min: -10, max: 2 ** 32 }),
        (min, extra, grace, ttl) => {
          const p = { minTtlSeconds: min, maxTtlSeconds: min + extra, graceSeconds: grace };
          assert.ok(timeoutMsFor(ttl, p) >= 1000);
        },
      ),
    );
  });
  test('policy problems', () => {
    assert.deepEqual(ttlPolicyProblems(TTL), []);
    assert.ok(ttlPolicyProblems({ minTtlSeconds: 0, maxTtlSeconds: 10, graceSeconds: 0 }).length > 0);
    assert.ok(ttlPolicyProblems({ minTtlSeconds: 20, maxTtlSeconds: 10, graceSeconds: 5 }).length > 0);
  });
});

describe('LearnedStore', () => {
  test('learn and look up per (source, name)', () => {
    const c = new ManualClock();
    const s = store();
    const r = s.learn('10.0.0.1', 'a.example', [{ ip: '192.0.2.1', ttl: 60 }], c.now());
    assert.deepEqual(r.learned, [{ ip: '192.0.2.1', change: 'new', expiresAt: c.now() + 80_000 }]);
    assert.deepEqual(s.lookup('10.0.0.1', 'a.example', c.now()), ['192.0.2.1']);
    assert.deepEqual(s.lookup('10.0.0.2', 'a.example', c.now()), []);
    assert.deepEqual(s.lookup('10.0.0.1', 'b.example', c.now()), []);
    assert.ok(s.holds('10.0.0.1', 'a.example', '192.0.2.1', c.now()));
    c.advance(80_000);
    assert.ok(!s.holds('10.0.0.1', 'a.example', '192.0.2.1', c.now()));
  });

  test('refresh only extends; small extensions (< grace/2) are skipped', () => {
    const c = new ManualClock();
    const s = store();
    s.learn('s', 'n', [{ ip: '192.0.2.1', ttl: 600 }], c.now());
    const first = c.now() + 620_000;
    c.advance(1000);
    assert.equal(s.learn('s', 'n', [{ ip: '192.0.2.1', ttl: 600 }], c.now()).learned[0]?.change, 'unchanged');
    assert.equal(s.learn('s', 'n', [{ ip: '192.0.2.1', ttl: 30 }], c.now()).learned[0]?.expiresAt, first);
    c.advance(20_000);
    const r = s.learn('s', 'n', [{ ip: '192.0.2.1', ttl: 600 }], c.now());
    assert.equal(r.learned[0]?.change, 'refreshed');
    assert.equal(r.learned[0]?.expiresAt, c.now() + 620_000);
  });

  test('an expired entry comes back as new', () => {
    const c = new ManualClock();
    const s = store();
    s.learn('s', 'n', [{ ip: '192.0.2.1', ttl: 10 }], c.now());
    c.advance(60_000);
    assert.equal(s.learn('s', 'n', [{ ip: '192.0.2.1', ttl: 10 }], c.now()).learned[0]?.change, 'new');
    assert.equal(s.size, 1);
  });

  test('per-name cap: expired first, then the least recently answered, never one in use', () => {
    const c = new ManualClock();
    const inUse = new Set<string>();
    const s = store({
      limits: { maxIpsPerName: 3, maxIpsPerSource: 100, maxEntries: 100 },
      inUse: (_s, ip) => inUse.has(ip),
    });
    for (let i = 1; i <= 3; i++) {
      s.learn('s', 'n', [{ ip: `192.0.2.${i}`, ttl: 300 }], c.now());
      c.advance(1000);
    }
    inUse.add('192.0.2.1');
    const r = s.learn('s', 'n', [{ ip: '192.0.2.4', ttl: 300 }], c.now());
    assert.deepEqual(r.evicted, [{ name: 'n', ip: '192.0.2.2', orphaned: true }]);
    assert.deepEqual(s.lookup('s', 'n', c.now()).sort(), ['192.0.2.1', '192.0.2.3', '192.0.2.4']);
    inUse.add('192.0.2.3');
    inUse.add('192.0.2.4');
    const full = s.learn('s', 'n', [{ ip: '192.0.2.5', ttl: 300 }], c.now());
    assert.deepEqual(full.rejected, [{ ip: '192.0.2.5', reason: 'name_full' }]);
    assert.equal(s.size, 3);
  });

  test('a name re-answered recently is kept over an older one (oldest = least recently answered)', () => {
    const c = new ManualClock();
    const s = store({ limits: { maxIpsPerName: 2, maxIpsPerSource: 100, maxEntries: 100 } });
    s.learn('s', 'n', [{ ip: '192.0.2.1', ttl: 300 }], c.now());
    c.advance(1000);
    s.learn('s', 'n', [{ ip: '192.0.2.2', ttl: 300 }], c.now());
    c.advance(1000);
    s.learn('s', 'n', [{ ip: '192.0.2.1', ttl: 300 }], c.now()); // seen again
    c.advance(1000);
    const r = s.learn('s', 'n', [{ ip: '192.0.2.3', ttl: 300 }], c.now());
    assert.equal(r.evicted[0]?.ip, '192.0.2.2');
  });

  test('per-source cap across names', () => {
    const c = new ManualClock();
    const s = store({ limits: { maxIpsPerName: 10, maxIpsPerSource: 3, maxEntries: 100 } });
    s.learn('s', 'a', [{ ip: '192.0.2.1', ttl: 300 }], c.now());
    c.advance(1);
    s.learn('s', 'b', [{ ip: '192.0.2.2', ttl: 300 }], c.now());
    c.advance(1);
    s.learn('s', 'c', [{ ip: '192.0.2.3', ttl: 300 }], c.now());
    c.advance(1);
    const r = s.learn('s', 'd', [{ ip: '192.0.2.4', ttl: 300 }], c.now());
    assert.deepEqual(r.evicted, [{ name: 'a', ip: '192.0.2.1', orphaned: true }]);
    assert.equal(s.countOf('s'), 3);
    assert.equal(s.namesOf('s'), 3);
    assert.equal(
      s.learn('t', 'a', [{ ip: '192.0.2.9', ttl: 300 }], c.now()).learned.length,
      1,
      'other sources unaffected',
    );
  });

  test('total cap rejects once full of live entries', () => {
    const c = new ManualClock();
    const s = store({ limits: { maxIpsPerName: 10, maxIpsPerSource: 10, maxEntries: 2 } });
    s.learn('a', 'n', [{ ip: '192.0.2.1', ttl: 300 }], c.now());
    s.learn('b', 'n', [{ ip: '192.0.2.1', ttl: 300 }], c.now());
    assert.deepEqual(
      s.learn('c', 'n', [{ ip: '192.0.2.1', ttl: 300 }], c.now()).rejected[0]?.reason,
      'store_full',
    );
    c.advance(400_000);
    assert.equal(
      s.learn('c', 'n', [{ ip: '192.0.2.1', ttl: 300 }], c.now()).learned.length,
      1,
      'expired ones make room',
    );
  });

  test('an IP held under two names: eviction of one is not orphaned; expiryFor is the later one', () => {
    const c = new ManualClock();
    const s = store({ limits: { maxIpsPerName: 1, maxIpsPerSource: 100, maxEntries: 100 } });
    s.learn('s', 'a', [{ ip: '192.0.2.1', ttl: 100 }], c.now());
    s.learn('s', 'b', [{ ip: '192.0.2.1', ttl: 1000 }], c.now());
    assert.equal(s.expiryFor('s', '192.0.2.1'), c.now() + 1_020_000);
    assert.deepEqual(s.namesHolding('s', '192.0.2.1').sort(), ['a', 'b']);
    c.advance(1);
    const r = s.learn('s', 'a', [{ ip: '192.0.2.2', ttl: 100 }], c.now());
    assert.deepEqual(r.evicted, [{ name: 'a', ip: '192.0.2.1', orphaned: false }]);
    assert.equal(s.expiryFor('s', '192.0.2.9'), 0);
  });

  test('gc removes expired entries and empty sources', () => {
    const c = new ManualClock();
    const s = store();
    s.learn('s', 'a', [{ ip: '192.0.2.1', ttl: 10 }], c.now());
    s.learn('s', 'b', [{ ip: '192.0.2.2', ttl: 1000 }], c.now());
    s.learn('t', 'a', [{ ip: '192.0.2.1', ttl: 10 }], c.now());
    c.advance(100_000);
    assert.equal(s.gc(c.now()), 2);
    assert.equal(s.size, 1);
    assert.equal(s.sourceCount, 1);
    assert.equal(s.expiryFor('s', '192.0.2.1'), 0);
  });

  test('forget and forgetSource', () => {
    const c = new ManualClock();
    const s = store();
    s.learn(
      's',
      'a',
      [
        { ip: '192.0.2.1', ttl: 10 },
        { ip: '192.0.2.2', ttl: 10 },
      ],
      c.now(),
    );
    assert.ok(s.forget('s', 'a', '192.0.2.1'));
    assert.ok(!s.forget('s', 'a', '192.0.2.1'));
    assert.equal(s.size, 1);
    assert.equal(s.forgetSource('s'), 1);
    assert.equal(s.size, 0);
  });

  test('TIME-08: time is only what the caller passes (no clock read inside)', () => {
    const s = store();
    s.learn('s', 'a', [{ ip: '192.0.2.1', ttl: 10 }], 5_000);
    assert.deepEqual(s.lookup('s', 'a', 5_000 + 49_999), ['192.0.2.1']);
    assert.deepEqual(s.lookup('s', 'a', 5_000 + 50_000), []);
  });

  test('property: caps always hold and sizes stay consistent under random churn', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            src: fc.integer({ min: 0, max: 3 }),
            name: fc.integer({ min: 0, max: 5 }),
            ips: fc.array(fc.integer({ min: 0, max: 40 }), { maxLength: 6 }),
            ttl: fc.integer({ min: 0, max: 5000 }),
            advance: fc.integer({ min: 0, max: 200_000 }),
            gc: fc.boolean(),
          }),
          { maxLength: 60 },
        ),
        (ops) => {
          const limits = { maxIpsPerName: 4, maxIpsPerSource: 9, maxEntries: 25 };
          const s = new LearnedStore({ ttl: TTL, limits, inUse: (_s, ip) => ip.endsWith('.7') });
          let now = 0;
          for (const op of ops) {
            now += op.advance;
            s.learn(
              `10.0.0.${op.src}`,
              `n${op.name}.example`,
              op.ips.map((i) => ({ ip: `192.0.2.${i}`, ttl: op.ttl })),
              now,
            );
            if (op.gc) s.gc(now);
            const all = [...s.entries()];
            assert.equal(all.length, s.size);
            assert.ok(s.size <= limits.maxEntries);
            for (let src = 0; src < 4; src++) assert.ok(s.countOf(`10.0.0.${src}`) <= limits.maxIpsPerSource);
            const perName = new Map<string, number>();
            for (const e of all) {
              const k = `${e.source}|${e.name}`;
              perName.set(k, (perName.get(k) ?? 0) + 1);
              assert.ok(e.expiresAt - e.lastSeen <= maxTimeoutMs(TTL));
            }
            for (const n of perName.values()) assert.ok(n <= limits.maxIpsPerName);
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('wouldEvict', () => {
  test('says whether an answer has to make room under the per-name or per-source cap', () => {
    const s = new LearnedStore({
      ttl: TTL,
      limits: { maxIpsPerName: 2, maxIpsPerSource: 3, maxEntries: 100 },
    });
    const a = (ip: string) => ({ ip, ttl: 300 });
    assert.equal(s.wouldEvict('10.0.0.1', 'x.example', [a('192.0.2.1')]), false, 'an unknown source');
    s.learn('10.0.0.1', 'x.example', [a('192.0.2.1'), a('192.0.2.2')], 0);
    assert.equal(s.wouldEvict('10.0.0.1', 'x.example', [a('192.0.2.1')]), false, 'already held');
    assert.equal(s.wouldEvict('10.0.0.1', 'x.example', [a('192.0.2.3')]), true, 'name cap');
    assert.equal(s.wouldEvict('10.0.0.1', 'y.example', [a('192.0.2.3')]), false);
    s.learn('10.0.0.1', 'y.example', [a('192.0.2.3')], 0);
    assert.equal(s.wouldEvict('10.0.0.1', 'z.example', [a('192.0.2.4')]), true, 'source cap');
  });
});
