/**
 * The CLI as people run it: bin/namegate spawned from another directory. Exit codes are the
 * contract (check: 0 allow or audit, 1 deny, 2 bad input; validate: 0 valid, 2 invalid), and
 * every bad input gets a message on stderr that says what to fix.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(here, '../../..');
const BIN = path.join(ROOT, 'bin/namegate');
const EXAMPLES = path.join(ROOT, 'examples');
const FIXTURES = path.join(ROOT, 'test/testdata/policies');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function namegate(...args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(
      BIN,
      args,
      { cwd: tmpdir(), env: { ...process.env, NO_COLOR: '1' }, timeout: 60_000 },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') return reject(err);
        resolve({ code: typeof err?.code === 'number' ? err.code : 0, stdout, stderr });
      },
    );
  });
}

async function checkJson(...args: string[]): Promise<{ code: number; out: Record<string, unknown> }> {
  const r = await namegate('check', '--policy', EXAMPLES, '--json', ...args);
  assert.equal(r.stderr, '', r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, 1, r.stdout);
  return { code: r.code, out: JSON.parse(lines[0] ?? '') as Record<string, unknown> };
}

describe('namegate validate', { concurrency: 4 }, () => {
  test('valid files: exit 0, a summary on stdout, warnings on stderr', async () => {
    const r = await namegate(
      'validate',
      path.join(FIXTURES, 'valid'),
      path.join(EXAMPLES, 'ci-runners.yaml'),
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'ok: 7 policies valid\n');
    assert.match(r.stderr, /^warning: .*not-a-policy\.yaml: ConfigMap unrelated: ignored/m);
  });

  test('the examples are valid', async () => {
    const r = await namegate('validate', EXAMPLES);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'ok: 3 policies valid\n');
  });

  test('invalid files: exit 2, field-path errors on stderr, nothing on stdout', async () => {
    const file = path.join(FIXTURES, 'broken/bad-pattern.yaml');
    const r = await namegate('validate', file);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    const lines = r.stderr.trim().split('\n');
    assert.equal(
      lines[0],
      `error: ${file}: EgressPolicy web/bad-pattern: spec.egress[2].toFQDNs[0].pattern: "*example.com": a wildcard must be a whole label (write "*.name" or "**.name")`,
    );
    assert.equal(lines.at(-1), '4 error(s); nothing was applied');
  });

  test('one bad file among good ones fails the whole run', async () => {
    const r = await namegate('validate', EXAMPLES, path.join(FIXTURES, 'broken/endport.yaml'));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /spec\.egress\[0\]\.ports\[1\]\.endPort: endPort 8000 is below port 8080/);
  });

  test('--quiet prints errors only', async () => {
    const ok = await namegate('validate', '-q', path.join(FIXTURES, 'valid'));
    assert.deepEqual([ok.code, ok.stdout, ok.stderr], [0, '', '']);
    const bad = await namegate('validate', '--quiet', path.join(FIXTURES, 'duplicates'));
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^error: .*two\.yaml: EgressPolicy web\/same: metadata\.name: defined twice/m);
  });

  test('a missing file or no file at all: exit 2 with a message', async () => {
    const missing = await namegate('validate', '/nonexistent/policy.yaml');
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /no such file or folder: \/nonexistent\/policy\.yaml/);
    const none = await namegate('validate');
    assert.equal(none.code, 2);
    assert.match(none.stderr, /missing required argument 'paths'/);
  });
});

describe('namegate check', { concurrency: 4 }, () => {
  test('allow: exit 0, JSON with verdict, reason and "namespace/name"', async () => {
    const { code, out } = await checkJson(
      '--namespace',
      'payments',
      '--labels',
      'app=payments-api',
      '--name',
      'API.Stripe.com.',
    );
    assert.equal(code, 0);
    assert.equal(out['verdict'], 'allow');
    assert.equal(out['reason'], 'fqdn_rule');
    assert.equal(out['policy'], 'payments/stripe-only');
    assert.equal(out['policyKind'], 'EgressPolicy');
    assert.equal(out['rule'], 0);
    assert.equal(out['mode'], 'Enforce');
    assert.equal(out['name'], 'api.stripe.com');
    assert.equal(out['protocol'], 'TCP');
    assert.equal(out['port'], 443);
    assert.equal(out['namespace'], 'payments');
    assert.deepEqual(out['labels'], { app: 'payments-api' });
  });

  test('deny (no matching rule): exit 1, policy null', async () => {
    const { code, out } = await checkJson(
      '--namespace',
      'payments',
      '--labels',
      'app=payments-api',
      '--name',
      'evil.com',
    );
    assert.equal(code, 1);
    assert.deepEqual(
      [out['verdict'], out['reason'], out['policy'], out['rule']],
      ['deny', 'no_matching_rule', null, null],
    );
  });

  test('deny (port not allowed): exit 1, names the rule that came closest', async () => {
    const { code, out } = await checkJson(
      '--namespace',
      'ci',
      '--labels',
      'role=runner',
      '--name',
      'raw.githubusercontent.com',
      '--port',
      '22',
    );
    assert.equal(code, 1);
    assert.deepEqual(
      [out['verdict'], out['reason'], out['policy'], out['rule']],
      ['deny', 'port_not_allowed', 'ci/ci-sources-and-packages', 0],
    );
  });

  test('UDP is not TCP', async () => {
    const { code, out } = await checkJson(
      '--namespace',
      'payments',
      '--labels',
      'app=payments-api',
      '--name',
      'api.stripe.com',
      '--protocol',
      'UDP',
    );
    assert.equal(code, 1);
    assert.equal(out['reason'], 'port_not_allowed');
    assert.equal(out['protocol'], 'UDP');
  });

  test('--protocol is case-insensitive', async () => {
    const { code, out } = await checkJson(
      '--namespace',
      'payments',
      '--labels',
      'app=payments-api',
      '--name',
      'api.stripe.com',
      '--protocol',
      'tcp',
    );
    assert.equal(code, 0);
    assert.equal(out['protocol'], 'TCP');
  });

  test('--address decides by toCIDRs rules (and their except)', async () => {
    const multi = path.join(FIXTURES, 'valid/multi.yaml');
    const address = (ip: string, port: string, protocol = 'udp') =>
      namegate(
        'check',
        '--policy',
        multi,
        '--namespace',
        'ci',
        '--labels',
        'role=runner',
        '--json',
        '--address',
        ip,
        '--port',
        port,
        '--protocol',
        protocol,
      );
    const allowed = await address('203.0.113.7', '53');
    assert.equal(allowed.code, 0, allowed.stderr);
    const out = JSON.parse(allowed.stdout) as Record<string, unknown>;
    assert.deepEqual(
      [out['verdict'], out['reason'], out['address'], out['name']],
      ['allow', 'cidr_rule', '203.0.113.7', null],
    );
    assert.equal((await address('203.0.113.200', '53')).code, 1, 'except');
    assert.equal((await address('203.0.113.7', '53', 'TCP')).code, 1, 'port');
    assert.equal((await address('198.51.100.1', '53')).code, 1, 'no rule');
    const both = await namegate(
      'check',
      '--policy',
      multi,
      '--namespace',
      'ci',
      '--name',
      'a.com',
      '--address',
      '192.0.2.1',
    );
    assert.equal(both.code, 2);
    assert.match(both.stderr, /exactly one of --name <fqdn> or --address <ip>/);
    const bad = await namegate('check', '--policy', multi, '--namespace', 'ci', '--address', '300.1.1.1');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--address: "300\.1\.1\.1" is not an IP address/);
  });

  test('ungoverned: exit 0, reason ungoverned, mode null', async () => {
    const { code, out } = await checkJson('--namespace', 'web', '--name', 'anything.example.com');
    assert.equal(code, 0);
    assert.deepEqual(
      [out['verdict'], out['reason'], out['policy'], out['mode']],
      ['allow', 'ungoverned', null, null],
    );
  });

  test('audit: exit 0 (it passes), verdict audit, through --namespace-labels', async () => {
    const { code, out } = await checkJson(
      '--namespace',
      'dev',
      '--namespace-labels',
      'egress-audit=on',
      '--name',
      'evil.com',
    );
    assert.equal(code, 0);
    assert.deepEqual([out['verdict'], out['reason'], out['mode']], ['audit', 'no_matching_rule', 'Audit']);
    const allowed = await checkJson(
      '--namespace',
      'dev',
      '--namespace-labels',
      'egress-audit=on',
      '--name',
      'pypi.org',
      '--port',
      '80',
    );
    assert.deepEqual(
      [allowed.code, allowed.out['verdict'], allowed.out['policy']],
      [0, 'allow', 'audit-package-mirrors'],
    );
  });

  test('** patterns through the CLI: one or more labels, never the apex', async () => {
    const deep = await checkJson(
      '--namespace',
      'ci',
      '--labels',
      'role=runner-large',
      '--name',
      'a.b.githubusercontent.com',
    );
    assert.deepEqual([deep.code, deep.out['verdict']], [0, 'allow']);
    const apex = await checkJson(
      '--namespace',
      'ci',
      '--labels',
      'role=runner',
      '--name',
      'githubusercontent.com',
    );
    assert.deepEqual([apex.code, apex.out['verdict'], apex.out['reason']], [1, 'deny', 'no_matching_rule']);
  });

  test('--method and --path: the HTTP rule of an inspected rule decides, and the answer names it', async () => {
    const args = ['--namespace', 'payments', '--labels', 'app=payments-api', '--name', 'files.stripe.com'];
    const ok = await checkJson(...args, '--method', 'GET', '--path', '/v1/files/f1');
    assert.equal(ok.code, 0);
    assert.deepEqual(ok.out['request'], {
      method: 'GET',
      path: '/v1/files/f1',
      inspected: true,
      verdict: 'allow',
      reason: 'http_rule',
      policy: 'payments/stripe-only',
      rule: 1,
      httpRule: 0,
    });
    const no = await checkJson(...args, '--method', 'DELETE', '--path', '/v1/files/f1');
    assert.equal(no.code, 1);
    assert.equal((no.out['request'] as Record<string, unknown>)['reason'], 'method_not_allowed');
    const bad = await namegate('check', '--policy', EXAMPLES, ...args, '--path', '/v1/files/../admin');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /dot_segment/);
  });

  test('an IDN name: its A-label is decided; the U-label is refused as the wire refuses it, naming the A-label', async () => {
    const args = ['--namespace', 'payments', '--labels', 'app=payments-api', '--name'];
    const { code, out } = await checkJson(...args, 'xn--e1aybc.example.com');
    assert.equal(code, 1);
    assert.equal(out['name'], 'xn--e1aybc.example.com');
    const u = await namegate('check', '--policy', EXAMPLES, ...args, 'тест.example.com');
    assert.equal(u.code, 2);
    assert.match(u.stderr, /name_invalid/);
    assert.match(u.stderr, /xn--e1aybc\.example\.com/);
  });

  test('text output, and --explain prints the path to the verdict', async () => {
    const plain = await namegate(
      'check',
      '--policy',
      EXAMPLES,
      '--namespace',
      'payments',
      '--labels',
      'app=payments-api',
      '--name',
      'api.stripe.com',
    );
    assert.equal(plain.code, 0);
    assert.equal(
      plain.stdout,
      'allow api.stripe.com TCP/443: fqdn_rule by EgressPolicy payments/stripe-only spec.egress[0]\n',
    );
    const r = await namegate(
      'check',
      '--policy',
      EXAMPLES,
      '--namespace',
      'payments',
      '--labels',
      'app=payments-api',
      '--name',
      'api.stripe.com',
      '--port',
      '80',
      '--explain',
    );
    assert.equal(r.code, 1);
    assert.deepEqual(r.stdout.trim().split('\n'), [
      'source pod:payments/(check): namespace payments, labels app=payments-api',
      'question: api.stripe.com TCP/80',
      'selected by EgressPolicy payments/stripe-only [Enforce]',
      'governed in Enforce mode',
      '  payments/stripe-only spec.egress[0] api.stripe.com matches; ports TCP/443: port not listed (verify: SNI)',
      'deny api.stripe.com TCP/80: port_not_allowed by EgressPolicy payments/stripe-only spec.egress[0]',
    ]);
  });

  const badInput: Array<[string, string[], RegExp]> = [
    [
      'a name with an empty label',
      ['--namespace', 'x', '--name', 'evil..com'],
      /--name: "evil\.\.com": empty label/,
    ],
    [
      'a name that is an IP address',
      ['--namespace', 'x', '--name', '10.0.0.1'],
      /--name: "10\.0\.0\.1": an IP address is not a domain name/,
    ],
    [
      'a name with a slash',
      ['--namespace', 'x', '--name', 'a.com/.b.net'],
      /--name: .*label "com\/" contains "\/"/,
    ],
    ['a wildcard as a name', ['--namespace', 'x', '--name', '*.a.com'], /--name: .*contains "\*"/],
    [
      'port 0',
      ['--namespace', 'x', '--name', 'a.com', '--port', '0'],
      /--port: "0" is not a port \(1-65535\)/,
    ],
    [
      'port 65536',
      ['--namespace', 'x', '--name', 'a.com', '--port', '65536'],
      /--port: "65536" is not a port/,
    ],
    [
      'port not a number',
      ['--namespace', 'x', '--name', 'a.com', '--port', 'https'],
      /--port: "https" is not a port/,
    ],
    ['port negative', ['--namespace', 'x', '--name', 'a.com', '--port=-1'], /--port: "-1" is not a port/],
    [
      'a protocol that is not TCP or UDP',
      ['--namespace', 'x', '--name', 'a.com', '--protocol', 'SCTP'],
      /--protocol: "SCTP" is not TCP or UDP/,
    ],
    [
      'labels without =',
      ['--namespace', 'x', '--name', 'a.com', '--labels', 'app'],
      /--labels: label "app" must be written key=value/,
    ],
    [
      'a bad label key',
      ['--namespace', 'x', '--name', 'a.com', '--labels', 'bad key=x'],
      /--labels: label key "bad key" is invalid/,
    ],
    [
      'a bad label value',
      ['--namespace', 'x', '--name', 'a.com', '--labels', 'app=-x'],
      /--labels: "-x" is not a valid label value/,
    ],
    [
      'bad namespace labels',
      ['--namespace', 'x', '--name', 'a.com', '--namespace-labels', 'env'],
      /--namespace-labels: label "env" must be written key=value/,
    ],
    [
      'a bad namespace',
      ['--namespace', 'Payments', '--name', 'a.com'],
      /--namespace: "Payments" is not a namespace/,
    ],
    ['missing --name', ['--namespace', 'x'], /exactly one of --name <fqdn> or --address <ip>/],
    ['missing --namespace', ['--name', 'a.com'], /required option '--namespace <ns>' not specified/],
  ];
  for (const [what, args, message] of badInput) {
    test(`bad input: ${what} -> exit 2`, async () => {
      const r = await namegate('check', '--policy', EXAMPLES, ...args);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, message);
    });
  }

  test('bad input: missing --policy', async () => {
    const r = await namegate('check', '--namespace', 'x', '--name', 'a.com');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /required option '--policy <paths\.\.\.>' not specified/);
  });

  test('bad input: an invalid policy is never decided on', async () => {
    const r = await namegate(
      'check',
      '--policy',
      EXAMPLES,
      path.join(FIXTURES, 'broken/top-level-typo.yaml'),
      '--namespace',
      'web',
      '--name',
      'a.example.com',
      '--json',
    );
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.match(
      r.stderr,
      /top-level-typo\.yaml: EgressPolicy web\/top-level-typo: sepc: unknown field "sepc"/,
    );
    assert.match(r.stderr, /fix the policy errors above/);
  });

  test('bad input: no policies found, or a path that does not exist', async (t) => {
    const dir = await mkdtemp(path.join(tmpdir(), 'namegate-cli-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await writeFile(path.join(dir, 'cm.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n');
    const none = await namegate('check', '--policy', dir, '--namespace', 'x', '--name', 'a.com');
    assert.equal(none.code, 2);
    assert.match(none.stderr, /no policy found in /);
    const missing = await namegate(
      'check',
      '--policy',
      path.join(dir, 'nope'),
      '--namespace',
      'x',
      '--name',
      'a.com',
    );
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /no such file or folder: .*nope/);
  });

  test('--help exits 0; an unknown command exits 2', async () => {
    const help = await namegate('check', '--help');
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--namespace-labels/);
    const unknown = await namegate('frobnicate');
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command 'frobnicate'/);
  });
});
