import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { deriveSegments, kindOf, LearnedModel, uncovered } from '../../../src/datapath/learned-model.ts';
import type { LearnedRange } from '../../../src/datapath/nft-elements.ts';

const k = (from: number, to = from): LearnedRange => ({
  source: '10.0.0.1',
  destination: '1.2.3.4',
  protocol: 'TCP',
  from,
  to,
});

test('a new element is added with its timeout', () => {
  const m = new LearnedModel();
  const txn = m.begin(1000);
  txn.learn(k(443), 30_000);
  const c = txn.changes();
  txn.commit();
  assert.deepEqual(c.adds, [{ kind: 'port', e: k(443), timeoutMs: 30_000 }]);
  assert.deepEqual(c.removes, []);
  assert.equal(m.size, 1);
});

test('refresh re-sends only when the expiry grows; never shortens', () => {
  const m = new LearnedModel();
  let txn = m.begin(0);
  txn.learn(k(443), 60_000);
  txn.changes();
  txn.commit();
  txn = m.begin(10_000);
  txn.learn(k(443), 5_000);
  assert.deepEqual(txn.changes().adds, [], 'shorter timeout must not be sent');
  txn.commit();
  txn = m.begin(20_000);
  txn.learn(k(443), 100_000);
  assert.deepEqual(txn.changes().adds, [{ kind: 'port', e: k(443), timeoutMs: 100_000 }]);
  txn.commit();
});

test('overlapping ranges become disjoint segments; the old segment is removed first', () => {
  const m = new LearnedModel();
  let txn = m.begin(0);
  txn.learn(k(400, 500), 10_000);
  txn.changes();
  txn.commit();
  txn = m.begin(1_000);
  txn.learn(k(450, 600), 20_000);
  const c = txn.changes();
  txn.commit();
  assert.deepEqual(c.removes, [{ kind: 'range', e: k(400, 500) }]);
  assert.deepEqual(
    c.adds.map((a) => [a.e.from, a.e.to, a.timeoutMs]),
    [
      [400, 449, 9_000],
      [450, 500, 20_000],
      [501, 600, 20_000],
    ],
  );
});

test('forget revokes only ports no other grant covers', () => {
  const m = new LearnedModel();
  let txn = m.begin(0);
  txn.learn(k(5000, 5005), 60_000);
  txn.learn(k(5003, 5010), 60_000);
  txn.changes();
  txn.commit();
  txn = m.begin(1);
  txn.forget(k(5000, 5005));
  const c = txn.changes();
  txn.commit();
  assert.deepEqual(
    c.revoked.map((r) => [r.from, r.to]),
    [[5000, 5002]],
  );
  assert.deepEqual(
    m.elements(2).map((e) => [e.from, e.to]),
    [[5003, 5010]],
  );
});

test('rollback leaves the model unchanged', () => {
  const m = new LearnedModel();
  const txn = m.begin(0);
  txn.learn(k(1), 1000);
  txn.changes();
  txn.rollback();
  assert.equal(m.size, 0);
  const again = m.begin(0);
  again.learn(k(1), 1000);
  assert.equal(again.changes().adds.length, 1);
});

test('restored elements: forget of a range removes the restored pieces inside it', () => {
  const m = new LearnedModel();
  m.load(
    [
      { ...k(400, 449), kind: 'range', remainingMs: 5000 },
      { ...k(450, 500), kind: 'range', remainingMs: 9000 },
      { ...k(501, 600), kind: 'range', remainingMs: 9000 },
    ],
    0,
  );
  const txn = m.begin(1);
  txn.forget(k(400, 500));
  const c = txn.changes();
  txn.commit();
  assert.deepEqual(
    c.removes.map((r) => [r.e.from, r.e.to]),
    [
      [400, 449],
      [450, 500],
    ],
  );
  assert.deepEqual(
    c.revoked.map((r) => [r.from, r.to]),
    [[400, 500]],
  );
});

test('prune drops keys past the ghost window', () => {
  const m = new LearnedModel(2_000);
  const txn = m.begin(0);
  txn.learn(k(1), 1_000);
  txn.changes();
  txn.commit();
  assert.equal(m.prune(2_000), 0);
  assert.equal(m.prune(3_001), 1);
  assert.equal(m.size, 0);
});

test('prune keeps what is live: expired pieces of a key go, other keys and sources stay', () => {
  const m = new LearnedModel(2_000);
  const txn = m.begin(0);
  txn.learn(k(443), 1_000);
  txn.learn(k(80), 10_000);
  txn.learn({ ...k(443), source: '10.0.0.2' }, 1_000);
  txn.learn({ ...k(443), destination: '5.6.7.8' }, 10_000);
  txn.changes();
  txn.commit();
  assert.equal(m.size, 4);
  // At 3,001 every 1 s grant is past the ghost window: 10.0.0.2's only key goes, and the first
  // key keeps its port 80 segment.
  assert.equal(m.prune(3_001), 1);
  assert.equal(m.size, 2);
  assert.deepEqual(
    m
      .elements(3_001)
      .map((e) => `${e.source} ${e.destination} ${e.from}`)
      .sort(),
    ['10.0.0.1 1.2.3.4 80', '10.0.0.1 5.6.7.8 443'],
  );
  // A later learn on the pruned key starts from what is left.
  const again = m.begin(3_001);
  again.learn(k(443), 1_000);
  const c = again.changes();
  again.commit();
  assert.deepEqual(
    c.adds.map((a) => a.e.from),
    [443],
  );
  assert.equal(m.prune(20_000), 2);
  assert.equal(m.size, 0);
});

test('derived range segments are disjoint; all segments cover exactly the live grants (property)', () => {
  const grant = fc
    .tuple(fc.integer({ min: 0, max: 30 }), fc.integer({ min: 0, max: 30 }), fc.integer({ min: 1, max: 100 }))
    .map(([a, b, e]) => ({
      kind: kindOf(Math.min(a, b), Math.max(a, b)),
      from: Math.min(a, b),
      to: Math.max(a, b),
      expiresAt: e,
    }));
  fc.assert(
    fc.property(
      fc.uniqueArray(grant, { maxLength: 8, selector: (g) => `${g.from}-${g.to}` }),
      fc.integer({ min: 0, max: 100 }),
      (grants, now) => {
        const segs = deriveSegments(grants, now);
        for (let p = 0; p <= 30; p++) {
          const inSegs = segs.filter((s) => p >= s.from && p <= s.to);
          const ranges = inSegs.filter((s) => s.kind === 'range');
          const live = grants.filter((g) => g.expiresAt > now && p >= g.from && p <= g.to);
          const liveRanges = live.filter((g) => g.kind === 'range');
          if (ranges.length > 1) return false;
          if (inSegs.length > 0 !== live.length > 0) return false;
          if (ranges[0] && ranges[0].expiresAt !== Math.max(...liveRanges.map((g) => g.expiresAt)))
            return false;
        }
        return true;
      },
    ),
  );
});

test('a sequence of learns never leaves overlapping segments in what was sent (property)', () => {
  const op = fc
    .tuple(
      fc.integer({ min: 0, max: 20 }),
      fc.integer({ min: 0, max: 20 }),
      fc.integer({ min: 1, max: 50 }),
      fc.boolean(),
    )
    .map(([a, b, t, forget]) => ({
      from: Math.min(a, b),
      to: Math.max(a, b) + (a === b ? 1 : 0),
      t,
      forget,
    }));
  fc.assert(
    fc.property(fc.array(op, { maxLength: 12 }), (ops) => {
      const m = new LearnedModel(0);
      // The kernel as a simulation: what adds put in and removes take out.
      const kernel = new Map<string, { from: number; to: number }>();
      let now = 0;
      for (const o of ops) {
        now += 1;
        const txn = m.begin(now);
        if (o.forget) txn.forget(k(o.from, o.to));
        else txn.learn(k(o.from, o.to), o.t);
        const c = txn.changes();
        txn.commit();
        // Only the interval set (kind 'range') rejects overlaps.
        for (const r of c.removes) if (r.kind === 'range') kernel.delete(`${r.e.from}-${r.e.to}`);
        for (const a of c.adds) if (a.kind === 'range') kernel.set(`${a.e.from}-${a.e.to}`, a.e);
        // Drop what the model says expired (the kernel would have).
        const live = new Set(m.elements(now).map((e) => `${e.from}-${e.to}`));
        for (const key of kernel.keys()) if (!live.has(key)) kernel.delete(key);
        const list = [...kernel.values()];
        for (let i = 0; i < list.length; i++) {
          for (let j = i + 1; j < list.length; j++) {
            const a = list[i] as { from: number; to: number };
            const b = list[j] as { from: number; to: number };
            if (a.from <= b.to && b.from <= a.to) return false;
          }
        }
      }
      return true;
    }),
  );
});

test('uncovered', () => {
  assert.deepEqual(uncovered(0, 10, [{ from: 3, to: 5 }]), [
    { from: 0, to: 2 },
    { from: 6, to: 10 },
  ]);
});
