/**
 * Patterns (docs/policy.md "Patterns"; security cases NAME-06..NAME-12): every form on both sides of
 * every boundary, the public-suffix guard, error messages, and Cilium's label globs.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCode } from '../../../src/core/errors.ts';
import { canonicalName } from '../../../src/core/names.ts';
import { FqdnIndex } from '../../../src/policy/fqdn-index.ts';
import {
  type FqdnPattern,
  globMatchesLabel,
  isPublicSuffix,
  isWildcard,
  PatternError,
  type PatternOptions,
  parsePattern,
  patternMatches,
  patternText,
} from '../../../src/policy/pattern.ts';

function pattern(text: string, options: PatternOptions = {}): FqdnPattern {
  const p = parsePattern(text, options);
  if (p instanceof PatternError) throw new Error(`${text} should parse: ${p.message}`);
  return p;
}

function rejected(text: string, options: PatternOptions = {}): PatternError {
  const p = parsePattern(text, options);
  assert.ok(
    p instanceof PatternError,
    `${JSON.stringify(text)} should be rejected, got ${JSON.stringify(p)}`,
  );
  assert.equal(p.code, ErrorCode.PatternInvalid);
  assert.equal(p.pattern, text.length > 1024 ? text.slice(0, 40) : text);
  return p;
}

/** Both matchers must give the same answer: the reference and the index. */
function matches(p: FqdnPattern, name: string): boolean {
  const n = canonicalName(name);
  const slow = patternMatches(p, n);
  const index = new FqdnIndex<number>();
  index.add(p, 1);
  const fast = index.match(n).length > 0;
  assert.equal(fast, slow, `index and reference disagree on ${patternText(p)} vs ${name}`);
  return slow;
}

function table(text: string, yes: string[], no: string[], options: PatternOptions = {}): void {
  const p = pattern(text, options);
  for (const name of yes) assert.equal(matches(p, name), true, `${text} should match ${name}`);
  for (const name of no) assert.equal(matches(p, name), false, `${text} should not match ${name}`);
}

describe('pattern forms and their boundaries', () => {
  test('exact name: only that name, in any spelling', () => {
    const p = pattern('API.Example.COM.');
    assert.deepEqual(p, { kind: 'exact', name: 'api.example.com' });
    assert.equal(isWildcard(p), false);
    table(
      'api.example.com',
      ['api.example.com', 'API.EXAMPLE.COM', 'api.example.com.'],
      ['example.com', 'a.api.example.com', 'api.example.co', 'api.example.com.evil.net', 'xapi.example.com'],
    );
  });

  test('NAME-06/07: *.example.com is exactly one label in front', () => {
    const p = pattern('*.example.com');
    assert.deepEqual(p, { kind: 'one-label', suffix: 'example.com' });
    assert.equal(isWildcard(p), true);
    table(
      '*.example.com',
      ['a.example.com', 'api.example.com', '_acme.example.com', 'xn--e1aybc.example.com', 'тест.example.com'],
      [
        'example.com', // NAME-06: never the fixed part itself
        'a.b.example.com', // NAME-07: one label means one label
        'x.y.z.example.com',
        'notexample.com', // NAME-09
        'a.notexample.com',
        'example.com.evil.net',
        'a.example.com.evil.net',
        'a.example.co',
        'a.example.org',
      ],
    );
  });

  test('NAME-06/07: **.example.com is one or more labels in front', () => {
    assert.deepEqual(pattern('**.example.com'), { kind: 'any-depth', suffix: 'example.com' });
    table(
      '**.example.com',
      ['a.example.com', 'a.b.example.com', 'x.y.z.w.example.com', '_acme._tcp.example.com'],
      ['example.com', 'notexample.com', 'a.notexample.com', 'example.com.evil.net', 'a.example.com.evil.net'],
    );
  });

  test('deeper fixed parts: *.a.example.com and **.a.example.com', () => {
    table('*.a.example.com', ['x.a.example.com'], ['a.example.com', 'x.y.a.example.com', 'x.b.example.com']);
    table(
      '**.a.example.com',
      ['x.a.example.com', 'x.y.a.example.com'],
      ['a.example.com', 'x.ba.example.com'],
    );
  });

  test('NAME-10: underscore labels work the same in names and patterns', () => {
    table('_acme._tcp.example.com', ['_ACME._tcp.example.com.'], ['acme._tcp.example.com']);
    table('*._tcp.example.com', ['_acme._tcp.example.com', '_sip._tcp.example.com'], ['_tcp.example.com']);
  });

  test('IDN patterns are stored as A-labels and match either spelling', () => {
    const p = pattern('*.тест.com');
    assert.equal(patternText(p), '*.xn--e1aybc.com');
    table('*.тест.com', ['a.xn--e1aybc.com', 'a.тест.com'], ['a.test.com']);
    table('bücher.de', ['xn--bcher-kva.de', 'BÜCHER.de'], ['bucher.de', 'buecher.de']);
  });

  test('NAME-04: a Latin pattern never matches a Cyrillic look-alike, nor the reverse', () => {
    table('paypal.com', ['PAYPAL.com'], ['\u0440\u0430\u0443\u0440\u0430l.com', 'p\u0430ypal.com']);
    table('**.paypal.com', ['www.paypal.com'], ['www.\u0440\u0430\u0443\u0440\u0430l.com']);
    table('\u0440\u0430\u0443\u0440\u0430l.com', ['\u0440\u0430\u0443\u0440\u0430l.com'], ['paypal.com']);
  });

  test('patternText prints the canonical native text', () => {
    const cases: Array<[string, string]> = [
      ['API.example.com.', 'api.example.com'],
      ['*.EXAMPLE.com.', '*.example.com'],
      ['**.Example.Com', '**.example.com'],
      ['*.bücher.de', '*.xn--bcher-kva.de'],
    ];
    for (const [input, text] of cases) assert.equal(patternText(pattern(input)), text);
    assert.equal(patternText(pattern('*', { allowPublicSuffixWildcards: true })), '*');
    assert.equal(patternText(pattern('**', { allowPublicSuffixWildcards: true })), '**');
  });
});

describe('rejected patterns and their messages', () => {
  test('NAME-08: a wildcard must be a whole label; *example.com never matches evil-example.com', () => {
    const e = rejected('*example.com');
    assert.equal(e.message, '"*example.com": a wildcard must be a whole label (write "*.name" or "**.name")');
    for (const text of [
      'ex*ample.com',
      'api*.example.com',
      '*-api.example.com',
      '***.example.com',
      'a*.com',
    ]) {
      assert.match(rejected(text).message, /a wildcard must be a whole label/);
    }
  });

  test('NAME-11: a wildcard only as the first label', () => {
    for (const text of [
      'a.*.example.com',
      '*.*.example.com',
      'example.*',
      'a.**.example.com',
      '**.*.example.com',
    ]) {
      assert.match(rejected(text).message, /a wildcard may only be the first label/, text);
    }
  });

  test('NAME-01 for patterns: one trailing dot is fine, two are an empty label', () => {
    assert.equal(patternText(pattern('*.example.com.')), '*.example.com');
    assert.match(rejected('*.example.com..').message, /empty label/);
    assert.match(rejected('**.example.com..').message, /empty label/);
    assert.match(rejected('example.com..').message, /empty label/);
    assert.match(rejected('*..example.com').message, /empty label/);
    assert.match(rejected('.example.com').message, /empty label/);
    assert.match(rejected('*.a..example.com').message, /empty label/);
    // an empty label must not vanish into an empty fixed part: "*.." is not "*", even where "*" is allowed
    const anything = { allowPublicSuffixWildcards: true, allowPartialLabelWildcards: true };
    for (const text of ['*..', '**..', '..*', '.*', '*..com', 'a*..', 'a*..com', '**..a*.com', '*.a*..']) {
      assert.match(rejected(text, anything).message, /empty label/, text);
    }
  });

  test('NAME-11: lengths (labels over 63, names over 253, patterns no name can match)', () => {
    assert.match(rejected(`*.${'a'.repeat(64)}.com`).message, /has 64 octets; at most 63/);
    assert.match(rejected(`${'a'.repeat(64)}.com`).message, /has 64 octets/);
    // a 254-octet fixed part is not a name
    assert.match(rejected(`*.${'b.'.repeat(125)}com`).message, /octets; at most 253/);
    // a fixed part of 252 octets leaves no room for a label and a dot: nothing can match
    const longSuffix = `${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(63)}.${'e'.repeat(61)}`;
    assert.equal(longSuffix.length, 253);
    assert.match(rejected(`**.${longSuffix}`).message, /no name can match/);
    assert.match(rejected(`*.${longSuffix}`).message, /no name can match/);
    const fits = `${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(63)}.${'e'.repeat(59)}`;
    assert.equal(fits.length, 251);
    const p = pattern(`*.${fits}`);
    assert.equal(matches(p, `x.${fits}`), true);
    // over the input bound: rejected before any work, message clipped
    const huge = rejected(`*.${'a.'.repeat(600)}com`);
    assert.match(huge.message, /too long/);
  });

  test('bad characters and forms the DNS has no place for', () => {
    assert.match(rejected('').message, /may not be empty/);
    assert.match(rejected('*.exa mple.com').message, /"exa mple"/);
    assert.match(rejected('**.[a].com').message, /"\[a\]"/);
    assert.match(rejected('*.example.com%00.evil').message, /contains "%"/);
    assert.match(rejected('*.1.2.3.4').message, /an IP address is not a domain name/);
    assert.match(rejected('*.example.123').message, /may not be numeric/);
    assert.match(rejected('* .com').message, /whole label/);
    assert.match(rejected('*.xn--zz.com').message, /not valid punycode/);
  });

  test('NAME-09: an exact pattern never matches look-alike names', () => {
    table(
      'example.com',
      ['example.com'],
      ['example.com.evil.net', 'notexample.com', 'example.co', 'www.example.com', 'example.com-evil.net'],
    );
  });
});

describe('public-suffix guard (ICANN section of the list, through tldts)', () => {
  const guarded = [
    '*.com',
    '**.com',
    '*.co.uk',
    '**.co.uk',
    '*.uk',
    '*.jp',
    '**.kawasaki.jp',
    '*.foo.kawasaki.jp',
  ];
  for (const text of guarded) {
    test(`${text} is rejected unless allowPublicSuffixWildcards`, () => {
      const e = rejected(text);
      assert.match(e.message, /as its fixed part; set allowPublicSuffixWildcards: true if that is intended/);
      assert.ok(isWildcard(pattern(text, { allowPublicSuffixWildcards: true })));
    });
  }

  test('the fixed part is named in the message', () => {
    assert.equal(
      rejected('**.co.uk').message,
      '"**.co.uk": the wildcard has the public suffix "co.uk" as its fixed part; set allowPublicSuffixWildcards: true if that is intended',
    );
  });

  test('*, **, *. and **. match every name: rejected unless allowed', () => {
    for (const text of ['*', '**', '*.', '**.']) {
      assert.match(rejected(text).message, /the wildcard matches every name/);
    }
    const any = pattern('**', { allowPublicSuffixWildcards: true });
    assert.deepEqual(any, { kind: 'any-depth', suffix: '' });
    for (const n of ['com', 'a.com', 'a.b.c.d']) assert.equal(matches(any, n), true);
    const one = pattern('*', { allowPublicSuffixWildcards: true });
    assert.equal(matches(one, 'localhost'), true);
    assert.equal(matches(one, 'a.com'), false);
  });

  test('private-section suffixes (s3.amazonaws.com, github.io) and ordinary domains are allowed', () => {
    for (const text of [
      '*.s3.amazonaws.com',
      '**.github.io',
      '*.appspot.com',
      '*.example.com',
      '**.city.kawasaki.jp',
      '**.example.co.uk',
    ]) {
      assert.ok(!(parsePattern(text) instanceof PatternError), text);
    }
    assert.equal(isPublicSuffix('s3.amazonaws.com'), false);
    assert.equal(isPublicSuffix('com'), true);
    assert.equal(isPublicSuffix('co.uk'), true);
    assert.equal(isPublicSuffix('example.com'), false);
    assert.equal(isPublicSuffix(''), true);
  });

  test('IDN suffixes are checked as A-labels; case and the trailing dot do not dodge the guard', () => {
    assert.match(rejected('*.рф').message, /public suffix "xn--p1ai"/);
    assert.match(rejected('*.xn--p1ai').message, /public suffix "xn--p1ai"/);
    assert.match(rejected('**.公司.cn').message, /public suffix "xn--55qx5d.cn"/);
    assert.match(rejected('*.COM').message, /public suffix "com"/);
    assert.match(rejected('**.Co.Uk.').message, /public suffix "co.uk"/);
    pattern('*.xn--80ak6aa92e.com');
  });

  test('wildcard and exception rules of the list (*.ck, !www.ck)', () => {
    assert.match(rejected('*.foo.ck').message, /public suffix "foo.ck"/);
    pattern('*.www.ck');
  });

  test('unknown TLDs count as public suffixes (the list default rule)', () => {
    rejected('*.example');
    rejected('*.internal');
    pattern('*.svc.cluster.local');
  });

  test('an exact name that is a public suffix is not a wildcard and is allowed', () => {
    assert.deepEqual(pattern('co.uk'), { kind: 'exact', name: 'co.uk' });
  });
});

describe("label globs (Cilium's meaning, opt-in with allowPartialLabelWildcards)", () => {
  const g = { allowPartialLabelWildcards: true } as const;

  test('* inside a label: any characters within that one label', () => {
    const p = pattern('api*.example.com', g);
    assert.deepEqual(p, {
      kind: 'label-glob',
      globs: ['api*'],
      suffix: 'example.com',
      anyDepthPrefix: false,
    });
    table(
      'api*.example.com',
      ['api.example.com', 'api1.example.com', 'api-eu.example.com', 'API-EU.example.com'],
      [
        'xapi.example.com',
        'a.api.example.com',
        'api.x.example.com',
        'example.com',
        'api.example.com.evil.net',
      ],
      g,
    );
  });

  test('globs at both ends and in the middle', () => {
    table(
      '*-api.example.com',
      ['eu-api.example.com', '-api.example.com'],
      ['api.example.com', 'eu-api2.example.com'],
      g,
    );
    table(
      'a*b*c.example.com',
      ['abc.example.com', 'aXbYc.example.com', 'abbbc.example.com'],
      ['ab.example.com', 'acb.example.com'],
      g,
    );
    table(
      's3*.*.amazonaws.com',
      ['s3.eu.amazonaws.com', 's3-x.us.amazonaws.com'],
      ['s3.amazonaws.com', 'x.eu.amazonaws.com'],
      g,
    );
  });

  test('NAME-08 class: a glob never crosses a dot', () => {
    table(
      '*example.com',
      ['example.com', 'evil-example.com', 'myexample.com'],
      ['a.example.com', 'example.com.evil.net', 'a.b-example.com'],
      {
        ...g,
        allowPublicSuffixWildcards: true,
      },
    );
    // with the guard: the fixed part is "com"
    assert.match(rejected('*example.com', g).message, /public suffix "com"/);
  });

  test('**. before globs: one or more labels in front of them', () => {
    const p = pattern('**.a*.example.com', g);
    assert.deepEqual(p, { kind: 'label-glob', globs: ['a*'], suffix: 'example.com', anyDepthPrefix: true });
    table(
      '**.a*.example.com',
      ['x.a.example.com', 'x.y.abc.example.com'],
      ['a.example.com', 'x.b.example.com'],
      g,
    );
  });

  test('a whole-label * after the first label (Cilium allows it)', () => {
    table(
      'a.*.example.com',
      ['a.b.example.com'],
      ['a.example.com', 'a.b.c.example.com', 'b.b.example.com'],
      g,
    );
  });

  test('runs of * collapse; glob labels are lowercased', () => {
    assert.equal(patternText(pattern('API**.example.com', g)), 'api*.example.com');
  });

  test('label-glob errors', () => {
    assert.match(rejected('a*..example.com', g).message, /empty label/);
    assert.match(rejected('a*b..example.com', g).message, /empty label/);
    assert.match(rejected(`${'a'.repeat(64)}*.example.com`, g).message, /longer than 63 octets/);
    assert.match(rejected('a%*.example.com', g).message, /may contain only letters, digits/);
    assert.match(rejected('*.a*.com', g).message, /public suffix "com"/);
    assert.match(rejected('*.*', g).message, /matches every name/);
    const long = `${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(63)}.${'e'.repeat(61)}`;
    assert.match(rejected(`a*.${long}`, g).message, /no name can match/);
    assert.match(
      rejected(`**.a*.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(63)}.${'e'.repeat(58)}`, g).message,
      /no name can match/,
    );
  });

  test('globMatchesLabel: zero or more characters, iterative', () => {
    assert.equal(globMatchesLabel('*', ''), true);
    assert.equal(globMatchesLabel('*', 'abc'), true);
    assert.equal(globMatchesLabel('a*', 'a'), true);
    assert.equal(globMatchesLabel('a*c', 'abbbc'), true);
    assert.equal(globMatchesLabel('a*c', 'abbbd'), false);
    assert.equal(globMatchesLabel('*a*a*a*a*b', 'a'.repeat(63)), false);
    assert.equal(globMatchesLabel('abc', 'abc'), true);
    assert.equal(globMatchesLabel('abc', 'abcd'), false);
    assert.equal(globMatchesLabel('', ''), true);
  });
});

describe('NAME-12: matching is linear; crafted names and globs cannot make it backtrack', () => {
  test('a label of 63 a-s against a glob built for catastrophic backtracking', () => {
    const p = pattern(`${'*a'.repeat(20)}*b.example.com`, { allowPartialLabelWildcards: true });
    const name = `${'a'.repeat(63)}.example.com`;
    // A backtracking regex (a*)*b style would take exponential time here; the glob is O(n*m).
    for (let i = 0; i < 1000; i++) assert.equal(matches(p, name), false);
  });

  test('a 253-octet name of 126 one-letter labels against many deep patterns', () => {
    const name = canonicalName(`${'a.'.repeat(124)}x.com`);
    assert.equal(name.length, 253);
    const index = new FqdnIndex<number>();
    for (let i = 0; i < 1000; i++) index.add(pattern(`**.${'a.'.repeat(i % 100)}x.com`), i);
    assert.equal(index.match(name).length, 1000);
  });
});
