/**
 * Validation of native documents (src/formats/native.ts) and loading of files and folders
 * (src/formats/load.ts): every problem carries its field path, broken input never yields a
 * policy, and a problem in one rule or document never hides the others.
 * Fixtures: test/testdata/policies/{valid,broken,duplicates}.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  formatProblem,
  LOAD_LIMITS,
  type LoadReport,
  loadPolicies,
  loadText,
  policyFiles,
} from '../../../src/formats/load.ts';
import { LIMITS, type Problem, validateNative } from '../../../src/formats/native.ts';
import { ALL_PORTS, type Policy } from '../../../src/policy/model.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const FIXTURES = path.resolve(here, '../../testdata/policies');

function doc(spec: unknown, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: 'namegate.dev/v1alpha1',
    kind: 'EgressPolicy',
    metadata: { name: 'p', namespace: 'web' },
    spec,
    ...extra,
  };
}

/** The problems as "path: message" lines. */
function lines(problems: readonly Problem[]): string[] {
  return problems.map((p) => (p.path === '' ? p.message : `${p.path}: ${p.message}`));
}

function errorsOf(d: unknown): string[] {
  const r = validateNative(d);
  assert.equal(r.policy, null, 'an invalid document must not produce a policy');
  assert.ok(r.errors.length > 0);
  return lines(r.errors);
}

function valid(d: unknown): Policy {
  const r = validateNative(d);
  assert.deepEqual(lines(r.errors), []);
  assert.ok(r.policy);
  return r.policy;
}

const rule = (fqdns: unknown[], more: Record<string, unknown> = {}) => ({ toFQDNs: fqdns, ...more });

describe('validateNative: field paths and messages', () => {
  const table: Array<[string, unknown, string[]]> = [
    ['not a mapping: a list', [], ['a policy document must be a mapping']],
    ['not a mapping: null', null, ['a policy document must be a mapping']],
    ['not a mapping: a string', 'EgressPolicy', ['a policy document must be a mapping']],
    [
      'unknown kind',
      { ...doc({}), kind: 'EgressPolicies' },
      ['kind: expected EgressPolicy or ClusterEgressPolicy'],
    ],
    [
      'wrong apiVersion',
      { ...doc({ egress: [rule([{ name: 'a.com' }])] }), apiVersion: 'namegate.dev/v1' },
      ['apiVersion: expected "namegate.dev/v1alpha1"'],
    ],
    [
      'unknown top-level field (a misspelt spec must not become an empty deny-all policy)',
      { ...doc(undefined), sepc: { egress: [] } },
      ['sepc: unknown field "sepc"'],
    ],
    [
      'metadata missing',
      { apiVersion: 'namegate.dev/v1alpha1', kind: 'EgressPolicy' },
      ['metadata: expected object'],
    ],
    [
      'metadata.name not a Kubernetes name',
      { ...doc({ egress: [rule([{ name: 'a.com' }])] }), metadata: { name: 'Bad_Name', namespace: 'web' } },
      ['metadata.name: "Bad_Name" is not a valid Kubernetes name'],
    ],
    [
      'metadata.namespace not a namespace',
      { ...doc({ egress: [rule([{ name: 'a.com' }])] }), metadata: { name: 'p', namespace: 'a.b' } },
      ['metadata.namespace: "a.b" is not a valid namespace'],
    ],
    ['unknown spec field', doc({ egress: [], podselector: {} }), ['spec: unknown field "podselector"']],
    [
      'unknown rule field',
      doc({ egress: [{ toFQDN: [{ name: 'a.com' }] }] }),
      ['spec.egress[0]: unknown field "toFQDN"'],
    ],
    [
      'unknown fields, several',
      doc({ egress: [rule([{ name: 'a.com', port: 1, x: 2 }])] }),
      ['spec.egress[0].toFQDNs[0]: unknown fields "port", "x"'],
    ],
    ['spec not a mapping', doc('all'), ['spec: expected object']],
    ['egress not a list', doc({ egress: { toFQDNs: [] } }), ['spec.egress: expected array']],
    [
      'mode misspelt',
      doc({ mode: 'enforce', egress: [] }),
      ['spec.mode: expected one of "Enforce", "Audit"'],
    ],
    [
      'port as a string',
      doc({ egress: [rule([{ name: 'a.com' }], { ports: [{ port: '443' }] })] }),
      ['spec.egress[0].ports[0].port: expected number'],
    ],
    [
      'port 0',
      doc({ egress: [rule([{ name: 'a.com' }], { ports: [{ port: 0 }] })] }),
      ['spec.egress[0].ports[0].port: must be at least 1'],
    ],
    [
      'port too big',
      doc({ egress: [rule([{ name: 'a.com' }], { ports: [{ port: 65536 }] })] }),
      ['spec.egress[0].ports[0].port: must be at most 65535'],
    ],
    [
      'port not an integer',
      doc({ egress: [rule([{ name: 'a.com' }], { ports: [{ port: 44.3 }] })] }),
      ['spec.egress[0].ports[0].port: expected int'],
    ],
    [
      'protocol unknown',
      doc({ egress: [rule([{ name: 'a.com' }], { ports: [{ port: 1, protocol: 'SCTP' }] })] }),
      ['spec.egress[0].ports[0].protocol: expected one of "TCP", "UDP"'],
    ],
    [
      'endPort below port',
      doc({ egress: [rule([{ name: 'a.com' }], { ports: [{ port: 443 }, { port: 8080, endPort: 8000 }] })] }),
      ['spec.egress[0].ports[1].endPort: endPort 8000 is below port 8080'],
    ],
    [
      'the issue example: a wildcard inside a label',
      doc({
        egress: [rule([{ name: 'a.com' }]), rule([{ name: 'b.com' }]), rule([{ pattern: '*example.com' }])],
      }),
      [
        'spec.egress[2].toFQDNs[0].pattern: "*example.com": a wildcard must be a whole label (write "*.name" or "**.name")',
      ],
    ],
    [
      'public-suffix wildcard',
      doc({ egress: [rule([{ pattern: '**.co.uk' }])] }),
      [
        'spec.egress[0].toFQDNs[0].pattern: "**.co.uk": the wildcard has the public suffix "co.uk" as its fixed part; set allowPublicSuffixWildcards: true if that is intended',
      ],
    ],
    [
      'a name with a wildcard',
      doc({ egress: [rule([{ name: '*.example.com' }])] }),
      ['spec.egress[0].toFQDNs[0].name: "*.example.com": a name has no wildcards; use pattern'],
    ],
    [
      'both name and pattern, and neither',
      doc({ egress: [rule([{ name: 'a.com', pattern: '*.a.com' }, {}])] }),
      [
        'spec.egress[0].toFQDNs[0]: set exactly one of name or pattern',
        'spec.egress[0].toFQDNs[1]: set exactly one of name or pattern',
      ],
    ],
    [
      'a bad name says which label and why',
      doc({
        egress: [
          rule([{ name: 'allowed.com/.evil.net' }, { name: `${'a'.repeat(64)}.com` }, { name: 'a..com' }]),
        ],
      }),
      [
        'spec.egress[0].toFQDNs[0].name: "allowed.com/.evil.net": label "com/" contains "/"; only letters, digits, hyphen and underscore are allowed',
        `spec.egress[0].toFQDNs[1].name: "${'a'.repeat(64)}.com": label "${'a'.repeat(64)}" has 64 octets; at most 63 are allowed`,
        'spec.egress[0].toFQDNs[2].name: "a..com": empty label (two dots in a row, or a leading dot)',
      ],
    ],
    [
      'an IP address is not a name',
      doc({ egress: [rule([{ name: '93.184.216.34' }])] }),
      ['spec.egress[0].toFQDNs[0].name: "93.184.216.34": an IP address is not a domain name'],
    ],
    [
      'a rule with no destination',
      doc({ egress: [{ ports: [{ port: 443 }] }] }),
      ['spec.egress[0]: a rule needs toFQDNs or toCIDRs (there is no "any destination" rule)'],
    ],
    [
      'verify: SNI rules, each rule reported',
      doc({
        egress: [
          rule([{ name: 'a.com' }], { verify: 'SNI' }),
          rule([{ name: 'b.com' }], { verify: 'SNI', ports: [{ port: 443, protocol: 'UDP' }] }),
          { toCIDRs: [{ cidr: '203.0.113.0/24' }], ports: [{ port: 443 }], verify: 'SNI' },
        ],
      }),
      [
        'spec.egress[0].verify: verify: SNI needs ports (the TCP ports whose connections are checked)',
        'spec.egress[1].verify: verify: SNI applies to TCP ports only',
        'spec.egress[2].verify: verify: SNI needs toFQDNs (the names connections must present)',
      ],
    ],
    [
      'verify unknown',
      doc({ egress: [rule([{ name: 'a.com' }], { verify: 'TLS' })] }),
      ['spec.egress[0].verify: expected one of "None", "SNI", "Inspect"'],
    ],
    [
      'CIDRs: host bits, excepts outside, not addresses',
      doc({
        egress: [
          {
            toCIDRs: [
              { cidr: '10.0.0.1/8' },
              {
                cidr: '203.0.113.0/24',
                except: ['198.51.100.0/25', '203.0.112.0/23', '2001:db8::/64', '203.0.113.1/24'],
              },
              { cidr: 'example.com/24' },
              { cidr: '10.0.0.0/33' },
              { cidr: '2001:db8::1/32' },
            ],
          },
        ],
      }),
      [
        'spec.egress[0].toCIDRs[0].cidr: "10.0.0.1/8" has host bits set; write 10.0.0.0/8',
        'spec.egress[0].toCIDRs[1].except[0]: 198.51.100.0/25 is not inside 203.0.113.0/24',
        'spec.egress[0].toCIDRs[1].except[1]: 203.0.112.0/23 is not inside 203.0.113.0/24',
        'spec.egress[0].toCIDRs[1].except[2]: 2001:db8::/64 is not inside 203.0.113.0/24',
        'spec.egress[0].toCIDRs[1].except[3]: "203.0.113.1/24" has host bits set; write 203.0.113.0/24',
        'spec.egress[0].toCIDRs[2].cidr: "example.com" is not an IP address',
        'spec.egress[0].toCIDRs[3].cidr: prefix length 33 is longer than 32',
        'spec.egress[0].toCIDRs[4].cidr: "2001:db8::1/32" has host bits set; write 2001:db8::/32',
      ],
    ],
    [
      'selector values and keys',
      doc({
        podSelector: {
          matchLabels: { app: 'not valid!' },
          matchExpressions: [
            { key: 'tier', operator: 'In' },
            { key: 'tier', operator: 'In', values: ['-bad'] },
            { key: 'Bad_Prefix/x', operator: 'Exists' },
          ],
        },
        egress: [rule([{ name: 'a.com' }])],
      }),
      [
        'spec.podSelector.matchLabels.app: "not valid!" is not a valid label value',
        'spec.podSelector.matchExpressions[0].values: operator In needs at least one value',
        'spec.podSelector.matchExpressions[1].values[0]: "-bad" is not a valid label value',
        'spec.podSelector.matchExpressions[2].key: label key "Bad_Prefix/x" has an invalid prefix (a DNS subdomain is expected)',
      ],
    ],
    [
      'selector operator',
      doc({
        podSelector: { matchExpressions: [{ key: 'a', operator: 'Equals', values: ['x'] }] },
        egress: [],
      }),
      [
        'spec.podSelector.matchExpressions[0].operator: expected one of "In", "NotIn", "Exists", "DoesNotExist"',
      ],
    ],
    [
      'matchLabels value not a string',
      doc({ podSelector: { matchLabels: { app: 3 } }, egress: [] }),
      ['spec.podSelector.matchLabels.app: expected string'],
    ],
    [
      'namespaceSelector on a namespaced policy is unknown',
      doc({ namespaceSelector: {}, egress: [] }),
      ['spec: unknown field "namespaceSelector"'],
    ],
    [
      'namespaceSelector of a ClusterEgressPolicy is validated',
      {
        ...doc({
          namespaceSelector: {
            matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: [] }],
          },
          egress: [],
        }),
        kind: 'ClusterEgressPolicy',
      },
      ['spec.namespaceSelector.matchExpressions[0].values: operator NotIn needs at least one value'],
    ],
    [
      'allowPublicSuffixWildcards must be a boolean',
      doc({ allowPublicSuffixWildcards: 'yes', egress: [] }),
      ['spec.allowPublicSuffixWildcards: expected boolean'],
    ],
  ];
  for (const [what, d, want] of table) {
    test(what, () => assert.deepEqual(errorsOf(d), want));
  }

  test('limits: rules per policy and entries per rule', () => {
    const many = Array.from({ length: LIMITS.rulesPerPolicy + 1 }, () => rule([{ name: 'a.com' }]));
    assert.deepEqual(errorsOf(doc({ egress: many })), [
      `spec.egress: at most ${LIMITS.rulesPerPolicy} rules per policy`,
    ]);
    const names = Array.from({ length: LIMITS.fqdnsPerRule + 1 }, (_, i) => ({ name: `a${i}.com` }));
    assert.deepEqual(errorsOf(doc({ egress: [rule(names), rule([{ name: 'b..com' }])] })), [
      `spec.egress[0].toFQDNs: at most ${LIMITS.fqdnsPerRule} entries per rule`,
      'spec.egress[1].toFQDNs[0].name: "b..com": empty label (two dots in a row, or a leading dot)',
    ]);
  });
});

describe('validateNative: valid documents', () => {
  test('defaults: Enforce, TCP, every port, verify None, empty selector, default namespace', () => {
    const p = valid({
      apiVersion: 'namegate.dev/v1alpha1',
      kind: 'EgressPolicy',
      metadata: { name: 'p' },
      spec: { egress: [rule([{ name: 'a.com' }]), rule([{ name: 'b.com' }], { ports: [{ port: 443 }] })] },
    });
    assert.equal(p.mode, 'Enforce');
    assert.equal(p.namespace, 'default');
    assert.deepEqual(p.ref, { kind: 'EgressPolicy', namespace: 'default', name: 'p' });
    assert.deepEqual(p.podSelector, {});
    assert.equal(p.namespaceSelector, null);
    assert.deepEqual(p.rules[0]?.ports, ALL_PORTS);
    assert.deepEqual(p.rules[1]?.ports, [{ protocol: 'TCP', from: 443, to: 443 }]);
    assert.equal(p.rules[0]?.verify, 'None');
    assert.equal(
      validateNative({ ...doc({}), metadata: { name: 'p' } }, 'team-a').policy?.namespace,
      'team-a',
    );
  });

  test('names and patterns are stored canonical, with a warning when the spelling changed', () => {
    const r = validateNative(
      doc({ egress: [rule([{ name: 'API.Example.COM.' }, { pattern: '*.тест.com' }, { name: 'b.com.' }])] }),
    );
    assert.deepEqual(
      r.policy?.rules[0]?.fqdns.map((f) => f.text),
      ['api.example.com', '*.xn--e1aybc.com', 'b.com'],
    );
    assert.deepEqual(lines(r.warnings), [
      'spec.egress[0].toFQDNs[0].name: "API.Example.COM." is stored as "api.example.com"',
      'spec.egress[0].toFQDNs[1].pattern: "*.тест.com" is stored as "*.xn--e1aybc.com"',
    ]);
  });

  test('opt-ins: public-suffix wildcards and label globs (with a warning)', () => {
    const p = valid(
      doc({ allowPublicSuffixWildcards: true, egress: [rule([{ pattern: '*.com' }, { pattern: '**' }])] }),
    );
    assert.deepEqual(
      p.rules[0]?.fqdns.map((f) => f.pattern.kind),
      ['one-label', 'any-depth'],
    );
    const r = validateNative(
      doc({ allowPartialLabelWildcards: true, egress: [rule([{ pattern: 'api*.example.com' }])] }),
    );
    assert.equal(r.policy?.rules[0]?.fqdns[0]?.pattern.kind, 'label-glob');
    assert.deepEqual(lines(r.warnings), [
      `spec.egress[0].toFQDNs[0].pattern: "api*.example.com" uses "*" inside a label (Cilium's meaning: any characters within that one label)`,
    ]);
    assert.match(
      errorsOf(doc({ egress: [rule([{ pattern: 'api*.example.com' }])] }))[0] ?? '',
      /a wildcard must be a whole label/,
    );
  });

  test('ClusterEgressPolicy: namespaceSelector kept, metadata.namespace ignored with a warning', () => {
    const r = validateNative({
      ...doc({ namespaceSelector: { matchLabels: { env: 'prod' } }, egress: [rule([{ name: 'a.com' }])] }),
      kind: 'ClusterEgressPolicy',
    });
    assert.deepEqual(r.policy?.namespaceSelector, { matchLabels: { env: 'prod' } });
    assert.equal(r.policy?.namespace, null);
    assert.deepEqual(r.policy?.ref, { kind: 'ClusterEgressPolicy', namespace: null, name: 'p' });
    assert.deepEqual(lines(r.warnings), [
      'metadata.namespace: ignored: ClusterEgressPolicy is cluster-scoped',
    ]);
    const all = valid({ ...doc({ egress: [] }), kind: 'ClusterEgressPolicy', metadata: { name: 'all' } });
    assert.deepEqual(all.namespaceSelector, {});
  });

  test('no rules: valid, with a warning that the pods reach nothing', () => {
    const r = validateNative(doc({}));
    assert.ok(r.policy);
    assert.deepEqual(r.policy.rules, []);
    assert.deepEqual(lines(r.warnings), ['spec.egress: no rules: the selected sources may reach nothing']);
  });

  test('status and metadata.generation are accepted from the API server', () => {
    const p = valid({
      ...doc({ egress: [rule([{ name: 'a.com' }])] }),
      metadata: { name: 'p', namespace: 'web', generation: 7, uid: 'x', annotations: { a: 'b' } },
      status: { observedGeneration: 6, conditions: [] },
    });
    assert.equal(p.generation, 7);
  });
});

/** Load one fixture path and return its problems as printed, with the fixture folder cut off. */
async function load(...rel: string[]): Promise<{ report: LoadReport; errors: string[]; warnings: string[] }> {
  const report = await loadPolicies(rel.map((r) => path.join(FIXTURES, r)));
  const cut = (s: string) => s.replaceAll(`${FIXTURES}/`, '');
  return {
    report,
    errors: report.errors.map((p) => cut(formatProblem(p))),
    warnings: report.warnings.map((p) => cut(formatProblem(p))),
  };
}

describe('loadPolicies: fixtures', () => {
  test('the valid folder: every policy, the ConfigMap ignored with a warning', async () => {
    const { report, errors, warnings } = await load('valid');
    assert.deepEqual(errors, []);
    assert.deepEqual(warnings, [
      'valid/not-a-policy.yaml: ConfigMap unrelated: ignored: v1 ConfigMap is not a policy namegate reads',
    ]);
    assert.deepEqual(
      report.policies.map(
        (p) =>
          `${path.basename(p.file)} ${p.policy.ref.kind} ${p.policy.ref.namespace ?? '-'}/${p.policy.ref.name}`,
      ),
      [
        'list.yaml EgressPolicy web/from-list-one',
        'list.yaml EgressPolicy web/from-list-two',
        'multi.yaml EgressPolicy ci/ci-sources',
        'multi.yaml ClusterEgressPolicy -/audit-everyone',
        'payments.yaml EgressPolicy payments/stripe-only',
        'policy.json EgressPolicy web/json-policy',
      ],
    );
    const ci = report.policies.find((p) => p.policy.ref.name === 'ci-sources')?.policy;
    assert.deepEqual(ci?.rules[0]?.ports, [
      { protocol: 'TCP', from: 443, to: 443 },
      { protocol: 'TCP', from: 8000, to: 8080 },
    ]);
    assert.deepEqual(
      ci?.rules[1]?.cidrs.map((c) => [c.cidr.text, c.except.map((e) => e.text)]),
      [
        ['203.0.113.0/24', ['203.0.113.128/25']],
        ['2001:db8::/32', []],
      ],
    );
    assert.equal(report.documents.length, 6);
  });

  const broken: Array<[string, string[]]> = [
    [
      'unknown-field.yaml',
      [
        'EgressPolicy web/unknown-field: spec.egress[0].ports[0]: unknown field "proto"',
        'EgressPolicy web/unknown-field: spec.egress[0]: unknown field "toFQDN"',
      ],
    ],
    [
      'wrong-types.yaml',
      [
        'EgressPolicy web/wrong-types: spec.mode: expected one of "Enforce", "Audit"',
        'EgressPolicy web/wrong-types: spec.egress[0].ports[0].port: expected number',
        'EgressPolicy web/wrong-types: spec.egress[1]: expected object',
      ],
    ],
    [
      'bad-pattern.yaml',
      [
        'EgressPolicy web/bad-pattern: spec.egress[2].toFQDNs[0].pattern: "*example.com": a wildcard must be a whole label (write "*.name" or "**.name")',
        'EgressPolicy web/bad-pattern: spec.egress[2].toFQDNs[1].pattern: "*.com": the wildcard has the public suffix "com" as its fixed part; set allowPublicSuffixWildcards: true if that is intended',
        'EgressPolicy web/bad-pattern: spec.egress[2].toFQDNs[2].pattern: "a.*.example.com": a wildcard may only be the first label',
        'EgressPolicy web/bad-pattern: spec.egress[2].toFQDNs[3].pattern: "*.example.com..": empty label (two dots in a row, or a leading dot)',
      ],
    ],
    [
      'name-fields.yaml',
      [
        'EgressPolicy web/name-fields: spec.egress[0].toFQDNs[0].name: "*.example.com": a name has no wildcards; use pattern',
        'EgressPolicy web/name-fields: spec.egress[0].toFQDNs[1]: set exactly one of name or pattern',
        'EgressPolicy web/name-fields: spec.egress[0].toFQDNs[2]: set exactly one of name or pattern',
        'EgressPolicy web/name-fields: spec.egress[0].toFQDNs[3].name: "allowed.com/.evil.net": label "com/" contains "/"; only letters, digits, hyphen and underscore are allowed',
        'EgressPolicy web/name-fields: spec.egress[0].toFQDNs[4].name: "1.2.3.4": an IP address is not a domain name',
      ],
    ],
    [
      'ports.yaml',
      [
        'EgressPolicy web/ports: spec.egress[0].ports[0].port: must be at least 1',
        'EgressPolicy web/ports: spec.egress[0].ports[1].port: must be at most 65535',
        'EgressPolicy web/ports: spec.egress[0].ports[2].protocol: expected one of "TCP", "UDP"',
      ],
    ],
    [
      'endport.yaml',
      ['EgressPolicy web/endport: spec.egress[0].ports[1].endPort: endPort 8000 is below port 8080'],
    ],
    [
      'verify-sni.yaml',
      [
        'EgressPolicy web/verify-sni: spec.egress[0].verify: verify: SNI needs ports (the TCP ports whose connections are checked)',
        'EgressPolicy web/verify-sni: spec.egress[1].verify: verify: SNI applies to TCP ports only',
        'EgressPolicy web/verify-sni: spec.egress[2].verify: verify: SNI needs toFQDNs (the names connections must present)',
      ],
    ],
    [
      'cidrs.yaml',
      [
        'EgressPolicy web/cidrs: spec.egress[0].toCIDRs[0].cidr: "10.0.0.1/8" has host bits set; write 10.0.0.0/8',
        'EgressPolicy web/cidrs: spec.egress[0].toCIDRs[1].except[0]: 198.51.100.0/25 is not inside 203.0.113.0/24',
        'EgressPolicy web/cidrs: spec.egress[0].toCIDRs[1].except[1]: 203.0.112.0/23 is not inside 203.0.113.0/24',
        'EgressPolicy web/cidrs: spec.egress[0].toCIDRs[1].except[2]: 2001:db8::/64 is not inside 203.0.113.0/24',
        'EgressPolicy web/cidrs: spec.egress[0].toCIDRs[1].except[3]: "203.0.113.1/24" has host bits set; write 203.0.113.0/24',
        'EgressPolicy web/cidrs: spec.egress[0].toCIDRs[2].cidr: "example.com" is not an IP address',
        'EgressPolicy web/cidrs: spec.egress[0].toCIDRs[3].cidr: prefix length 33 is longer than 32',
        'EgressPolicy web/cidrs: spec.egress[1]: a rule needs toFQDNs or toCIDRs (there is no "any destination" rule)',
      ],
    ],
    [
      'selectors.yaml',
      [
        'ClusterEgressPolicy web/selectors: spec.podSelector.matchLabels.app: "not valid!" is not a valid label value',
        'ClusterEgressPolicy web/selectors: spec.podSelector.matchLabels: label key "bad key!" is invalid (1..63 letters, digits, "-", "_", ".", alphanumeric at both ends)',
        'ClusterEgressPolicy web/selectors: spec.podSelector.matchExpressions[0].values: operator In needs at least one value',
        'ClusterEgressPolicy web/selectors: spec.podSelector.matchExpressions[1].values: operator Exists takes no values',
        'ClusterEgressPolicy web/selectors: spec.podSelector.matchExpressions[2].values[0]: "-bad" is not a valid label value',
        'ClusterEgressPolicy web/selectors: spec.namespaceSelector.matchExpressions[0].values: operator NotIn needs at least one value',
      ],
    ],
    [
      'enums.yaml',
      [
        'ClusterEgressPolicy web/enums: spec.egress[0].verify: expected one of "None", "SNI", "Inspect"',
        'ClusterEgressPolicy web/enums: spec.namespaceSelector.matchExpressions[0].operator: expected one of "In", "NotIn", "Exists", "DoesNotExist"',
      ],
    ],
    [
      'metadata.yaml',
      [
        'EgressPolicy Web/Bad_Name: metadata.name: "Bad_Name" is not a valid Kubernetes name',
        'EgressPolicy Web/Bad_Name: metadata.namespace: "Web" is not a valid namespace',
      ],
    ],
    ['top-level-typo.yaml', ['EgressPolicy web/top-level-typo: sepc: unknown field "sepc"']],
    [
      'misc.yaml',
      [
        'EgressPolicy web/wrong-version: apiVersion: expected "namegate.dev/v1alpha1"',
        'EgressPolicy web/no-destination: spec.egress[0]: a rule needs toFQDNs or toCIDRs (there is no "any destination" rule)',
        '(document 3): EgressPolicy: metadata.name: expected string',
      ],
    ],
    [
      'yaml-syntax.yaml',
      [/^\(document 1\): not valid YAML: Flow sequence in block collection .* at line 10, column 7$/.source],
    ],
    ['duplicate-key.yaml', ['(document 1): not valid YAML: Map keys must be unique at line 11, column 3']],
    [
      'alias-bomb.yaml',
      ['(document 1): not valid YAML: Excessive alias count indicates a resource exhaustion attack'],
    ],
    [
      'not-a-mapping.yaml',
      ['(document 1): a document must be a mapping', '(document 2): a document must be a mapping'],
    ],
    [
      'list.yaml',
      [
        'EgressPolicy web/list-bad: spec.egress[0].toFQDNs[0].pattern: "**.co.uk": the wildcard has the public suffix "co.uk" as its fixed part; set allowPublicSuffixWildcards: true if that is intended',
      ],
    ],
  ];
  for (const [file, want] of broken) {
    test(`broken/${file}`, async () => {
      const { report, errors } = await load(`broken/${file}`);
      const prefix = `broken/${file}`;
      const got = errors.map((e) => {
        assert.ok(e.startsWith(prefix), e);
        return e.slice(prefix.length).replace(/^: /, '').replace(/^ /, '');
      });
      if (want.length === 1 && want[0]?.startsWith('^')) assert.match(got[0] ?? '', new RegExp(want[0]));
      else assert.deepEqual(got, want);
      // a broken document never yields a policy; the good item of a List still does
      const names = report.policies.map((p) => p.policy.ref.name);
      assert.deepEqual(names, file === 'list.yaml' ? ['list-good'] : []);
    });
  }

  test('the broken folder as a whole: every file reported, nothing hidden', async () => {
    const { errors } = await load('broken');
    const total = broken.reduce((n, [, want]) => n + want.length, 0);
    assert.equal(errors.length, total);
  });

  test('the same policy in two files is an error naming both', async () => {
    const { errors } = await load('duplicates');
    assert.deepEqual(errors, [
      'duplicates/two.yaml: EgressPolicy web/same: metadata.name: defined twice (also in duplicates/one.yaml)',
    ]);
  });

  test('an EgressPolicy and a ClusterEgressPolicy may share a name; two namespaces may too', () => {
    const report: LoadReport = { policies: [], errors: [], warnings: [], documents: [] };
    const text = ['EgressPolicy web', 'EgressPolicy db', 'ClusterEgressPolicy web']
      .map((s) => {
        const [kind, ns] = s.split(' ');
        return `apiVersion: namegate.dev/v1alpha1\nkind: ${kind}\nmetadata: {name: same, namespace: ${ns}}\nspec: {egress: [{toFQDNs: [{name: a.com}]}]}\n`;
      })
      .join('---\n');
    loadText(text, 'inline.yaml', {}, report);
    assert.deepEqual(report.errors, []);
    assert.equal(report.policies.length, 3);
  });
});

describe('loadPolicies: files and bounds', () => {
  test('a missing path is an error, not a crash', async () => {
    const report = await loadPolicies([path.join(FIXTURES, 'no-such-file.yaml')]);
    assert.equal(report.errors.length, 1);
    assert.match(formatProblem(report.errors[0] as never), /^no such file or folder: .*no-such-file\.yaml$/);
    assert.deepEqual(report.policies, []);
  });

  test('folders: YAML and JSON only, hidden files skipped, sorted, bounded depth', async (t) => {
    const dir = await mkdtemp(path.join(tmpdir(), 'namegate-load-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const policyText = (name: string) =>
      `apiVersion: namegate.dev/v1alpha1\nkind: EgressPolicy\nmetadata: {name: ${name}, namespace: web}\nspec: {egress: [{toFQDNs: [{name: a.com}]}]}\n`;
    await writeFile(path.join(dir, 'b.yaml'), policyText('b'));
    await writeFile(path.join(dir, 'a.yml'), policyText('a'));
    await writeFile(path.join(dir, 'README.md'), '# not a policy');
    await writeFile(path.join(dir, '.hidden.yaml'), policyText('hidden'));
    let deep = dir;
    for (let i = 0; i < LOAD_LIMITS.folderDepth + 3; i++) deep = path.join(deep, `d${i}`);
    await mkdir(deep, { recursive: true });
    await writeFile(path.join(deep, 'deep.yaml'), policyText('deep'));
    await mkdir(path.join(dir, 'sub'));
    await writeFile(path.join(dir, 'sub', 'c.YAML'), policyText('c'));
    const files = (await policyFiles([dir])).map((f) => path.relative(dir, f));
    assert.deepEqual(files, ['a.yml', 'b.yaml', path.join('sub', 'c.YAML')]);
    const report = await loadPolicies([dir]);
    assert.deepEqual(
      report.policies.map((p) => p.policy.ref.name),
      ['a', 'b', 'c'],
    );
  });

  test('a file over the size bound is refused without being read', async (t) => {
    const dir = await mkdtemp(path.join(tmpdir(), 'namegate-load-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const big = path.join(dir, 'big.yaml');
    await writeFile(big, Buffer.alloc(LOAD_LIMITS.fileBytes + 1, 0x20));
    const report = await loadPolicies([big]);
    assert.equal(report.errors.length, 1);
    assert.match(report.errors[0]?.message ?? '', /at most 16777216 are read/);
  });

  test('too many documents in one file', () => {
    const report: LoadReport = { policies: [], errors: [], warnings: [], documents: [] };
    loadText('---\n{}\n'.repeat(LOAD_LIMITS.documentsPerFile + 1), 'many.yaml', {}, report);
    assert.deepEqual(
      report.errors.map((e) => e.message),
      [`more than ${LOAD_LIMITS.documentsPerFile} documents in one file`],
    );
  });

  test('an empty file and empty documents are nothing, not errors', () => {
    const report: LoadReport = { policies: [], errors: [], warnings: [], documents: [] };
    loadText('', 'empty.yaml', {}, report);
    loadText('---\n---\n# only a comment\n', 'empty2.yaml', {}, report);
    assert.deepEqual(report.errors, []);
    assert.deepEqual(report.policies, []);
  });

  test('formatProblem', () => {
    const base = { file: 'f.yaml', document: 0, object: 'EgressPolicy web/p', path: 'spec', message: 'm' };
    assert.equal(formatProblem(base), 'f.yaml: EgressPolicy web/p: spec: m');
    assert.equal(formatProblem({ ...base, path: '' }), 'f.yaml: EgressPolicy web/p: m');
    assert.equal(formatProblem({ ...base, object: '' }), 'f.yaml (document 1): spec: m');
    assert.equal(
      formatProblem({ ...base, object: 'EgressPolicy', document: 2 }),
      'f.yaml (document 3): EgressPolicy: spec: m',
    );
    assert.equal(formatProblem({ ...base, file: '', object: '', document: -1, path: '' }), 'm');
    assert.equal(formatProblem({ ...base, document: -1, object: '' }), 'f.yaml: spec: m');
  });
});
