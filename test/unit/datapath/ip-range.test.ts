import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { parseCidr } from '../../../src/core/ip.ts';
import {
  bigIntToIp,
  cidrRange,
  ipToBigInt,
  mergeRanges,
  parseRangeText,
  prefixRange,
  rangePrefixes,
  rangeText,
  subtractRanges,
} from '../../../src/datapath/ip-range.ts';

function cidr(text: string) {
  const c = parseCidr(text);
  if (typeof c === 'string') throw new Error(c);
  return c;
}

test('address <-> bigint round trip, both families', () => {
  fc.assert(
    fc.property(fc.ipV4(), (ip) => bigIntToIp(ipToBigInt(ip), 4) === ip),
    { numRuns: 200 },
  );
  assert.equal(bigIntToIp(ipToBigInt('2001:db8::1'), 6), '2001:db8::1');
  assert.equal(bigIntToIp(ipToBigInt('::'), 6), '::');
});

test('cidr minus except gives the expected ranges', () => {
  const pieces = subtractRanges(cidrRange(cidr('10.0.0.0/24')), [cidrRange(cidr('10.0.0.16/28'))]);
  assert.deepEqual(pieces.map(rangeText), ['10.0.0.0-10.0.0.15', '10.0.0.32-10.0.0.255']);
  const v6 = subtractRanges(cidrRange(cidr('2001:db8::/126')), [cidrRange(cidr('2001:db8::1/128'))]);
  assert.deepEqual(v6.map(rangeText), ['2001:db8::', '2001:db8::2-2001:db8::3']);
  // A hole of the other family is ignored; a hole covering everything leaves nothing.
  assert.equal(subtractRanges(cidrRange(cidr('10.0.0.0/8')), [cidrRange(cidr('::/0'))]).length, 1);
  assert.equal(subtractRanges(cidrRange(cidr('10.0.0.0/8')), [cidrRange(cidr('0.0.0.0/0'))]).length, 0);
});

test('subtract: no piece contains a hole address, every other address is kept (property)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 })), {
        maxLength: 5,
      }),
      fc.integer({ min: 0, max: 255 }),
      (holes, probe) => {
        const base = { family: 4 as const, start: 0n, end: 255n };
        const hs = holes.map(([a, b]) => ({
          family: 4 as const,
          start: BigInt(Math.min(a, b)),
          end: BigInt(Math.max(a, b)),
        }));
        const pieces = subtractRanges(base, hs);
        const p = BigInt(probe);
        const inHole = hs.some((h) => p >= h.start && p <= h.end);
        const inPiece = pieces.some((r) => p >= r.start && p <= r.end);
        return inHole !== inPiece;
      },
    ),
  );
});

test('merge joins touching and overlapping ranges', () => {
  const r = (s: number, e: number) => ({ family: 4 as const, start: BigInt(s), end: BigInt(e) });
  assert.deepEqual(mergeRanges([r(5, 9), r(0, 4), r(20, 30), r(25, 26)]), [r(0, 9), r(20, 30)]);
});

test('prefixRange masks host bits and rejects bad lengths', () => {
  assert.equal(
    rangeText(prefixRange('10.1.2.3', 24) ?? { family: 4, start: 0n, end: 0n }),
    '10.1.2.0-10.1.2.255',
  );
  assert.equal(prefixRange('10.1.2.3', 33), null);
  assert.equal(prefixRange('nope', 8), null);
});

test('rangePrefixes: the fewest aligned prefixes whose union is the range (property)', () => {
  const v4 = (n: number) => ({ family: 4 as const, start: BigInt(n), end: BigInt(n) });
  assert.deepEqual(rangePrefixes({ family: 4, start: 0n, end: 2n ** 32n - 1n }), [['0.0.0.0', 0]]);
  assert.deepEqual(rangePrefixes(v4(5)), [['0.0.0.5', 32]]);
  const r = parseRangeText('10.0.1.3-10.0.1.255');
  assert.ok(r);
  assert.deepEqual(rangePrefixes(r), [
    ['10.0.1.3', 32],
    ['10.0.1.4', 30],
    ['10.0.1.8', 29],
    ['10.0.1.16', 28],
    ['10.0.1.32', 27],
    ['10.0.1.64', 26],
    ['10.0.1.128', 25],
  ]);
  fc.assert(
    fc.property(fc.nat(2 ** 32 - 1), fc.nat(2 ** 32 - 1), (a, b) => {
      const range = { family: 4 as const, start: BigInt(Math.min(a, b)), end: BigInt(Math.max(a, b)) };
      const ps = rangePrefixes(range);
      if (ps.length > 62) return false;
      let next = range.start;
      for (const [addr, len] of ps) {
        const start = ipToBigInt(addr);
        const size = 1n << BigInt(32 - len);
        // Contiguous and aligned (greedy largest blocks: at most 2 x 31 of them).
        if (start !== next || start % size !== 0n) return false;
        next = start + size;
      }
      return next === range.end + 1n;
    }),
  );
});

test('parseRangeText reads what rangeText prints', () => {
  for (const t of ['10.0.0.1', '10.0.0.1-10.0.0.9', 'fd00::-fd00::ff', '::']) {
    const r = parseRangeText(t);
    assert.ok(r, t);
    assert.equal(rangeText(r), t);
  }
  for (const t of ['10.0.0.9-10.0.0.1', '10.0.0.1-fd00::1', 'x', '10.0.0.1/24', ''])
    assert.equal(parseRangeText(t), null, t);
});
