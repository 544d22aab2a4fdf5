import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import RE2 from 're2';
import { canonicalPath } from '../../../src/core/http-path.ts';
import { canonicalName } from '../../../src/core/names.ts';
import { decideRequest, type GrantedRule } from '../../../src/policy/decide-request.ts';
import {
  fullMatchRegex,
  type HttpRequestFacts,
  type HttpRule,
  type HttpRuleInput,
  matchHttpRules,
  parseHttpRule,
  patternWithin,
} from '../../../src/policy/http-rule.ts';
import { parsePattern } from '../../../src/policy/pattern.ts';

const rule = (i: HttpRuleInput): HttpRule => {
  const r = parseHttpRule(i, {});
  if (!r.rule) throw new Error(JSON.stringify(r.problems));
  return r.rule;
};
const req = (method: string, path: string, extra: Partial<HttpRequestFacts> = {}): HttpRequestFacts => ({
  method,
  host: canonicalName('api.github.com'),
  path,
  headers: [],
  websocket: false,
  ...extra,
});

describe('canonicalPath', () => {
  test('decodes unreserved escapes, upper-cases the rest, keeps the query apart', () => {
    assert.deepEqual(canonicalPath('/a%62c/%7e/%3f?q=%2F'), { path: '/abc/~/%3F', query: 'q=%2F' });
  });
  for (const [target, reason] of [
    ['/a/../b', 'dot_segment'],
    ['/a/./b', 'dot_segment'],
    ['/a/%2e%2E/b', 'dot_segment'],
    ['/a%2Fb', 'ambiguous_path'],
    ['/a%5cb', 'ambiguous_path'],
    ['/a\\b', 'ambiguous_path'],
    ['/a%00', 'ambiguous_path'],
    ['/a%zz', 'bad_path'],
    ['a/b', 'bad_path'],
    ['/a#frag', 'bad_path'],
    ['/a b', 'bad_path'],
  ] as const) {
    test(`${JSON.stringify(target)} -> ${reason}`, () => assert.deepEqual(canonicalPath(target), { reason }));
  }
  test('property: a canonical path is a fixed point and never holds a dot segment', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom('a', '.', '..', '%2e', '%41', '%2F', 'x y', '~', '%7E', ''), {
          maxLength: 6,
        }),
        (segs) => {
          const c = canonicalPath(`/${segs.join('/')}`);
          if ('reason' in c) return;
          assert.deepEqual(canonicalPath(c.path), { path: c.path, query: null });
          assert.ok(!c.path.split('/').some((s) => s === '.' || s === '..'));
        },
      ),
    );
  });
});

describe('parseHttpRule', () => {
  test('problems name the field', () => {
    const r = parseHttpRule(
      {
        methods: ['get', 'GE T'],
        path: { prefix: 'x', exact: '/y' },
        headers: [{ name: 'host' }],
        hosts: ['*bad'],
      },
      {},
    );
    assert.equal(r.rule, null);
    assert.deepEqual(
      r.problems.map((p) => p.path),
      ['methods[0]', 'methods[1]', 'path', 'headers[0].name', 'hosts[0]'],
    );
  });
  test('a backtracking-only construct is refused (RE2 has no backreferences)', () => {
    const r = parseHttpRule({ path: { regex: '/(a)\\1' } }, {});
    assert.equal(r.rule, null);
    assert.match(r.problems[0]!.message, /not an RE2 regular expression/);
  });
  test('rule paths are canonical too: a dot segment in a rule is refused', () => {
    assert.equal(parseHttpRule({ path: { prefix: '/a/../b' } }, {}).rule, null);
  });
});

describe('matchHttpRules', () => {
  const rules = [
    rule({ methods: ['GET'], path: { prefix: '/repos/org/' } }),
    rule({
      methods: ['POST'],
      path: { regex: '/repos/org/[^/]+/issues' },
      headers: [{ name: 'Content-Type', value: 'application/json' }],
    }),
    rule({ path: { exact: '/ws' }, websocket: true }),
  ];
  test('first match wins and names its index', () => {
    assert.deepEqual(matchHttpRules(rules, req('GET', '/repos/org/x')), { matched: true, index: 0 });
    assert.deepEqual(
      matchHttpRules(
        rules,
        req('POST', '/repos/org/x/issues', { headers: [['content-type', 'application/json']] }),
      ),
      { matched: true, index: 1 },
    );
  });
  test('the reason is the furthest any rule got', () => {
    assert.deepEqual(matchHttpRules(rules, req('GET', '/other')), {
      matched: false,
      reason: 'path_not_allowed',
    });
    assert.deepEqual(matchHttpRules(rules, req('DELETE', '/repos/org/x')), {
      matched: false,
      reason: 'method_not_allowed',
    });
    assert.deepEqual(matchHttpRules(rules, req('POST', '/repos/org/x/issues')), {
      matched: false,
      reason: 'header_not_allowed',
    });
    assert.deepEqual(matchHttpRules(rules, req('GET', '/repos/org/x', { websocket: true })), {
      matched: false,
      reason: 'websocket_not_allowed',
    });
  });
  test('regex is a full match: /repos/org/x/issues/extra does not match', () => {
    assert.equal(
      matchHttpRules(
        [rules[1]!],
        req('POST', '/repos/org/x/issues/extra', { headers: [['content-type', 'application/json']] }),
      ).matched,
      false,
    );
  });
  test('hosts narrow the rule', () => {
    const r = rule({ hosts: ['uploads.github.com'] });
    assert.deepEqual(matchHttpRules([r], req('GET', '/')), {
      matched: false,
      reason: 'http_host_not_allowed',
    });
    assert.equal(
      matchHttpRules([r], req('GET', '/', { host: canonicalName('uploads.github.com') })).matched,
      true,
    );
  });
  test('RE2 stays linear on an input that makes a backtracking engine explode', () => {
    const re = fullMatchRegex('(a+)+b');
    // Linear time is the engine's guarantee (no backtracking): the rule compiles to RE2, never to
    // a backtracking RegExp, and answers on an input that would take a backtracker forever.
    assert.ok(re instanceof RE2, String(re));
    assert.ok(!((re as unknown) instanceof RegExp));
    assert.equal(re.test(`${'a'.repeat(100_000)}c`), false);
  });
  test('property: a prefix rule matches exactly the paths that start with it', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^\/[a-z/]{0,8}$/),
        fc.stringMatching(/^\/[a-z/]{0,12}$/),
        (prefix, path) => {
          const r = rule({ path: { prefix } });
          assert.equal(matchHttpRules([r], req('GET', path)).matched, path.startsWith(prefix));
        },
      ),
    );
  });
});

describe('decideRequest', () => {
  const inspected: GrantedRule = { policy: 'ci/github', rule: 0, http: [rule({ methods: ['GET'] })] };
  test('a rule without inspection allows every request', () => {
    const open: GrantedRule = { policy: 'ci/open', rule: 2, http: null };
    assert.deepEqual(decideRequest([inspected, open], 'Enforce', req('POST', '/x')), {
      verdict: 'allow',
      reason: 'fqdn_rule',
      policy: 'ci/open',
      rule: 2,
      httpRule: null,
    });
  });
  test('deny names the first rule; Audit turns deny into audit', () => {
    assert.deepEqual(decideRequest([inspected], 'Enforce', req('POST', '/x')), {
      verdict: 'deny',
      reason: 'method_not_allowed',
      policy: 'ci/github',
      rule: 0,
      httpRule: null,
    });
    assert.equal(decideRequest([inspected], 'Audit', req('POST', '/x')).verdict, 'audit');
  });
});

describe('patternWithin', () => {
  const p = (t: string) => {
    const r = parsePattern(t, {});
    if (r instanceof Error) throw r;
    return r;
  };
  for (const [inner, outer, want] of [
    ['a.example.com', '*.example.com', true],
    ['example.com', '*.example.com', false],
    ['*.a.example.com', '**.example.com', true],
    ['**.example.com', '*.example.com', false],
    ['*.example.com', '*.example.com', true],
    ['*.example.org', '**.example.com', false],
  ] as const) {
    test(`${inner} within ${outer}: ${want}`, () => assert.equal(patternWithin(p(inner), p(outer)), want));
  }
});
