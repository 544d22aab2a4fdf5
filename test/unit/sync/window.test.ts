/**
 * The union window: every address seen within the window stays, whatever later answers leave
 * out; addresses leave only after the whole window; a window of 0 is the naive replacing loop;
 * the per-name cap pushes out the least recently seen.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { UnionWindow } from '../../../src/sync/window.ts';

test('a rotating name keeps every address seen within the window; they leave only after it', () => {
  const w = new UnionWindow({ windowMs: 10_000, maxPerName: 100 });
  w.observe('cdn.example', 4, ['203.0.113.1', '203.0.113.2'], 0);
  const second = w.observe('cdn.example', 4, ['203.0.113.3'], 4000);
  assert.deepEqual(second.added, ['203.0.113.3']);
  assert.deepEqual(second.evicted, []);
  assert.deepEqual(w.addresses('cdn.example'), ['203.0.113.1', '203.0.113.2', '203.0.113.3']);
  assert.equal(w.nextExpiry(), 10_000);
  assert.deepEqual(w.prune(9999), []);
  assert.deepEqual(
    w.prune(10_000).map((r) => r.ip),
    ['203.0.113.1', '203.0.113.2'],
  );
  assert.deepEqual(w.addresses('cdn.example'), ['203.0.113.3']);
});

test('seeing an address again restarts its window', () => {
  const w = new UnionWindow({ windowMs: 10_000, maxPerName: 100 });
  w.observe('a.example', 4, ['203.0.113.1'], 0);
  w.observe('a.example', 4, ['203.0.113.1'], 8000);
  assert.deepEqual(w.prune(12_000), []);
  assert.deepEqual(w.addresses('a.example'), ['203.0.113.1']);
});

test('window 0 is the naive loop: each answer replaces its family, nothing ages out', () => {
  const w = new UnionWindow({ windowMs: 0, maxPerName: 100 });
  w.observe('a.example', 4, ['203.0.113.1'], 0);
  w.observe('a.example', 6, ['2001:db8::1'], 0);
  const r = w.observe('a.example', 4, ['203.0.113.2'], 5);
  assert.deepEqual(r.evicted, ['203.0.113.1']);
  assert.deepEqual(w.addresses('a.example'), ['203.0.113.2', '2001:db8::1']);
  assert.deepEqual(w.prune(1e12), []);
  assert.equal(w.nextExpiry(), null);
});

test('the cap pushes out the least recently seen and says so', () => {
  const w = new UnionWindow({ windowMs: 60_000, maxPerName: 2 });
  w.observe('s3.example', 4, ['203.0.113.1'], 0);
  w.observe('s3.example', 4, ['203.0.113.2'], 1);
  w.observe('s3.example', 4, ['203.0.113.1'], 2);
  const r = w.observe('s3.example', 4, ['203.0.113.3'], 3);
  assert.equal(r.capped, true);
  assert.deepEqual(r.evicted, ['203.0.113.2']);
  assert.deepEqual(w.addresses('s3.example'), ['203.0.113.1', '203.0.113.3']);
});

test('forget drops a name no policy names any more', () => {
  const w = new UnionWindow({ windowMs: 60_000, maxPerName: 8 });
  w.observe('gone.example', 4, ['203.0.113.9'], 0);
  w.forget('gone.example');
  assert.deepEqual(w.addresses('gone.example'), []);
  assert.equal(w.size, 0);
});

test('property: within the cap, an address is held exactly while its last sighting is inside the window', () => {
  const ip = fc.integer({ min: 1, max: 12 }).map((n) => `203.0.113.${n}`);
  const step = fc.record({ dt: fc.integer({ min: 0, max: 4000 }), ips: fc.array(ip, { maxLength: 4 }) });
  fc.assert(
    fc.property(fc.array(step, { maxLength: 40 }), fc.integer({ min: 1, max: 20 }), (steps, cap) => {
      const windowMs = 10_000;
      const w = new UnionWindow({ windowMs, maxPerName: cap });
      const last = new Map<string, number>();
      let now = 0;
      for (const s of steps) {
        now += s.dt;
        w.prune(now);
        w.observe('n', 4, s.ips, now);
        for (const x of s.ips) last.set(x, now);
        const held = w.addresses('n');
        assert.ok(held.length <= cap, 'never more than the cap');
        for (const x of held) assert.ok(now - (last.get(x) as number) < windowMs, `${x} outlived its window`);
        // Everything seen in this very answer is held (the cap keeps the most recent).
        for (const x of new Set(s.ips).size <= cap ? s.ips : []) assert.ok(held.includes(x));
        if (last.size <= cap) {
          for (const [x, at] of last) if (now - at < windowMs) assert.ok(held.includes(x), `${x} left early`);
        }
      }
    }),
  );
});
