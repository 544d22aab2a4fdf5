import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { rangeText } from '../../../src/datapath/ip-range.ts';
import {
  modeRanges,
  type OwnedRange,
  ownedRanges,
  parseSource,
  type SourceClaim,
  sourceCovers,
} from '../../../src/datapath/source-ranges.ts';
import type { Mode } from '../../../src/policy/model.ts';

function claim(text: string, mode: Mode | null): SourceClaim {
  const p = parseSource(text);
  if (typeof p === 'string') throw new Error(p);
  return { prefix: p, mode };
}

function show(owned: readonly OwnedRange[]): string[] {
  return owned.map((o) => `${rangeText(o.range)} ${o.mode} ${o.owner}`);
}

test('parseSource: address or CIDR; a host prefix is the address', () => {
  const p = (t: string) => {
    const r = parseSource(t);
    return typeof r === 'string' ? `error: ${r}` : `${r.text} ${rangeText(r.range)}`;
  };
  assert.equal(p('10.0.1.2'), '10.0.1.2 10.0.1.2');
  assert.equal(p('10.0.1.2/32'), '10.0.1.2 10.0.1.2');
  assert.equal(p('10.0.1.0/24'), '10.0.1.0/24 10.0.1.0-10.0.1.255');
  assert.equal(p('FD00:0::/64'), 'fd00::/64 fd00::-fd00::ffff:ffff:ffff:ffff');
  assert.equal(p('fd00::1/128'), 'fd00::1 fd00::1');
  assert.equal(p('0.0.0.0/0'), '0.0.0.0/0 0.0.0.0-255.255.255.255');
  assert.match(p('10.0.1.1/24'), /^error: .*host bits/);
  assert.match(p('10.0.1.0/33'), /^error/);
  assert.match(p('nope'), /^error/);
  assert.match(p('x'.repeat(100)), /^error/);
});

test('sourceCovers', () => {
  assert.equal(sourceCovers('10.0.1.0/24', '10.0.1.77'), true);
  assert.equal(sourceCovers('10.0.1.0/24', '10.0.2.1'), false);
  assert.equal(sourceCovers('10.0.1.2', '10.0.1.2'), true);
  assert.equal(sourceCovers('10.0.1.2/32', '10.0.1.2'), true);
  assert.equal(sourceCovers('fd00::/64', '10.0.1.2'), false);
  assert.equal(sourceCovers('bad', '10.0.1.2'), false);
});

test('a /32 Audit host inside a /24 Enforce group is carved out', () => {
  const owned = ownedRanges([claim('10.0.1.0/24', 'Enforce'), claim('10.0.1.2/32', 'Audit')]);
  assert.deepEqual(show(owned), [
    '10.0.1.0-10.0.1.1 Enforce 10.0.1.0/24',
    '10.0.1.2 Audit 10.0.1.2',
    '10.0.1.3-10.0.1.255 Enforce 10.0.1.0/24',
  ]);
  assert.deepEqual(modeRanges(owned, 'Enforce').map(rangeText), ['10.0.1.0-10.0.1.1', '10.0.1.3-10.0.1.255']);
  assert.deepEqual(modeRanges(owned, 'Audit').map(rangeText), ['10.0.1.2']);
});

test('same-mode neighbours merge in the mode sets but keep their owners', () => {
  const owned = ownedRanges([claim('10.0.1.0/24', 'Enforce'), claim('10.0.1.2', 'Enforce')]);
  assert.equal(owned.length, 3);
  assert.deepEqual(modeRanges(owned, 'Enforce').map(rangeText), ['10.0.1.0-10.0.1.255']);
});

test('nesting, ungoverned carve-outs, duplicates and both families', () => {
  const owned = ownedRanges([
    claim('10.0.0.0/16', 'Audit'),
    claim('10.0.1.0/24', 'Enforce'),
    claim('10.0.1.128/25', null),
    claim('10.0.1.200', 'Audit'),
    claim('10.0.0.0/16', 'Enforce'),
    claim('fd00::/64', 'Audit'),
    claim('fd00::1', null),
    claim('10.0.1.0/24', null),
  ]);
  assert.deepEqual(show(owned), [
    '10.0.0.0-10.0.0.255 Enforce 10.0.0.0/16',
    '10.0.1.0-10.0.1.127 Enforce 10.0.1.0/24',
    '10.0.1.200 Audit 10.0.1.200',
    '10.0.2.0-10.0.255.255 Enforce 10.0.0.0/16',
    'fd00:: Audit fd00::/64',
    'fd00::2-fd00::ffff:ffff:ffff:ffff Audit fd00::/64',
  ]);
});

test('the whole address space and its last address', () => {
  const owned = ownedRanges([claim('0.0.0.0/0', 'Enforce'), claim('255.255.255.255', 'Audit')]);
  assert.deepEqual(show(owned), [
    '0.0.0.0-255.255.255.254 Enforce 0.0.0.0/0',
    '255.255.255.255 Audit 255.255.255.255',
  ]);
});

// Property: over a small space (10.0.0.0/26, prefixes /26../32), every address is owned by the
// longest claimed prefix containing it, in that prefix's mode (or by nobody).
const BASE = (10 << 24) >>> 0;
const arbClaim = fc
  .tuple(
    fc.integer({ min: 26, max: 32 }),
    fc.integer({ min: 0, max: 63 }),
    fc.constantFrom<Mode | null>('Enforce', 'Audit', null),
  )
  .map(([len, offset, mode]) => {
    const size = 2 ** (32 - len);
    const start = BASE + Math.floor(offset / size) * size;
    const addr = [24, 16, 8, 0].map((s) => (start >>> s) & 255).join('.');
    return claim(`${addr}/${len}`, mode);
  });

test('ownedRanges is longest-prefix match, disjoint and sorted (property)', () => {
  fc.assert(
    fc.property(fc.array(arbClaim, { maxLength: 12 }), (claims) => {
      const owned = ownedRanges(claims);
      for (let i = 1; i < owned.length; i++) {
        const a = owned[i - 1] as OwnedRange;
        const b = owned[i] as OwnedRange;
        if (!(a.range.end < b.range.start)) return false;
      }
      for (let i = 0; i < 64; i++) {
        const ip = BigInt(BASE + i);
        // Brute force: the longest claimed prefix containing ip; the strictest claim of that prefix.
        let best: SourceClaim | null = null;
        for (const c of claims) {
          const r = c.prefix.range;
          if (ip < r.start || ip > r.end) continue;
          const rank = (m: Mode | null) => (m === 'Enforce' ? 2 : m === 'Audit' ? 1 : 0);
          if (
            best === null ||
            c.prefix.prefix > best.prefix.prefix ||
            (c.prefix.prefix === best.prefix.prefix && rank(c.mode) > rank(best.mode))
          )
            best = c;
        }
        const hits = owned.filter((o) => o.range.start <= ip && ip <= o.range.end);
        if (hits.length > 1) return false;
        const hit = hits[0];
        if (best === null || best.mode === null) {
          if (hit !== undefined) return false;
        } else if (hit === undefined || hit.mode !== best.mode || hit.owner !== best.prefix.text)
          return false;
      }
      return true;
    }),
    { numRuns: 500 },
  );
});

test('ownedRanges scales: 20,000 host sources inside one /16', () => {
  const claims: SourceClaim[] = [claim('10.1.0.0/16', 'Enforce')];
  for (let i = 0; i < 20_000; i++) claims.push(claim(`10.1.${i >> 8}.${i & 255}`, 'Audit'));
  const owned = ownedRanges(claims);
  assert.equal(owned.filter((o) => o.mode === 'Audit').length, 20_000);
  assert.deepEqual(modeRanges(owned, 'Audit').map(rangeText), ['10.1.0.0-10.1.78.31']);
});
