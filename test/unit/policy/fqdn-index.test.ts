/**
 * The fast matcher (FqdnIndex) against the reference matcher (patternMatches): same answers on
 * random names and random pattern sets, every form included. Names and patterns are built from
 * a small alphabet of labels so that matches actually happen.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { type CanonicalName, canonicalName } from '../../../src/core/names.ts';
import { FqdnIndex } from '../../../src/policy/fqdn-index.ts';
import {
  type FqdnPattern,
  PatternError,
  parsePattern,
  patternMatches,
  patternText,
} from '../../../src/policy/pattern.ts';

const LABELS = ['a', 'b', 'ab', 'aab', 'api', 'www', 'example', 'com', 'co', 'uk', 'x-y', '_t', 'xn--e1aybc'];
const labelArb = fc.constantFrom(...LABELS);
const labelsArb = (min: number, max: number) => fc.array(labelArb, { minLength: min, maxLength: max });
const nameArb = labelsArb(1, 7).map((l) => canonicalName(l.join('.')));

/** A glob label: a label of the alphabet with some characters replaced by or joined with `*`. */
const globArb = fc.oneof(
  fc.constant('*'),
  fc.tuple(labelArb, fc.nat(), fc.nat()).map(([l, i, j]) => {
    const a = i % (l.length + 1);
    const b = a + (j % (l.length - a + 1));
    return `${l.slice(0, a)}*${l.slice(b)}`;
  }),
  fc.tuple(labelArb, labelArb).map(([x, y]) => `${x}*${y}`),
  labelArb,
);

const patternArb: fc.Arbitrary<FqdnPattern> = fc.oneof(
  nameArb.map((name) => ({ kind: 'exact', name }) as const),
  labelsArb(0, 4).map((s) => ({ kind: 'one-label', suffix: s.join('.') }) as const),
  labelsArb(0, 4).map((s) => ({ kind: 'any-depth', suffix: s.join('.') }) as const),
  fc
    .record({
      globs: fc.array(globArb, { minLength: 1, maxLength: 3 }),
      suffix: labelsArb(0, 3),
      anyDepthPrefix: fc.boolean(),
    })
    .map(
      (r) =>
        ({
          kind: 'label-glob',
          globs: r.globs,
          suffix: r.suffix.join('.'),
          anyDepthPrefix: r.anyDepthPrefix,
        }) as const,
    ),
);

function reference(patterns: readonly FqdnPattern[], name: CanonicalName): number[] {
  const out: number[] = [];
  patterns.forEach((p, i) => {
    if (patternMatches(p, name)) out.push(i);
  });
  return out;
}

function indexOf(patterns: readonly FqdnPattern[], wide = false): FqdnIndex<number> {
  // wide: slots without fingerprints, the layout for record tables past 2^24 words
  const index = new FqdnIndex<number>(wide ? { narrowRecordWords: 0 } : {});
  patterns.forEach((p, i) => {
    index.add(p, i);
  });
  return index;
}

const sorted = (a: number[]) => [...a].sort((x, y) => x - y);

describe('FqdnIndex agrees with the reference matcher', () => {
  test('random pattern sets and random names (every form)', () => {
    fc.assert(
      fc.property(
        fc.array(patternArb, { minLength: 1, maxLength: 40 }),
        fc.array(nameArb, { minLength: 1, maxLength: 20 }),
        (patterns, names) => {
          const index = indexOf(patterns);
          assert.equal(index.size, patterns.length);
          for (const name of names) {
            const want = reference(patterns, name);
            const got = sorted(index.match(name));
            assert.deepEqual(got, want, `${name} vs [${patterns.map(patternText).join(', ')}]`);
          }
        },
      ),
      { numRuns: 1500 },
    );
  });

  test('the wide layout (no fingerprints) gives the same answers', () => {
    fc.assert(
      fc.property(
        fc.array(patternArb, { minLength: 1, maxLength: 40 }),
        fc.array(nameArb, { minLength: 1, maxLength: 20 }),
        (patterns, names) => {
          const index = indexOf(patterns, true);
          for (const name of names) assert.deepEqual(sorted(index.match(name)), reference(patterns, name));
        },
      ),
      { numRuns: 500 },
    );
  });

  test('patterns written as text, through parsePattern', () => {
    const textArb = fc.oneof(
      labelsArb(1, 4).map((l) => l.join('.')),
      labelsArb(1, 4).map((l) => `*.${l.join('.')}`),
      labelsArb(1, 4).map((l) => `**.${l.join('.')}`),
      fc
        .tuple(fc.array(globArb, { minLength: 1, maxLength: 2 }), labelsArb(1, 3), fc.boolean())
        .map(([g, s, deep]) => `${deep ? '**.' : ''}${g.join('.')}.${s.join('.')}`),
    );
    const options = { allowPartialLabelWildcards: true, allowPublicSuffixWildcards: true };
    fc.assert(
      fc.property(
        fc.array(textArb, { minLength: 1, maxLength: 30 }),
        fc.array(nameArb, { minLength: 1, maxLength: 20 }),
        (texts, names) => {
          const patterns = texts
            .map((t) => parsePattern(t, options))
            .filter((p): p is FqdnPattern => !(p instanceof PatternError));
          const index = indexOf(patterns);
          for (const name of names) assert.deepEqual(sorted(index.match(name)), reference(patterns, name));
        },
      ),
      { numRuns: 800 },
    );
  });

  test('every matching pattern is reported exactly once, and match() appends to `out`', () => {
    const index = new FqdnIndex<string>();
    index.add({ kind: 'exact', name: canonicalName('a.example.com') }, 'exact');
    index.add({ kind: 'one-label', suffix: 'example.com' }, 'one');
    index.add({ kind: 'any-depth', suffix: 'example.com' }, 'any');
    index.add({ kind: 'any-depth', suffix: 'com' }, 'any-com');
    index.add({ kind: 'any-depth', suffix: '' }, 'everything');
    index.add({ kind: 'label-glob', globs: ['a*'], suffix: 'example.com', anyDepthPrefix: false }, 'glob');
    index.add({ kind: 'exact', name: canonicalName('a.example.com') }, 'exact-again');
    const out = ['before'];
    const got = index.match(canonicalName('a.example.com'), out);
    assert.equal(got, out);
    assert.deepEqual(
      [...got].sort(),
      ['any', 'any-com', 'before', 'everything', 'exact', 'exact-again', 'glob', 'one'].sort(),
    );
    assert.deepEqual(index.match(canonicalName('example.com')).sort(), ['any-com', 'everything']);
    assert.deepEqual(index.match(canonicalName('org')), ['everything']);
  });

  test('adding after a match (or after seal) takes effect on the next match', () => {
    const index = new FqdnIndex<string>();
    index.add({ kind: 'exact', name: canonicalName('a.example.com') }, 'first');
    assert.deepEqual(index.match(canonicalName('a.example.com')), ['first']);
    index.add({ kind: 'any-depth', suffix: 'example.com' }, 'second');
    assert.deepEqual(index.match(canonicalName('a.example.com')).sort(), ['first', 'second']);
    index.seal();
    index.add({ kind: 'one-label', suffix: '' }, 'third');
    assert.deepEqual(index.match(canonicalName('localhost')), ['third']);
    assert.equal(index.size, 3);
  });

  test('many keys in one table: every exact name is found, near misses are not', () => {
    const index = new FqdnIndex<number>();
    const n = 20_000;
    for (let i = 0; i < n; i++) index.add({ kind: 'exact', name: canonicalName(`h${i}.example.com`) }, i);
    index.seal();
    for (let i = 0; i < n; i += 7) {
      assert.deepEqual(index.match(canonicalName(`h${i}.example.com`)), [i]);
      assert.deepEqual(index.match(canonicalName(`h${i}.example.co`)), []);
      assert.deepEqual(index.match(canonicalName(`xh${i}.example.com`)), []);
    }
  });

  test('an empty index matches nothing', () => {
    assert.deepEqual(new FqdnIndex<number>().match(canonicalName('example.com')), []);
  });
});

describe('adversarial sizes (NAME-12): bounded work, no assertion on time', () => {
  test('10,000 patterns of every form and long names', () => {
    const patterns: FqdnPattern[] = [];
    for (let i = 0; i < 10_000; i++) {
      const suffix = `l${i % 97}.${'a.'.repeat(i % 60)}example.com`;
      switch (i % 4) {
        case 0:
          patterns.push({ kind: 'exact', name: canonicalName(`x${i}.${suffix}`) });
          break;
        case 1:
          patterns.push({ kind: 'one-label', suffix });
          break;
        case 2:
          patterns.push({ kind: 'any-depth', suffix });
          break;
        default:
          patterns.push({
            kind: 'label-glob',
            globs: [`*a*a*a*a*a*${i % 7}`],
            suffix,
            anyDepthPrefix: i % 8 === 3,
          });
      }
    }
    const index = indexOf(patterns);
    const names = [
      canonicalName(`${'a.'.repeat(124)}x.com`),
      canonicalName(`${'a'.repeat(63)}.${'a.'.repeat(59)}example.com`),
      canonicalName(`${'a.'.repeat(70)}l3.${'a.'.repeat(3)}example.com`),
      canonicalName(`${'a'.repeat(62)}3.l3.${'a.'.repeat(3)}example.com`),
      canonicalName(`x4.l4.${'a.'.repeat(4)}example.com`),
    ];
    for (const name of names) {
      assert.deepEqual(sorted(index.match(name)), reference(patterns, name), name);
    }
  });
});
