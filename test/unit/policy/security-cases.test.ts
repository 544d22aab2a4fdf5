/**
 * The NAME cases of ../shared/reference/security-cases.md, end to end through the engine: a
 * native policy is validated (admission), compiled, and asked with decide() the way the DNS
 * proxy and the CLI ask. Each case is tested as the class it stands for, not only its example.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { tryCanonicalName } from '../../../src/core/names.ts';
import { validateNative } from '../../../src/formats/native.ts';
import { CompiledPolicies } from '../../../src/policy/compile.ts';
import { decide } from '../../../src/policy/decide.ts';
import { explain } from '../../../src/policy/explain.ts';
import { pod } from './policies.ts';

const who = pod('app');

/** Admission: the problems validateNative reports for one toFQDNs entry. */
function admit(entry: { name?: string; pattern?: string }, options: Record<string, boolean> = {}): string[] {
  const r = validateNative({
    apiVersion: 'namegate.dev/v1alpha1',
    kind: 'EgressPolicy',
    metadata: { name: 'p', namespace: 'app' },
    spec: { ...options, egress: [{ toFQDNs: [entry], ports: [{ port: 443 }] }] },
  });
  return r.errors.map((e) => `${e.path}: ${e.message}`);
}

/** Compile a policy that allows these entries to every pod of namespace "app" on TCP/443. */
function allowing(...entries: Array<{ name?: string; pattern?: string }>): CompiledPolicies {
  const r = validateNative({
    apiVersion: 'namegate.dev/v1alpha1',
    kind: 'EgressPolicy',
    metadata: { name: 'p', namespace: 'app' },
    spec: { egress: [{ toFQDNs: entries, ports: [{ port: 443 }] }] },
  });
  assert.deepEqual(r.errors, []);
  assert.ok(r.policy);
  return new CompiledPolicies([r.policy]);
}

/**
 * What the DNS proxy would do with a query for `qname`: canonicalize (a rejected name is never
 * allowed), then decide. Returns 'allow', 'deny' or 'rejected'.
 */
function ask(set: CompiledPolicies, qname: string, port = 443): 'allow' | 'deny' | 'rejected' {
  const name = tryCanonicalName(qname);
  if (typeof name !== 'string') return 'rejected';
  const d = decide(set, who, name, 'TCP', port);
  assert.notEqual(d.reason, 'ungoverned');
  return d.verdict === 'allow' ? 'allow' : 'deny';
}

function expectAll(set: CompiledPolicies, table: Record<string, 'allow' | 'deny' | 'rejected'>): void {
  for (const [qname, want] of Object.entries(table)) {
    assert.equal(ask(set, qname), want, `${JSON.stringify(qname)} should be ${want}`);
  }
}

describe('security cases NAME-01..NAME-12', () => {
  test('NAME-01: case and one trailing dot match; two trailing dots are rejected everywhere', () => {
    const set = allowing({ name: 'allowed.com' });
    expectAll(set, {
      'ALLOWED.COM': 'allow',
      'allowed.com.': 'allow',
      'AlLoWeD.cOm.': 'allow',
      'allowed.com..': 'rejected',
      'allowed..com': 'rejected',
      '.allowed.com': 'rejected',
      'allowed.com...': 'rejected',
    });
    // the policy side: any case and one dot are the same rule; two dots are refused at admission
    expectAll(allowing({ name: 'ALLOWED.COM.' }), { 'allowed.com': 'allow' });
    assert.match(
      admit({ name: 'allowed.com..' })[0] ?? '',
      /toFQDNs\[0\]\.name: "allowed\.com\.\.": empty label/,
    );
    assert.match(admit({ pattern: '*.allowed.com..' })[0] ?? '', /empty label/);
    assert.match(admit({ pattern: '**..' }, { allowPublicSuffixWildcards: true })[0] ?? '', /empty label/);
  });

  test('NAME-02: bracketed, host:port, userinfo and URL forms are rejected, never read as allowed.com', () => {
    const set = allowing({ name: 'allowed.com' });
    expectAll(set, {
      '[allowed.com]:443': 'rejected',
      '[allowed.com]': 'rejected',
      '[[allowed.com]]': 'rejected',
      'allowed.com:443': 'rejected',
      'allowed.com:443.': 'rejected',
      'user@allowed.com': 'rejected',
      'https://allowed.com': 'rejected',
      'allowed.com/path': 'rejected',
      'allowed.com\\': 'rejected',
      'allowed.com?x': 'rejected',
      'allowed.com#x': 'rejected',
      '[::1]': 'rejected',
      '[::1]:443': 'rejected',
    });
    for (const bad of ['[allowed.com]', 'allowed.com:443', 'user@allowed.com']) {
      assert.match(admit({ name: bad })[0] ?? '', /contains/);
    }
  });

  test('NAME-03: a U-label and its A-label are one name; invalid xn-- labels are rejected', () => {
    for (const written of ['тест.example.com', 'xn--e1aybc.example.com', 'ТЕСТ.EXAMPLE.COM.']) {
      expectAll(allowing({ name: written }), {
        'тест.example.com': 'allow',
        'xn--e1aybc.example.com': 'allow',
        'XN--E1AYBC.example.com': 'allow',
        'test.example.com': 'deny',
      });
    }
    expectAll(allowing({ pattern: '*.bücher.de' }), {
      'www.xn--bcher-kva.de': 'allow',
      'www.bücher.de': 'allow',
      'www.bucher.de': 'deny',
    });
    for (const bad of ['xn--zz.example.com', 'xn--.example.com', 'xn--a-ecp.ru', 'xn--e1aybc-.example.com']) {
      assert.equal(ask(allowing({ name: 'example.com' }), bad), 'rejected', bad);
      assert.match(admit({ name: bad })[0] ?? '', /is not valid punycode/, bad);
    }
  });

  test('NAME-04: a homoglyph never matches the Latin name; decisions print punycode', () => {
    const set = allowing({ name: 'paypal.com' }, { pattern: '**.paypal.com' });
    const spoofs = [
      '\u0440\u0430\u0443\u0440\u0430l.com',
      'p\u0430ypal.com',
      'paypa\u04cf.com',
      'www.p\u0430ypal.com',
      'ｐａｙｐａｌ.com',
    ];
    // the last one is fullwidth Latin: UTS #46 would map it to paypal.com; namegate refuses the
    // spelling instead (issue 13: one spelling, no mapping into another name)
    expectAll(set, {
      [spoofs[0] as string]: 'deny',
      [spoofs[1] as string]: 'deny',
      [spoofs[2] as string]: 'deny',
      [spoofs[3] as string]: 'deny',
      [spoofs[4] as string]: 'rejected',
    });
    const name = tryCanonicalName(spoofs[0] as string);
    assert.equal(typeof name, 'string');
    const { lines } = explain(set, who, name as never, 'TCP', 443);
    assert.ok(
      lines.some((l) => l.includes('question: xn--')),
      lines.join('\n'),
    );
    assert.ok(
      lines.every((l) => !/[^\x20-\x7e]/.test(l)),
      'explain prints A-labels only',
    );
  });

  test('NAME-06: neither *. nor **. matches the fixed part itself', () => {
    expectAll(allowing({ pattern: '*.example.com' }), { 'example.com': 'deny', 'a.example.com': 'allow' });
    expectAll(allowing({ pattern: '**.example.com' }), { 'example.com': 'deny', 'a.example.com': 'allow' });
    // the apex needs its own entry
    expectAll(allowing({ pattern: '*.example.com' }, { name: 'example.com' }), { 'example.com': 'allow' });
  });

  test('NAME-07: *. is exactly one label, **. one or more (both sides of the boundary)', () => {
    expectAll(allowing({ pattern: '*.example.com' }), {
      'a.example.com': 'allow',
      'a.b.example.com': 'deny',
      'a.b.c.example.com': 'deny',
    });
    expectAll(allowing({ pattern: '**.example.com' }), {
      'a.example.com': 'allow',
      'a.b.example.com': 'allow',
      'a.b.c.example.com': 'allow',
    });
  });

  test('NAME-08: a wildcard inside a label is rejected at admission; it never matches evil-example.com', () => {
    for (const bad of ['*example.com', 'ex*ample.com', '*-example.com', 'example*.com', '**example.com']) {
      assert.match(admit({ pattern: bad })[0] ?? '', /a wildcard must be a whole label/, bad);
    }
    assert.match(admit({ name: '*example.com' })[0] ?? '', /a name has no wildcards; use pattern/);
    // the nearest legal patterns do not match the look-alike either
    expectAll(
      allowing({ pattern: '*.example.com' }, { pattern: '**.example.com' }, { name: 'example.com' }),
      {
        'evil-example.com': 'deny',
        'evilexample.com': 'deny',
        'example.com.evil-example.com': 'deny',
      },
    );
  });

  test('NAME-09: suffix and prefix look-alikes, ndots search expansion and NUL tricks never match', () => {
    const set = allowing(
      { name: 'example.com' },
      { pattern: '*.example.com' },
      { pattern: '**.example.com' },
    );
    expectAll(set, {
      'example.com.evil.net': 'deny',
      'a.example.com.evil.net': 'deny',
      'notexample.com': 'deny',
      'a.notexample.com': 'deny',
      'example.co': 'deny',
      'example.com-evil.net': 'deny',
      'example.com.app.svc.cluster.local': 'deny',
      'example.com%00.evil': 'rejected',
      'example.com\u0000.evil': 'rejected',
      'example.com%2eevil.net': 'rejected',
      'a%2eexample.com': 'rejected',
    });
  });

  test('NAME-10: underscores are the same in admission, canonical names and decisions', () => {
    assert.deepEqual(admit({ name: '_acme-challenge.example.com' }), []);
    assert.deepEqual(admit({ pattern: '*._tcp.example.com' }), []);
    expectAll(allowing({ name: '_acme._tcp.example.com' }, { pattern: '*._tcp.example.com' }), {
      '_ACME._tcp.example.com.': 'allow',
      '_sip._tcp.example.com': 'allow',
      'acme._tcp.example.com': 'allow',
      '_tcp.example.com': 'deny',
      '_acme._udp.example.com': 'deny',
    });
  });

  test('NAME-11: over-long names and labels, and * in the middle, are refused at admission', () => {
    const label64 = 'a'.repeat(64);
    const name254 = `${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(63)}.${'e'.repeat(62)}`;
    assert.equal(name254.length, 254);
    assert.match(admit({ name: `${label64}.com` })[0] ?? '', /has 64 octets; at most 63 are allowed/);
    assert.match(admit({ name: name254 })[0] ?? '', /the name has 254 octets; at most 253 are allowed/);
    assert.match(admit({ name: 'x'.repeat(300) })[0] ?? '', /octets/);
    assert.match(admit({ pattern: `*.${label64}.com` })[0] ?? '', /has 64 octets/);
    assert.match(admit({ pattern: `**.${name254.slice(2)}` })[0] ?? '', /no name can match/);
    for (const middle of ['a.*.example.com', 'api.*.com', 'a.**.example.com', 'example.*']) {
      assert.match(admit({ pattern: middle })[0] ?? '', /a wildcard may only be the first label/, middle);
    }
    // and the same lengths are rejected as questions
    const set = allowing({ pattern: '**.example.com' });
    expectAll(set, {
      [`${label64}.example.com`]: 'rejected',
      [`${name254.slice(12)}.example.com`]: 'rejected',
    });
  });

  test('NAME-12: matching is linear: no regular expression in the matcher, crafted inputs stay bounded', () => {
    const here = path.dirname(fileURLToPath(import.meta.url));
    const source = readFileSync(path.resolve(here, '../../../src/policy/fqdn-index.ts'), 'utf8');
    assert.doesNotMatch(source, /new RegExp|RegExp\(|\.match\(\/|\/\.test\(|\.replace\(\//);
    // 2,000 patterns sharing a deep suffix, asked with names built to hit every node
    const entries = [];
    for (let i = 0; i < 2000; i++) entries.push({ pattern: `**.${'a.'.repeat(i % 50)}example.com` });
    const set = allowing(...entries);
    const deep = `${'a.'.repeat(120)}example.com`;
    assert.equal(ask(set, deep), 'allow');
    assert.equal(ask(set, `${'a.'.repeat(120)}example.org`), 'deny');
    assert.equal(ask(set, `${'a'.repeat(63)}.${'a.'.repeat(88)}example.net`), 'deny');
  });
});
