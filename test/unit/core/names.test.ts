/**
 * Canonical names (docs/policy.md "Names"; security cases NAME-01..04, NAME-10, NAME-11).
 * Every rejection is asserted by its rule and the label it names, never by message text alone.
 */
import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import { describe, test } from 'node:test';
import { domainToASCII } from 'node:url';
import fc from 'fast-check';
import { ErrorCode } from '../../../src/core/errors.ts';
import {
  canonicalName,
  labelsOf,
  MAX_LABEL_OCTETS,
  MAX_NAME_OCTETS,
  NameError,
  type NameRule,
  tryCanonicalName,
  tryWireName,
} from '../../../src/core/names.ts';

const CANONICAL = /^[a-z0-9_-]{1,63}(\.[a-z0-9_-]{1,63})*$/;

function rejects(input: string, rule: NameRule, label?: string | null): NameError {
  const result = tryCanonicalName(input);
  assert.ok(
    result instanceof NameError,
    `${JSON.stringify(input)} should be rejected, got ${String(result)}`,
  );
  assert.equal(result.rule, rule, `${JSON.stringify(input)}: ${result.message}`);
  if (label !== undefined) assert.equal(result.label, label, `${JSON.stringify(input)}: ${result.message}`);
  assert.equal(result.code, ErrorCode.NameInvalid);
  assert.equal(result.input, input);
  return result;
}

function accepts(input: string, expected: string): void {
  assert.equal(tryCanonicalName(input), expected, JSON.stringify(input));
  assert.equal(canonicalName(input), expected);
}

const label = (n: number, c = 'a') => c.repeat(n);
/** A name of exactly n octets made of 63-octet labels and a shorter last one. */
function nameOfLength(n: number): string {
  const parts: string[] = [];
  let left = n;
  while (left > 0) {
    const take = Math.min(63, left);
    parts.push(label(take, 'b'));
    left -= take + 1;
  }
  const name = parts.join('.');
  // Trim or pad the last label so that the total is exactly n.
  if (name.length > n) return name.slice(0, n);
  return name;
}

describe('canonicalName: accepted spellings', () => {
  const table: Array<[string, string]> = [
    // NAME-01: case and one trailing dot
    ['ALLOWED.COM', 'allowed.com'],
    ['allowed.com.', 'allowed.com'],
    ['Allowed.Com.', 'allowed.com'],
    ['allowed.com', 'allowed.com'],
    // NAME-03: UTS #46 ToASCII; U-labels and A-labels are the same name
    ['тест.example.com', 'xn--e1aybc.example.com'],
    ['ТЕСТ.example.com', 'xn--e1aybc.example.com'],
    ['xn--e1aybc.example.com', 'xn--e1aybc.example.com'],
    ['XN--E1AYBC.EXAMPLE.COM', 'xn--e1aybc.example.com'],
    ['bücher.de', 'xn--bcher-kva.de'],
    ['BÜCHER.de', 'xn--bcher-kva.de'],
    ['xn--bcher-kva.de', 'xn--bcher-kva.de'],
    ['münchen.de.', 'xn--mnchen-3ya.de'],
    ['中国.cn', 'xn--fiqs8s.cn'],
    ['😀.example.com', 'xn--e28h.example.com'],
    ['faß.de', 'xn--fa-hia.de'],
    // NAME-10: underscores (SRV, ACME, DKIM names)
    ['_acme._tcp.example.com', '_acme._tcp.example.com'],
    ['_dmarc.Example.COM', '_dmarc.example.com'],
    ['a_b.example.com', 'a_b.example.com'],
    // hyphens anywhere (the name rules do not forbid them at the ends)
    ['ab--cd.example.com', 'ab--cd.example.com'],
    // numbers are fine anywhere but in the last label
    ['1.2.3.example', '1.2.3.example'],
    ['123.example.com', '123.example.com'],
    ['a.1e3', 'a.1e3'],
    // a single label
    ['localhost', 'localhost'],
  ];
  for (const [input, expected] of table) {
    test(`${JSON.stringify(input)} -> ${expected}`, () => accepts(input, expected));
  }

  test('NAME-03: the U-label and the A-label are one canonical name', () => {
    assert.equal(canonicalName('тест.example.com'), canonicalName('xn--e1aybc.example.com'));
  });

  test('NAME-04: a Cyrillic homoglyph of paypal.com is never paypal.com, and prints as punycode', () => {
    // р, а, у are Cyrillic (U+0440, U+0430, U+0443)
    const spoof = canonicalName('\u0440\u0430\u0443\u0440\u0430l.com');
    assert.notEqual(spoof, canonicalName('paypal.com'));
    assert.ok(spoof.startsWith('xn--'), spoof);
    assert.match(spoof, CANONICAL);
    // mixed: one Cyrillic 'а' in an otherwise Latin label
    const one = canonicalName('p\u0430ypal.com');
    assert.notEqual(one, 'paypal.com');
    assert.ok(one.startsWith('xn--'), one);
  });

  test('labels of 63 octets and names of 253 octets are accepted', () => {
    accepts(`${label(63)}.com`, `${label(63)}.com`);
    const n253 = nameOfLength(253);
    assert.equal(n253.length, 253);
    accepts(n253, n253);
    accepts(`${n253}.`, n253);
    assert.equal(MAX_LABEL_OCTETS, 63);
    assert.equal(MAX_NAME_OCTETS, 253);
  });

  test('labelsOf splits left to right', () => {
    assert.deepEqual(labelsOf(canonicalName('A.b.C.')), ['a', 'b', 'c']);
  });
});

describe('canonicalName: rejections name the rule and the label', () => {
  const table: Array<[string, NameRule, string | null]> = [
    // NAME-01: one trailing dot is the root; two are an empty label
    ['allowed.com..', 'empty-label', ''],
    ['allowed.com...', 'empty-label', ''],
    ['.allowed.com', 'empty-label', ''],
    ['a..b.com', 'empty-label', ''],
    ['..', 'empty-label', ''],
    ['', 'empty', null],
    ['.', 'empty', null],
    // NAME-11: lengths
    [`${label(64)}.com`, 'label-too-long', label(64)],
    [`a.${label(64)}`, 'label-too-long', label(64)],
    [label(2000), 'too-long', null],
    // bad characters, named with the label that holds them
    ['a\u0000b.com', 'bad-character', 'a\u0000b'],
    ['a b.com', 'bad-character', 'a b'],
    [' example.com', 'bad-character', ' example'],
    ['example.com ', 'bad-character', 'com '],
    ['exa\tmple.com', 'bad-character', 'exa\tmple'],
    ['exa\nmple.com', 'bad-character', 'exa\nmple'],
    ['*.example.com', 'bad-character', '*'],
    ['a*b.example.com', 'bad-character', 'a*b'],
    ['example.com:443', 'bad-character', 'com:443'],
    ['user@example.com', 'bad-character', 'user@example'],
    ['a,b.com', 'bad-character', 'a,b'],
    ["a'b.com", 'bad-character', "a'b"],
    ['a"b.com', 'bad-character', 'a"b'],
    // NAME-02: brackets, nested brackets, host:port
    ['[allowed.com]', 'bad-character', '[allowed'],
    ['[allowed.com]:443', 'bad-character', '[allowed'],
    ['[[allowed.com]]', 'bad-character', '[[allowed'],
    ['allowed.com]', 'bad-character', 'com]'],
    // NAME-09: percent forms never decode into dots or NULs
    ['example.com%00.evil', 'bad-character', 'com%00'],
    ['a%2eb.com', 'bad-character', 'a%2eb'],
    ['%41.com', 'bad-character', '%41'],
    ['\u0442\u0435\u0441\u0442%2ecom', 'bad-character', '\u0442\u0435\u0441\u0442%2ecom'],
    // URL delimiters must not cut the name short (the URL host parser stops at them)
    ['allowed.com/.evil.net', 'bad-character', 'com/'],
    ['allowed.com\\.evil.net', 'bad-character', 'com\\'],
    ['allowed.com?.evil.net', 'bad-character', 'com?'],
    ['allowed.com#.evil.net', 'bad-character', 'com#'],
    ['\u0442\u0435\u0441\u0442.com/x', 'bad-character', 'com/x'],
    ['http://x.com', 'bad-character', 'http://x'],
    // characters UTS #46 disallows
    ['ex\u200dample.com', 'idna', 'ex\u200dample'],
    ['a\u2488.com', 'idna', 'a\u2488'],
    ['a\uff0fb.com', 'idna', 'a\uff0fb'],
    ['\u3000.com', 'idna', '\u3000'],
    // NAME-03: invalid A-labels
    ['xn--zz.example.com', 'bad-punycode', 'xn--zz'],
    ['xn--.example.com', 'bad-punycode', 'xn--'],
    ['xn--a.com', 'bad-punycode', 'xn--a'],
    ['xn--abc-.com', 'bad-punycode', 'xn--abc-'],
    ['xn--e1aybc-.example.com', 'bad-punycode', 'xn--e1aybc-'],
    // decodes, but not to itself: not the A-label of anything
    ['xn--a-ecp.ru', 'bad-punycode', 'xn--a-ecp'],
    // IP literals are not names, also in fullwidth digits or brackets
    ['1.2.3.4', 'ip-literal', null],
    ['1.2.3.4.', 'ip-literal', null],
    ['\uff11.\uff12.\uff13.\uff14', 'ip-literal', null],
    ['\uff11\uff12\uff17.0.0.1', 'ip-literal', null],
    ['::1', 'ip-literal', null],
    ['[::1]', 'ip-literal', null],
    ['2001:db8::1', 'ip-literal', null],
    // a numeric last label (the URL standard reads such hosts as IPv4)
    ['example.123', 'numeric-tld', '123'],
    ['example.0x1f', 'numeric-tld', '0x1f'],
    ['example.0x', 'numeric-tld', '0x'],
    ['127.1', 'numeric-tld', '1'],
    ['0x7f.1', 'numeric-tld', '1'],
    ['123', 'numeric-tld', '123'],
  ];
  for (const [input, rule, lbl] of table) {
    test(`${JSON.stringify(input).slice(0, 60)} -> ${rule}`, () => {
      rejects(input, rule, lbl);
    });
  }

  test('names of 254 octets are rejected (and with a trailing dot still count 254)', () => {
    const n254 = nameOfLength(254);
    assert.equal(n254.length, 254);
    rejects(n254, 'too-long', null);
    rejects(`${n254}.`, 'too-long', null);
  });

  test('an IDN name that grows past 253 octets as A-labels is rejected', () => {
    // 4 labels of 20 Cyrillic letters: 84 characters as text, far more as punycode
    const big = Array.from({ length: 12 }, () => '\u0436'.repeat(20)).join('.');
    assert.ok(big.length <= 253);
    const r = tryCanonicalName(big);
    assert.ok(r instanceof NameError);
    assert.ok(r.rule === 'too-long' || r.rule === 'label-too-long', r.rule);
  });

  test('a U-label is measured as its A-label: 59 characters that become 64+ octets are too long', () => {
    const u = `${'a'.repeat(58)}\u00e4`;
    assert.equal(u.length, 59);
    const r = rejects(`${u}.com`, 'label-too-long');
    assert.ok(r.label?.startsWith('xn--'), String(r.label));
    assert.ok((r.label?.length ?? 0) > MAX_LABEL_OCTETS);
  });

  test('issue 13 #6: policy text IDNA would map (dot variants, fullwidth, soft hyphen, NFD) is refused, never another name', () => {
    for (const input of [
      'a\u3002b.com',
      'a\uff0eb.com',
      'a\uff61b.com',
      'Ｅｘａｍｐｌｅ.com',
      '\uff21\uff22\uff23\uff0e\uff43\uff4f\uff4d',
      'a\u00adb.com',
      'bu\u0308cher.de',
    ]) {
      const r = rejects(input, 'idna-mapped');
      assert.match(r.message, /clients send/);
    }
  });

  test('canonicalName throws the NameError; the message quotes the input and names the label', () => {
    assert.throws(
      () => canonicalName('allowed.com/.evil.net'),
      (err: unknown) =>
        err instanceof NameError &&
        err.label === 'com/' &&
        err.message.startsWith('"allowed.com/.evil.net": label "com/" contains "/"'),
    );
    assert.throws(() => canonicalName(`${label(64)}.com`), /has 64 octets; at most 63 are allowed/);
  });

  test('very long input is clipped in the message', () => {
    const r = tryCanonicalName(label(5000));
    assert.ok(r instanceof NameError);
    assert.ok(r.message.length < 200, r.message);
  });
});

/** Names built from labels that exercise case, IDN, underscores and digits. */
const labelArb = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/),
  fc.constantFrom(
    'тест',
    'BÜCHER',
    'münchen',
    '中国',
    '😀',
    'xn--e1aybc',
    'XN--BCHER-KVA',
    'a'.repeat(63),
    '_tcp',
  ),
);
const nameLikeArb = fc
  .tuple(fc.array(labelArb, { minLength: 1, maxLength: 6 }), fc.boolean())
  .map(([labels, dot]) => labels.join('.') + (dot ? '.' : ''));
const anyStringArb = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 80 }),
  fc.string({ unit: 'binary-ascii', maxLength: 80 }),
  fc.string({
    unit: fc.constantFrom('a', 'B', '.', '-', '_', '%', '2', 'e', '/', '*', 'ß', 'Ｘ', '\u3002', 'x', 'n'),
    maxLength: 40,
  }),
  nameLikeArb,
);

describe('tryWireName: a name as a client sent it', () => {
  test('ASCII names read as tryCanonicalName reads them (case, one trailing dot)', () => {
    for (const [input, out] of [
      ['API.Example.COM', 'api.example.com'],
      ['api.example.com.', 'api.example.com'],
      ['xn--bcher-kva.de', 'xn--bcher-kva.de'],
      ['_acme._tcp.example.com', '_acme._tcp.example.com'],
    ]) {
      assert.equal(tryWireName(input!), out);
    }
  });

  test('issue 13 #6: no IDNA mapping on the wire: dot variants, fullwidth, U-labels are not-ascii', () => {
    for (const input of [
      'a\u3002b.com',
      'a\uff0eb.com',
      'a\uff61b.com',
      'ｅxample.com',
      'bücher.de',
      'ex\u00aample.com',
    ]) {
      const r = tryWireName(input);
      assert.ok(r instanceof NameError, input);
      assert.equal(r.rule, 'not-ascii', input);
    }
    const u = tryWireName('bücher.de');
    assert.ok(u instanceof NameError);
    assert.match(u.message, /xn--bcher-kva\.de/, 'the error names the A-label a client would send');
  });

  test('the same ASCII rules: bad characters, labels, punycode, IP literals', () => {
    const rule = (input: string) => {
      const r = tryWireName(input);
      return r instanceof NameError ? r.rule : 'ok';
    };
    assert.equal(rule('a%2eb.com'), 'bad-character');
    assert.equal(rule('a..b'), 'empty-label');
    assert.equal(rule('xn--zz.example.com'), 'bad-punycode');
    assert.equal(rule('1.2.3.4'), 'ip-literal');
    assert.equal(rule(''), 'empty');
  });

  test('property: every wire name that passes is canonical and passes tryCanonicalName unchanged', () => {
    fc.assert(
      fc.property(anyStringArb, (input) => {
        const w = tryWireName(input);
        if (typeof w !== 'string') return;
        assert.match(w, CANONICAL);
        assert.equal(tryCanonicalName(input), w);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('canonicalName: properties', () => {
  test('never throws: any input gives a canonical name or a NameError', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          anyStringArb,
          fc.string({ unit: 'grapheme', maxLength: 60 }),
          fc.string({ maxLength: 2000 }),
        ),
        (input) => {
          const r = tryCanonicalName(input);
          assert.ok(typeof r === 'string' || r instanceof NameError);
          if (r instanceof NameError) {
            assert.equal(r.code, ErrorCode.NameInvalid);
            assert.ok(r.message.length < 400, r.message);
          }
        },
      ),
      { numRuns: 3000 },
    );
  });

  test('the output is always canonical text of at most 253 octets', () => {
    fc.assert(
      fc.property(anyStringArb, (input) => {
        const r = tryCanonicalName(input);
        if (r instanceof NameError) return;
        assert.match(r, CANONICAL);
        assert.ok(r.length <= MAX_NAME_OCTETS);
        assert.equal(isIP(r), 0);
      }),
      { numRuns: 3000 },
    );
  });

  test('idempotent: canonicalName(canonicalName(x)) === canonicalName(x)', () => {
    fc.assert(
      fc.property(anyStringArb, (input) => {
        const r = tryCanonicalName(input);
        if (r instanceof NameError) return;
        assert.equal(tryCanonicalName(r), r);
      }),
      { numRuns: 3000 },
    );
  });

  test('the ASCII fast path agrees with domainToASCII on plain ASCII names', () => {
    // For LDH+underscore ASCII the only UTS #46 mapping is lowercase; the fast path skips IDNA.
    // Where domainToASCII gives a name that keeps every rule, canonicalName gives the same one;
    // wherever canonicalName accepts, domainToASCII agrees.
    const plain = fc.string({
      unit: fc.constantFrom('a', 'Z', 'x', 'n', '-', '-', '_', '0', '9', '.', '.'),
      minLength: 1,
      maxLength: 40,
    });
    fc.assert(
      fc.property(
        fc.oneof(
          plain,
          nameLikeArb.filter((s) => /^[\x20-\x7e]*$/.test(s)),
        ),
        (input) => {
          const stripped = input.endsWith('.') ? input.slice(0, -1) : input;
          const slow = domainToASCII(stripped);
          const fast = tryCanonicalName(input);
          if (!(fast instanceof NameError)) {
            assert.equal(fast, slow, JSON.stringify(input));
            return;
          }
          // Rejected by the fast path: then domainToASCII's answer must break one of our rules.
          const last = slow.split('.').pop() ?? '';
          const brokenByOurRules =
            slow === '' ||
            slow.length > MAX_NAME_OCTETS ||
            !CANONICAL.test(slow) ||
            isIP(slow) !== 0 ||
            /^(?:[0-9]+|0x[0-9a-f]*)$/.test(last) ||
            slow.split('.').some((l) => l.startsWith('xn--'));
          assert.ok(brokenByOurRules, `${JSON.stringify(input)}: fast ${fast.rule}, domainToASCII ${slow}`);
        },
      ),
      { numRuns: 5000 },
    );
  });

  test('ASCII input is only ever lowercased: nothing is decoded, dropped or cut off', () => {
    const urlish = fc.string({
      unit: fc.constantFrom(
        'a',
        'B',
        'c',
        '.',
        '-',
        '_',
        '%',
        '2',
        'e',
        '/',
        '\\',
        '?',
        '#',
        '@',
        ':',
        '\t',
        '\n',
        ' ',
      ),
      minLength: 1,
      maxLength: 30,
    });
    fc.assert(
      fc.property(fc.oneof(urlish, fc.string({ unit: 'binary-ascii', maxLength: 40 })), (input) => {
        const r = tryCanonicalName(input);
        if (r instanceof NameError) return;
        const stripped = input.endsWith('.') ? input.slice(0, -1) : input;
        assert.equal(r, stripped.toLowerCase(), JSON.stringify(input));
      }),
      { numRuns: 5000 },
    );
  });

  test('any accepted ASCII input equals what domainToASCII makes of it', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary-ascii', maxLength: 40 }), (input) => {
        const r = tryCanonicalName(input);
        if (r instanceof NameError) return;
        const stripped = input.endsWith('.') ? input.slice(0, -1) : input;
        assert.equal(r, domainToASCII(stripped));
      }),
      { numRuns: 3000 },
    );
  });
});
