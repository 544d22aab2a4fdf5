/**
 * network-policy-api across policies: tiers (Admin, NetworkPolicy, Baseline), priorities within a
 * tier, Accept/Deny/Pass, and v1alpha2's two port forms. namegate is an allow-only union, so the
 * one property that matters is checked against a reference evaluator of the API's own order:
 * whatever namegate allows from a set it accepts, Kubernetes allows too.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { canonicalName } from '../../../src/core/names.ts';
import { decide, decideAddress } from '../../../src/policy/decide.ts';
import { compile, expectDecisions, expectProblem, load, loadYaml, pod } from './helpers.ts';

describe('kube-network-policies’ v1alpha2 allowlist (ports in the early `ports` form)', async () => {
  const report = await load('npep', 'kube-network-policies-allowlist.yaml');
  const set = compile(report);
  const dev = pod('dev', { run: 'test' });

  test('both policies convert; the ports are kept, never widened to every port', () => {
    assert.equal(report.policies.length, 2);
    expectDecisions(set, dev, [
      ['blog.kubernetes.io', 'TCP', 80, 'allow'],
      ['blog.kubernetes.io', 'TCP', 443, 'allow'],
      ['blog.kubernetes.io', 'TCP', 8080, 'deny'],
      ['network-policy-api.sigs.k8s.io', 'TCP', 80, 'allow'],
      ['k8s.io', 'TCP', 443, 'deny'],
      ['go.dev', 'TCP', 80, 'deny'],
    ]);
    assert.equal(decideAddress(set, dev, '10.1.2.3', 'TCP', 5432).verdict, 'allow');
    assert.equal(set.selection(pod('prod')).mode, null);
  });

  test('protocols and ports in one rule: an error', () => {
    const r = loadYaml(
      cnp('both', 'Admin', 1, 'namespaces: {}', [
        'action: Accept\n  to: [{domainNames: [a.example.com]}]\n  ports: [{portNumber: {protocol: TCP, port: 443}}]\n  protocols: [{tcp: {destinationPort: {number: 443}}}]',
      ]),
    );
    assert.equal(r.policies.length, 0);
    expectProblem(r.errors, 'both', 'spec.egress[0]', /not both/);
  });
});

describe('tiers and priorities across policies', async () => {
  const report = await load('npep', 'tiers.yaml');
  const set = compile(report);

  test('an Admin allowlist, an Admin Pass to NetworkPolicy, a Baseline allowlist and a Baseline deny', () => {
    assert.equal(report.policies.length, 4);
    expectDecisions(set, pod('shop'), [
      ['api.stripe.com', 'TCP', 443, 'allow'],
      ['checkout.paypal.com', 'TCP', 443, 'allow'],
      ['registry.npmjs.org', 'TCP', 443, 'deny'],
    ]);
    // Admin Pass: NetworkPolicy (none here), then the Baseline tier decides.
    expectDecisions(set, pod('legacy'), [
      ['registry.npmjs.org', 'TCP', 443, 'allow'],
      ['api.stripe.com', 'TCP', 443, 'deny'],
    ]);
    expectDecisions(set, pod('other'), [['registry.npmjs.org', 'TCP', 443, 'deny']]);
    expectProblem(
      report.warnings,
      'legacy-baseline',
      'spec.tier',
      /NetworkPolicy that selects a pod decides/,
    );
  });

  test('a Deny of a policy with a lower priority number shrinks a later Accept: error on the later one', () => {
    const r = loadYaml(
      [
        cnp('deny-first', 'Admin', 10, 'namespaces: {matchLabels: {team: a}}', [DENY_ALL]),
        cnp('accept-later', 'Admin', 20, 'namespaces: {}', [ACCEPT_A]),
      ].join('---\n'),
    );
    expectProblem(
      r.errors,
      'accept-later',
      'spec.egress[0]',
      /deny-first \(tier Admin, priority 10\) comes first/,
    );
    assert.deepEqual(
      r.policies.map((p) => p.policy.ref.name),
      ['deny-first'],
    );
  });

  test('equal priorities have no defined order: each counts as first', () => {
    const r = loadYaml(
      [
        cnp('accept', 'Admin', 10, 'namespaces: {}', [ACCEPT_A]),
        cnp('pass', 'Admin', 10, 'namespaces: {}', [PASS_ALL]),
      ].join('---\n'),
    );
    expectProblem(r.errors, 'accept', 'spec.egress[0]', /pass \(tier Admin, priority 10\)/);
  });

  test('an Admin Deny comes before every Baseline Accept', () => {
    const r = loadYaml(
      [
        cnp('admin-deny', 'Admin', 900, 'namespaces: {}', [DENY_ALL]),
        cnp('baseline-accept', 'Baseline', 1, 'namespaces: {}', [ACCEPT_A]),
      ].join('---\n'),
    );
    expectProblem(r.errors, 'baseline-accept', 'spec.egress[0]', /admin-deny/);
  });

  test('what cannot meet is no conflict: other namespaces, other ports, a later priority', () => {
    const r = loadYaml(
      [
        cnp('deny-b', 'Admin', 1, 'namespaces: {matchLabels: {kubernetes.io/metadata.name: b}}', [DENY_ALL]),
        cnp('deny-udp', 'Admin', 2, 'namespaces: {}', [
          'action: Deny\n  to: [{networks: ["0.0.0.0/0", "::/0"]}]\n  protocols: [{udp: {}}]',
        ]),
        cnp('accept-a', 'Admin', 5, 'namespaces: {matchLabels: {kubernetes.io/metadata.name: a}}', [
          `${ACCEPT_A}\n  protocols: [{tcp: {destinationPort: {number: 443}}}]`,
        ]),
        cnp('deny-later', 'Admin', 50, 'namespaces: {}', [DENY_ALL]),
      ].join('---\n'),
    );
    assert.deepEqual(r.errors, []);
    expectDecisions(compile(r), pod('a'), [['a.example.com', 'TCP', 443, 'allow']]);
  });

  test('a Baseline Pass takes nothing away (the default allows); an Admin Pass keeps a Baseline Accept', () => {
    const r = loadYaml(
      [
        cnp('admin-pass', 'Admin', 1, 'namespaces: {}', [PASS_ALL]),
        cnp('baseline', 'Baseline', 1, 'namespaces: {}', [
          PASS_ALL.replace('"0.0.0.0/0", "::/0"', '"1.1.1.0/24"'),
          ACCEPT_A,
        ]),
      ].join('---\n'),
    );
    assert.deepEqual(r.errors, []);
    expectDecisions(compile(r), pod('a'), [['a.example.com', 'TCP', 443, 'allow']]);
    expectProblem(r.warnings, 'baseline', 'spec.egress[0]', /the default, which allows/);
  });
});

const DENY_ALL = 'action: Deny\n  to: [{networks: ["0.0.0.0/0", "::/0"]}]';
const PASS_ALL = 'action: Pass\n  to: [{networks: ["0.0.0.0/0", "::/0"]}]';
const ACCEPT_A = 'action: Accept\n  to: [{domainNames: [a.example.com]}]';

function cnp(name: string, tier: string, priority: number, subject: string, rules: string[]): string {
  return (
    `apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: ${name}}\n` +
    `spec:\n  tier: ${tier}\n  priority: ${priority}\n  subject:\n    ${subject}\n  egress:\n` +
    rules.map((r) => `  - ${r.replaceAll('\n  ', '\n    ')}\n`).join('')
  );
}

// ---- the property: namegate never allows what the API's order denies -------------------------

type Action = 'Accept' | 'Deny' | 'Pass';
interface RuleSpec {
  readonly action: Action;
  readonly peer: { domainNames: readonly string[] } | { networks: readonly string[] };
  readonly port443: boolean;
}
interface PolicySpec {
  readonly tier: 'Admin' | 'Baseline';
  readonly priority: number;
  readonly namespace: 'a' | 'b' | null;
  readonly rules: readonly RuleSpec[];
}

const NAMES = ['x.example.com', 'y.x.example.com', 'z.example.org'] as const;
/** Every name resolves to this public address in the model. */
const ADDRESS = '1.1.1.1';

const ruleArb: fc.Arbitrary<RuleSpec> = fc.record({
  action: fc.constantFrom<Action>('Accept', 'Deny', 'Pass'),
  peer: fc.oneof(
    fc.record({
      domainNames: fc.subarray(['x.example.com', '*.x.example.com', 'z.example.org'], { minLength: 1 }),
    }),
    fc.record({ networks: fc.constantFrom(['0.0.0.0/0', '::/0'], ['1.1.1.0/24'], ['169.254.169.254/32']) }),
  ),
  port443: fc.boolean(),
});
const policyArb: fc.Arbitrary<PolicySpec> = fc.record({
  tier: fc.constantFrom<'Admin' | 'Baseline'>('Admin', 'Baseline'),
  priority: fc.integer({ min: 0, max: 3 }),
  namespace: fc.constantFrom<'a' | 'b' | null>('a', 'b', null),
  rules: fc.array(ruleArb, { minLength: 1, maxLength: 4 }),
});

function toYaml(policies: readonly PolicySpec[]): string {
  return policies
    .map((p, i) =>
      stringify({
        apiVersion: 'policy.networking.k8s.io/v1alpha2',
        kind: 'ClusterNetworkPolicy',
        metadata: { name: `p${i}` },
        spec: {
          tier: p.tier,
          priority: p.priority,
          subject: {
            namespaces: p.namespace ? { matchLabels: { 'kubernetes.io/metadata.name': p.namespace } } : {},
          },
          egress: p.rules.map((r) => ({
            // domainNames are allowed only in Accept rules.
            action: r.action,
            to: [r.action !== 'Accept' && 'domainNames' in r.peer ? { networks: ['1.1.1.0/24'] } : r.peer],
            ...(r.port443 ? { protocols: [{ tcp: { destinationPort: { number: 443 } } }] } : {}),
          })),
        },
      }),
    )
    .join('---\n');
}

function matches(rule: RuleSpec, name: string, port: number): boolean {
  if (rule.port443 && port !== 443) return false;
  const peer =
    rule.action !== 'Accept' && 'domainNames' in rule.peer ? { networks: ['1.1.1.0/24'] } : rule.peer;
  if ('domainNames' in peer) {
    return peer.domainNames.some((d) => (d.startsWith('*.') ? name.endsWith(d.slice(1)) : name === d));
  }
  return peer.networks.some((n) => n === '0.0.0.0/0' || n === '1.1.1.0/24');
}

/**
 * The API's verdict for a pod of `namespace` connecting to `name` (at ADDRESS) on TCP `port`, with
 * no NetworkPolicy: Admin by priority, then Baseline, then the default allow. `order` breaks
 * ties between equal priorities (the API leaves them open, so every order must agree).
 */
function kubernetesAllows(
  policies: readonly PolicySpec[],
  order: readonly number[],
  namespace: string,
  name: string,
  port: number,
): boolean {
  for (const tier of ['Admin', 'Baseline'] as const) {
    const inTier = order
      .map((i) => policies[i]!)
      .filter((p) => p.tier === tier && (p.namespace === null || p.namespace === namespace))
      .sort((x, y) => x.priority - y.priority);
    let passed = false;
    for (const p of inTier) {
      const rule = p.rules.find((r) => matches(r, name, port));
      if (!rule) continue;
      if (rule.action === 'Accept') return true;
      if (rule.action === 'Deny') return false;
      passed = true;
      break;
    }
    if (passed) continue;
  }
  return true;
}

describe('property: namegate allows nothing the API’s order denies', () => {
  test('random sets of Admin and Baseline policies', () => {
    fc.assert(
      fc.property(fc.array(policyArb, { minLength: 1, maxLength: 4 }), fc.boolean(), (policies, reverse) => {
        const report = loadYaml(toYaml(policies));
        fc.pre(report.errors.length === 0);
        const set = compile(report);
        const order = policies.map((_, i) => i);
        if (reverse) order.reverse();
        for (const namespace of ['a', 'b', 'c']) {
          const who = pod(namespace);
          for (const name of NAMES) {
            for (const port of [443, 80]) {
              const byName = decide(set, who, canonicalName(name), 'TCP', port).verdict !== 'deny';
              const byAddress = decideAddress(set, who, ADDRESS, 'TCP', port).verdict !== 'deny';
              if (!byName && !byAddress) continue;
              assert.ok(
                kubernetesAllows(policies, order, namespace, name, port),
                `${namespace} -> ${name}:${port} allowed by namegate, denied by Kubernetes\n${toYaml(policies)}`,
              );
            }
          }
        }
      }),
      { numRuns: 400 },
    );
  });
});
