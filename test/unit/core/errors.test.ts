/**
 * Stable codes: unique, documented in docs/errors.md (together with the decision reasons and
 * the name rules), and recognisable through isNamegateError.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ErrorCode, errorMessage, isNamegateError, NamegateError } from '../../../src/core/errors.ts';
import { NameError, type NameRule, tryCanonicalName, tryWireName } from '../../../src/core/names.ts';
import { Reason } from '../../../src/policy/decide.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const doc = readFileSync(path.resolve(here, '../../../docs/errors.md'), 'utf8');

/** One input per name rule: proves the rule exists and gives the docs something to check. */
const RULES: Record<NameRule, string> = {
  empty: '',
  'too-long': `${'a.'.repeat(130)}com`,
  'empty-label': 'a..com',
  'label-too-long': `${'a'.repeat(64)}.com`,
  'bad-character': 'a b.com',
  idna: 'ex\u200dample.com',
  'bad-punycode': 'xn--zz.com',
  'ip-literal': '1.2.3.4',
  'numeric-tld': 'example.123',
  'idna-mapped': 'a\u3002example.com',
  'not-ascii': 'b\u00fccher.example',
};
/** Rules only the wire reading (tryWireName) applies. */
const WIRE_ONLY = new Set<string>(['not-ascii']);

describe('error codes', () => {
  test('codes are unique and follow NG_UPPER_CASE', () => {
    const codes = Object.values(ErrorCode);
    assert.equal(new Set(codes).size, codes.length);
    for (const c of codes) assert.match(c, /^NG_[A-Z0-9_]+$/);
  });

  test('docs/errors.md lists every error code, decision reason and name rule', () => {
    for (const c of Object.values(ErrorCode))
      assert.ok(doc.includes(`\`${c}\``), `${c} is not in docs/errors.md`);
    for (const r of Object.values(Reason))
      assert.ok(doc.includes(`\`${r}\``), `${r} is not in docs/errors.md`);
    for (const rule of Object.keys(RULES))
      assert.ok(doc.includes(`\`${rule}\``), `${rule} is not in docs/errors.md`);
  });

  test('every name rule is reachable', () => {
    for (const [rule, input] of Object.entries(RULES)) {
      const r = WIRE_ONLY.has(rule) ? tryWireName(input) : tryCanonicalName(input);
      assert.ok(r instanceof NameError, input);
      assert.equal(r.rule, rule);
    }
  });

  test('isNamegateError and errorMessage', () => {
    const e = new NamegateError(ErrorCode.UsageInvalid, 'bad flag');
    assert.equal(isNamegateError(e), true);
    assert.equal(isNamegateError(e, ErrorCode.UsageInvalid), true);
    assert.equal(isNamegateError(e, ErrorCode.NameInvalid), false);
    assert.equal(isNamegateError(new Error('x')), false);
    assert.equal(isNamegateError('NG_USAGE_INVALID'), false);
    assert.equal(errorMessage(e), 'bad flag');
    assert.equal(errorMessage('plain'), 'plain');
    const name = tryCanonicalName('a..b');
    assert.ok(isNamegateError(name, ErrorCode.NameInvalid));
  });
});
