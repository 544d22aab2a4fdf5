/**
 * decide, decideQuery, grantsFor, decideAddress and cidrCovers against the combining rules (docs/policy.md "How policies combine"):
 * allow-only union, ungoverned sources untouched, Audit never changes an Enforce outcome, and
 * a stable reason code plus a deterministic policy and rule for every verdict.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { CompiledPolicies } from '../../../src/policy/compile.ts';
import {
  cidrCovers,
  type Decision,
  decide,
  decideAddress,
  decideQuery,
  grantsFor,
  portAllows,
  Reason,
} from '../../../src/policy/decide.ts';
import { explain } from '../../../src/policy/explain.ts';
import {
  ALL_PORTS,
  type Identity,
  type Policy,
  type Protocol,
  policyRefText,
} from '../../../src/policy/model.ts';
import { patternMatches } from '../../../src/policy/pattern.ts';
import { compileSelector } from '../../../src/policy/selector.ts';
import { compile, type Doc, n, pod, policy } from './policies.ts';

/** The decision in the form tests compare: verdict, reason, "ns/name" or null, rule, mode. */
function brief(d: Decision): [string, string, string | null, number | null, string | null] {
  return [d.verdict, d.reason, d.policy ? policyRefText(d.policy) : null, d.rule, d.mode];
}

const stripe: Doc = {
  name: 'stripe-only',
  namespace: 'payments',
  spec: {
    podSelector: { matchLabels: { app: 'payments-api' } },
    egress: [{ toFQDNs: [{ name: 'api.stripe.com' }], ports: [{ port: 443, protocol: 'TCP' }] }],
  },
};
const payments = pod('payments', { app: 'payments-api' });

describe('ungoverned sources are not touched', () => {
  test('no policies at all', () => {
    const set = new CompiledPolicies([]);
    const d = decide(set, payments, n('evil.com'), 'TCP', 443);
    assert.deepEqual(brief(d), ['allow', 'ungoverned', null, null, null]);
    assert.deepEqual(brief(decideQuery(set, payments, n('evil.com'))), [
      'allow',
      'ungoverned',
      null,
      null,
      null,
    ]);
    assert.deepEqual(grantsFor(set, payments, n('evil.com')), []);
    assert.equal(cidrCovers(set, payments, '1.2.3.4'), false);
    assert.deepEqual(brief(decideAddress(set, payments, '1.2.3.4', 'TCP', 443)), [
      'allow',
      'ungoverned',
      null,
      null,
      null,
    ]);
  });

  test('a pod the podSelector does not select, and pods of other namespaces, stay ungoverned', () => {
    const set = compile(stripe);
    for (const who of [
      pod('payments', { app: 'other' }),
      pod('payments'),
      pod('web', { app: 'payments-api' }),
    ]) {
      assert.deepEqual(brief(decide(set, who, n('evil.com'), 'TCP', 443)), [
        'allow',
        'ungoverned',
        null,
        null,
        null,
      ]);
    }
  });

  test('a namespaced policy with an empty podSelector selects every pod of its namespace only', () => {
    const set = compile({
      name: 'all',
      namespace: 'ci',
      spec: { egress: [{ toFQDNs: [{ name: 'a.com' }] }] },
    });
    assert.equal(decide(set, pod('ci', { any: 'thing' }), n('b.com'), 'TCP', 443).verdict, 'deny');
    assert.equal(decide(set, pod('ci'), n('b.com'), 'TCP', 443).verdict, 'deny');
    // kubernetes.io/metadata.name on the namespace does not make a namespaced policy reach further
    assert.equal(
      decide(set, pod('prod', {}, { 'kubernetes.io/metadata.name': 'ci' }), n('b.com'), 'TCP', 443).verdict,
      'allow',
    );
    assert.equal(decide(set, pod('prod'), n('b.com'), 'TCP', 443).reason, Reason.Ungoverned);
  });
});

describe('Enforce', () => {
  const set = compile(stripe);

  test('allow with the policy and rule that allowed', () => {
    const d = decide(set, payments, n('API.Stripe.com.'), 'TCP', 443);
    assert.deepEqual(brief(d), ['allow', 'fqdn_rule', 'payments/stripe-only', 0, 'Enforce']);
    assert.deepEqual(d.policy, { kind: 'EgressPolicy', namespace: 'payments', name: 'stripe-only' });
  });

  test('deny: no rule matches the name (no policy named)', () => {
    for (const name of ['evil.com', 'stripe.com', 'x.api.stripe.com', 'api.stripe.com.evil.net']) {
      assert.deepEqual(brief(decide(set, payments, n(name), 'TCP', 443)), [
        'deny',
        'no_matching_rule',
        null,
        null,
        'Enforce',
      ]);
    }
  });

  test('deny: the name matches but the port or protocol does not (port_not_allowed names the rule)', () => {
    for (const [protocol, port] of [
      ['TCP', 80],
      ['TCP', 444],
      ['TCP', 442],
      ['UDP', 443],
    ] as Array<[Protocol, number]>) {
      assert.deepEqual(brief(decide(set, payments, n('api.stripe.com'), protocol, port)), [
        'deny',
        'port_not_allowed',
        'payments/stripe-only',
        0,
        'Enforce',
      ]);
    }
  });

  test('a policy with no rules governs its pods and allows nothing', () => {
    const none = compile({ name: 'lockdown', namespace: 'x', spec: {} });
    assert.deepEqual(brief(decide(none, pod('x'), n('a.com'), 'TCP', 443)), [
      'deny',
      'no_matching_rule',
      null,
      null,
      'Enforce',
    ]);
    assert.equal(decideQuery(none, pod('x'), n('a.com')).verdict, 'deny');
  });
});

describe('ports', () => {
  const set = compile({
    name: 'ports',
    namespace: 'ns',
    spec: {
      egress: [
        { toFQDNs: [{ name: 'range.example.com' }], ports: [{ port: 8000, endPort: 8080, protocol: 'TCP' }] },
        { toFQDNs: [{ name: 'dns.example.com' }], ports: [{ port: 53, protocol: 'UDP' }] },
        { toFQDNs: [{ name: 'any.example.com' }] },
        { toFQDNs: [{ name: 'default.example.com' }], ports: [{ port: 443 }] },
        {
          toFQDNs: [{ name: 'multi.example.com' }],
          ports: [{ port: 443, protocol: 'TCP' }, { port: 443, protocol: 'UDP' }, { port: 22 }],
        },
      ],
    },
  });
  const who = pod('ns');
  const verdict = (name: string, protocol: Protocol, port: number) =>
    decide(set, who, n(name), protocol, port).verdict;

  test('endPort: an inclusive range, both edges', () => {
    assert.equal(verdict('range.example.com', 'TCP', 7999), 'deny');
    assert.equal(verdict('range.example.com', 'TCP', 8000), 'allow');
    assert.equal(verdict('range.example.com', 'TCP', 8042), 'allow');
    assert.equal(verdict('range.example.com', 'TCP', 8080), 'allow');
    assert.equal(verdict('range.example.com', 'TCP', 8081), 'deny');
    assert.equal(verdict('range.example.com', 'UDP', 8000), 'deny');
  });

  test('UDP and TCP are different', () => {
    assert.equal(verdict('dns.example.com', 'UDP', 53), 'allow');
    assert.equal(verdict('dns.example.com', 'TCP', 53), 'deny');
    assert.equal(decide(set, who, n('dns.example.com'), 'TCP', 53).reason, Reason.PortNotAllowed);
  });

  test('no ports means every port of both protocols', () => {
    for (const p of [1, 22, 443, 65535]) {
      assert.equal(verdict('any.example.com', 'TCP', p), 'allow');
      assert.equal(verdict('any.example.com', 'UDP', p), 'allow');
    }
    const rule = set.rule({ policy: 0, rule: 2 });
    assert.deepEqual(rule.ports, ALL_PORTS);
  });

  test('protocol defaults to TCP', () => {
    assert.equal(verdict('default.example.com', 'TCP', 443), 'allow');
    assert.equal(verdict('default.example.com', 'UDP', 443), 'deny');
  });

  test('several entries in one rule are a union', () => {
    assert.equal(verdict('multi.example.com', 'TCP', 443), 'allow');
    assert.equal(verdict('multi.example.com', 'UDP', 443), 'allow');
    assert.equal(verdict('multi.example.com', 'TCP', 22), 'allow');
    assert.equal(verdict('multi.example.com', 'UDP', 22), 'deny');
  });

  test('portAllows on its own', () => {
    const ranges = [{ protocol: 'TCP', from: 10, to: 20 }] as const;
    assert.equal(portAllows(ranges, 'TCP', 10), true);
    assert.equal(portAllows(ranges, 'TCP', 20), true);
    assert.equal(portAllows(ranges, 'TCP', 21), false);
    assert.equal(portAllows(ranges, 'UDP', 15), false);
    assert.equal(portAllows([], 'TCP', 15), false);
  });
});

describe('Audit and Enforce', () => {
  const auditAll: Doc = {
    kind: 'ClusterEgressPolicy',
    name: 'audit-mirrors',
    spec: {
      mode: 'Audit',
      namespaceSelector: { matchLabels: { 'egress-audit': 'on' } },
      egress: [{ toFQDNs: [{ name: 'pypi.org' }, { pattern: '*.evil.com' }], ports: [{ port: 443 }] }],
    },
  };
  const enforce: Doc = {
    name: 'enforce',
    namespace: 'shop',
    spec: { egress: [{ toFQDNs: [{ name: 'api.shop.com' }], ports: [{ port: 443 }] }] },
  };
  const set = compile(auditAll, enforce);

  test('a source selected only by Audit policies: audit for would-be denials, allow otherwise', () => {
    const who = pod('dev', {}, { 'egress-audit': 'on' });
    assert.deepEqual(brief(decide(set, who, n('pypi.org'), 'TCP', 443)), [
      'allow',
      'fqdn_rule',
      'audit-mirrors',
      0,
      'Audit',
    ]);
    assert.deepEqual(brief(decide(set, who, n('other.org'), 'TCP', 443)), [
      'audit',
      'no_matching_rule',
      null,
      null,
      'Audit',
    ]);
    assert.deepEqual(brief(decide(set, who, n('pypi.org'), 'TCP', 80)), [
      'audit',
      'port_not_allowed',
      'audit-mirrors',
      0,
      'Audit',
    ]);
    assert.deepEqual(brief(decideQuery(set, who, n('other.org'))), [
      'audit',
      'no_matching_rule',
      null,
      null,
      'Audit',
    ]);
  });

  test('Audit policies never change what Enforce decides for the same source', () => {
    const who = pod('shop', {}, { 'egress-audit': 'on' });
    // allowed only by the Audit policy: still denied
    assert.deepEqual(brief(decide(set, who, n('x.evil.com'), 'TCP', 443)), [
      'deny',
      'no_matching_rule',
      null,
      null,
      'Enforce',
    ]);
    assert.deepEqual(brief(decide(set, who, n('pypi.org'), 'TCP', 443)), [
      'deny',
      'no_matching_rule',
      null,
      null,
      'Enforce',
    ]);
    assert.equal(decideQuery(set, who, n('pypi.org')).verdict, 'deny');
    assert.deepEqual(grantsFor(set, who, n('pypi.org')), []);
    // allowed by Enforce: allowed, attributed to the Enforce policy
    assert.deepEqual(brief(decide(set, who, n('api.shop.com'), 'TCP', 443)), [
      'allow',
      'fqdn_rule',
      'shop/enforce',
      0,
      'Enforce',
    ]);
    // and the same decisions as without the Audit policy
    const alone = compile(enforce);
    for (const name of ['x.evil.com', 'pypi.org', 'api.shop.com', 'other.net']) {
      for (const port of [443, 80]) {
        assert.deepEqual(
          brief(decide(set, who, n(name), 'TCP', port)),
          brief(decide(alone, who, n(name), 'TCP', port)),
        );
      }
    }
  });

  test('explain says the Audit policy is not counted', () => {
    const who = pod('shop', {}, { 'egress-audit': 'on' });
    const { decision, lines } = explain(set, who, n('x.evil.com'), 'TCP', 443);
    assert.equal(decision.verdict, 'deny');
    assert.ok(
      lines.includes(
        'selected by ClusterEgressPolicy audit-mirrors [Audit] (not counted: an Enforce policy also selects the source)',
      ),
      lines.join('\n'),
    );
    assert.ok(lines.includes('selected by EgressPolicy shop/enforce [Enforce]'));
    assert.ok(lines.includes('governed in Enforce mode'));
    assert.equal(lines.at(-1), 'verdict: deny (no_matching_rule)');
  });
});

describe('ClusterEgressPolicy namespaceSelector', () => {
  const cluster = (name: string, namespaceSelector: unknown, podSelector: unknown = undefined): Doc => ({
    kind: 'ClusterEgressPolicy',
    name,
    spec: {
      ...(namespaceSelector === undefined ? {} : { namespaceSelector }),
      ...(podSelector === undefined ? {} : { podSelector }),
      egress: [{ toFQDNs: [{ name: `${name}.example.com` }] }],
    },
  });

  test('by namespace labels, by kubernetes.io/metadata.name, and absent = every namespace', () => {
    const set = compile(
      cluster('by-label', { matchLabels: { team: 'data' } }),
      cluster('by-name', {
        matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: ['ci', 'build'] }],
      }),
      cluster('not-kube-system', {
        matchExpressions: [
          { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system'] },
        ],
      }),
    );
    const selectedBy = (who: Identity) =>
      set
        .selection(who)
        .policies.map((i) => set.policies[i]?.ref.name)
        .sort();
    assert.deepEqual(selectedBy(pod('ci')), ['by-name', 'not-kube-system']);
    assert.deepEqual(selectedBy(pod('build', {}, { team: 'data' })), [
      'by-label',
      'by-name',
      'not-kube-system',
    ]);
    assert.deepEqual(selectedBy(pod('kube-system', {}, { team: 'data' })), ['by-label']);
    assert.deepEqual(selectedBy(pod('web')), ['not-kube-system']);
    // a namespace label cannot impersonate the namespace name: makeIdentity sets it from the namespace
    assert.deepEqual(selectedBy(pod('web', {}, { 'kubernetes.io/metadata.name': 'ci' })), [
      'not-kube-system',
    ]);

    const everywhere = compile(cluster('everywhere', undefined));
    assert.equal(decide(everywhere, pod('any'), n('x.com'), 'TCP', 1).verdict, 'deny');
    assert.equal(
      decide(everywhere, pod('kube-system', { a: 'b' }), n('everywhere.example.com'), 'TCP', 1).verdict,
      'allow',
    );
  });

  test('namespaceSelector and podSelector both apply', () => {
    const set = compile(cluster('both', { matchLabels: { env: 'prod' } }, { matchLabels: { app: 'web' } }));
    assert.equal(
      decide(set, pod('a', { app: 'web' }, { env: 'prod' }), n('x.com'), 'TCP', 1).verdict,
      'deny',
    );
    assert.equal(
      decide(set, pod('a', { app: 'db' }, { env: 'prod' }), n('x.com'), 'TCP', 1).verdict,
      'allow',
    );
    assert.equal(
      decide(set, pod('a', { app: 'web' }, { env: 'dev' }), n('x.com'), 'TCP', 1).verdict,
      'allow',
    );
    assert.equal(
      decide(set, pod('a', { app: 'web' }, { env: 'dev' }), n('x.com'), 'TCP', 1).reason,
      'ungoverned',
    );
  });

  test('pod labels are not namespace labels and the reverse', () => {
    const set = compile(cluster('ns-env', { matchLabels: { env: 'prod' } }));
    assert.equal(decide(set, pod('a', { env: 'prod' }), n('x.com'), 'TCP', 1).reason, 'ungoverned');
    const ns = compile({
      name: 'p',
      namespace: 'a',
      spec: { podSelector: { matchLabels: { env: 'prod' } }, egress: [{ toFQDNs: [{ name: 'y.com' }] }] },
    });
    assert.equal(decide(ns, pod('a', {}, { env: 'prod' }), n('x.com'), 'TCP', 1).reason, 'ungoverned');
  });
});

describe('union of several policies', () => {
  const a: Doc = {
    name: 'a',
    namespace: 'ns',
    spec: { egress: [{ toFQDNs: [{ name: 'one.com' }, { name: 'both.com' }], ports: [{ port: 443 }] }] },
  };
  const b: Doc = {
    name: 'b',
    namespace: 'ns',
    spec: {
      podSelector: { matchLabels: { app: 'web' } },
      egress: [{ toFQDNs: [{ name: 'two.com' }, { name: 'both.com' }], ports: [{ port: 80 }] }],
    },
  };
  const set = compile(a, b);

  test('names and ports add up; nothing subtracts', () => {
    const web = pod('ns', { app: 'web' });
    assert.equal(decide(set, web, n('one.com'), 'TCP', 443).verdict, 'allow');
    assert.equal(decide(set, web, n('two.com'), 'TCP', 80).verdict, 'allow');
    assert.equal(decide(set, web, n('both.com'), 'TCP', 443).verdict, 'allow');
    assert.equal(decide(set, web, n('both.com'), 'TCP', 80).verdict, 'allow');
    assert.equal(decide(set, web, n('two.com'), 'TCP', 443).reason, 'port_not_allowed');
    assert.equal(decide(set, web, n('three.com'), 'TCP', 443).reason, 'no_matching_rule');
    // a pod only policy a selects gets only a's rules
    const other = pod('ns', { app: 'db' });
    assert.equal(decide(set, other, n('two.com'), 'TCP', 80).reason, 'no_matching_rule');
    assert.equal(decide(set, other, n('both.com'), 'TCP', 80).reason, 'port_not_allowed');
  });

  test('grantsFor lists every matching rule of the selecting policies', () => {
    const web = pod('ns', { app: 'web' });
    const grants = grantsFor(set, web, n('both.com'));
    assert.deepEqual(
      grants.map((g) => [
        policyRefText(
          set.policies[g.ref.policy]?.ref ?? { kind: 'EgressPolicy', namespace: null, name: '?' },
        ),
        g.ports,
        g.verify,
      ]),
      [
        ['ns/a', [{ protocol: 'TCP', from: 443, to: 443 }], 'None'],
        ['ns/b', [{ protocol: 'TCP', from: 80, to: 80 }], 'None'],
      ],
    );
    assert.equal(grantsFor(set, pod('ns', { app: 'db' }), n('both.com')).length, 1);
    assert.deepEqual(grantsFor(set, web, n('three.com')), []);
  });
});

describe('deterministic attribution', () => {
  const docs: Doc[] = [
    {
      name: 'zeta',
      namespace: 'ns',
      spec: { egress: [{ toFQDNs: [{ pattern: '**.example.com' }], ports: [{ port: 443 }] }] },
    },
    {
      name: 'alpha',
      namespace: 'ns',
      spec: {
        egress: [
          { toFQDNs: [{ name: 'other.org' }] },
          { toFQDNs: [{ name: 'api.example.com' }], ports: [{ port: 8443 }] },
          { toFQDNs: [{ pattern: '*.example.com' }], ports: [{ port: 443 }] },
        ],
      },
    },
    {
      kind: 'ClusterEgressPolicy',
      name: 'zz-cluster',
      spec: { egress: [{ toFQDNs: [{ pattern: '**.api.example.com' }], ports: [{ port: 443 }] }] },
    },
    { name: 'aa', namespace: 'aa', spec: { egress: [{ toFQDNs: [{ name: 'api.example.com' }] }] } },
  ];
  const who = pod('ns');

  test('the first policy in (kind, namespace, name) order, then the first rule', () => {
    const set = compile(...docs);
    assert.deepEqual(
      set.policies.map((p) => `${p.ref.kind} ${policyRefText(p.ref)}`),
      [
        'ClusterEgressPolicy zz-cluster',
        'EgressPolicy aa/aa',
        'EgressPolicy ns/alpha',
        'EgressPolicy ns/zeta',
      ],
    );
    // three rules allow api.example.com:443 (alpha[2] one label, zeta[0] any depth); alpha comes first
    assert.deepEqual(brief(decide(set, who, n('api.example.com'), 'TCP', 443)), [
      'allow',
      'fqdn_rule',
      'ns/alpha',
      2,
      'Enforce',
    ]);
    // only zeta allows two labels in front
    assert.deepEqual(brief(decide(set, who, n('a.b.example.com'), 'TCP', 443)), [
      'allow',
      'fqdn_rule',
      'ns/zeta',
      0,
      'Enforce',
    ]);
    // the cluster policy sorts first
    assert.deepEqual(brief(decide(set, who, n('v1.api.example.com'), 'TCP', 443)), [
      'allow',
      'fqdn_rule',
      'zz-cluster',
      0,
      'Enforce',
    ]);
    // port 8443: only alpha[1]
    assert.deepEqual(brief(decide(set, who, n('api.example.com'), 'TCP', 8443)), [
      'allow',
      'fqdn_rule',
      'ns/alpha',
      1,
      'Enforce',
    ]);
    // port_not_allowed names the first matching rule
    assert.deepEqual(brief(decide(set, who, n('api.example.com'), 'TCP', 22)), [
      'deny',
      'port_not_allowed',
      'ns/alpha',
      1,
      'Enforce',
    ]);
    assert.deepEqual(brief(decideQuery(set, who, n('api.example.com'))), [
      'allow',
      'fqdn_rule',
      'ns/alpha',
      1,
      'Enforce',
    ]);
  });

  test('the same decisions whatever order the policies are given in', () => {
    const names = [
      'api.example.com',
      'a.b.example.com',
      'v1.api.example.com',
      'other.org',
      'example.com',
      'x.org',
    ];
    const ports = [22, 443, 8443];
    const expected = compile(...docs);
    fc.assert(
      fc.property(fc.shuffledSubarray(docs, { minLength: docs.length, maxLength: docs.length }), (order) => {
        const set = compile(...order);
        for (const name of names) {
          for (const port of ports) {
            assert.deepEqual(
              brief(decide(set, who, n(name), 'TCP', port)),
              brief(decide(expected, who, n(name), 'TCP', port)),
            );
          }
          assert.deepEqual(brief(decideQuery(set, who, n(name))), brief(decideQuery(expected, who, n(name))));
        }
      }),
      { numRuns: 24 },
    );
  });

  test('the order does not depend on the locale ("aa" is not after "z")', () => {
    const set = compile(
      { name: 'z', namespace: 'ns', spec: { egress: [{ toFQDNs: [{ name: 'x.com' }] }] } },
      { name: 'aa', namespace: 'ns', spec: { egress: [{ toFQDNs: [{ name: 'x.com' }] }] } },
      { name: 'a-b', namespace: 'ns', spec: { egress: [{ toFQDNs: [{ name: 'x.com' }] }] } },
      { name: 'a.b', namespace: 'ns', spec: { egress: [{ toFQDNs: [{ name: 'x.com' }] }] } },
    );
    assert.deepEqual(
      set.policies.map((p) => p.ref.name),
      ['a-b', 'a.b', 'aa', 'z'],
    );
    assert.equal(decide(set, who, n('x.com'), 'TCP', 1).policy?.name, 'a-b');
  });
});

describe('toCIDRs', () => {
  const set = compile({
    name: 'cidrs',
    namespace: 'ns',
    spec: {
      egress: [
        {
          toCIDRs: [{ cidr: '203.0.113.0/24', except: ['203.0.113.128/25', '203.0.113.7/32'] }],
          ports: [{ port: 443 }],
        },
        { toCIDRs: [{ cidr: '2001:db8:1::/48', except: ['2001:db8:1:ff::/64'] }] },
        { toCIDRs: [{ cidr: '10.1.0.0/16' }], ports: [{ port: 5432 }] },
        { toFQDNs: [{ name: 'db.example.com' }], ports: [{ port: 5432 }] },
      ],
    },
  });
  const who = pod('ns');

  test('inside the CIDR and outside every except: allowed on the rule ports', () => {
    assert.deepEqual(brief(decideAddress(set, who, '203.0.113.1', 'TCP', 443)), [
      'allow',
      'cidr_rule',
      'ns/cidrs',
      0,
      'Enforce',
    ]);
    assert.deepEqual(brief(decideAddress(set, who, '203.0.113.127', 'TCP', 443)), [
      'allow',
      'cidr_rule',
      'ns/cidrs',
      0,
      'Enforce',
    ]);
    assert.deepEqual(brief(decideAddress(set, who, '203.0.113.1', 'TCP', 80)), [
      'deny',
      'port_not_allowed',
      'ns/cidrs',
      0,
      'Enforce',
    ]);
    assert.equal(cidrCovers(set, who, '203.0.113.1'), true);
  });

  test('except ranges and addresses outside stay closed', () => {
    for (const ip of [
      '203.0.113.128',
      '203.0.113.255',
      '203.0.113.7',
      '203.0.112.255',
      '203.0.114.0',
      '8.8.8.8',
    ]) {
      assert.deepEqual(
        brief(decideAddress(set, who, ip, 'TCP', 443)),
        ['deny', 'no_matching_rule', null, null, 'Enforce'],
        ip,
      );
      assert.equal(cidrCovers(set, who, ip), false, ip);
    }
  });

  test('IPv6, every port', () => {
    assert.equal(decideAddress(set, who, '2001:db8:1::5', 'UDP', 9).verdict, 'allow');
    assert.equal(decideAddress(set, who, '2001:db8:1:ff::5', 'UDP', 9).verdict, 'deny');
    assert.equal(decideAddress(set, who, '2001:db8:2::5', 'UDP', 9).verdict, 'deny');
    // an IPv4-mapped spelling is not the IPv4 address
    assert.equal(decideAddress(set, who, '::ffff:203.0.113.1', 'TCP', 443).verdict, 'deny');
  });

  test('CIDR rules and FQDN rules do not stand in for each other', () => {
    assert.equal(decide(set, who, n('db.example.com'), 'TCP', 5432).verdict, 'allow');
    assert.equal(decide(set, who, n('other.example.com'), 'TCP', 443).reason, 'no_matching_rule');
    assert.equal(decideAddress(set, who, '10.1.2.3', 'TCP', 5432).verdict, 'allow');
    assert.equal(decideAddress(set, who, '10.2.0.1', 'TCP', 5432).verdict, 'deny');
    assert.deepEqual(
      grantsFor(set, who, n('db.example.com')).map((g) => g.ref.rule),
      [3],
    );
  });

  test('cidrCovers only for selected sources, and only for the counted mode', () => {
    assert.equal(cidrCovers(set, pod('elsewhere'), '203.0.113.1'), false);
    const mixed = compile(
      {
        name: 'audit',
        namespace: 'ns',
        spec: { mode: 'Audit', egress: [{ toCIDRs: [{ cidr: '10.0.0.0/8' }] }] },
      },
      { name: 'enforce', namespace: 'ns', spec: { egress: [{ toFQDNs: [{ name: 'a.com' }] }] } },
    );
    assert.equal(cidrCovers(mixed, who, '10.0.0.1'), false);
    assert.equal(decideAddress(mixed, who, '10.0.0.1', 'TCP', 1).verdict, 'deny');
    assert.equal(mixed.hasCidrRules, true);
    assert.equal(compile(stripe).hasCidrRules, false);
  });
});

describe('verify and grants', () => {
  test('grantsFor carries verify: SNI and the rule ports', () => {
    const set = compile(stripe);
    const grants = grantsFor(set, payments, n('api.stripe.com'));
    assert.equal(grants.length, 1);
    assert.deepEqual(grants[0]?.ports, [{ protocol: 'TCP', from: 443, to: 443 }]);
    assert.equal(grants[0]?.verify, 'None');
    const sni = compile({
      ...stripe,
      spec: {
        ...stripe.spec,
        egress: [{ toFQDNs: [{ name: 'api.stripe.com' }], ports: [{ port: 443 }], verify: 'SNI' }],
      },
    });
    assert.equal(grantsFor(sni, payments, n('api.stripe.com'))[0]?.verify, 'SNI');
  });

  test('decideQuery: any port of any matching rule is enough to resolve', () => {
    const set = compile({
      name: 'q',
      namespace: 'ns',
      spec: { egress: [{ toFQDNs: [{ pattern: '*.ntp.org' }], ports: [{ port: 123, protocol: 'UDP' }] }] },
    });
    assert.deepEqual(brief(decideQuery(set, pod('ns'), n('pool.ntp.org'))), [
      'allow',
      'fqdn_rule',
      'ns/q',
      0,
      'Enforce',
    ]);
    assert.deepEqual(brief(decideQuery(set, pod('ns'), n('ntp.org'))), [
      'deny',
      'no_matching_rule',
      null,
      null,
      'Enforce',
    ]);
  });
});

describe('selection is per identity', () => {
  test('equal identities give equal answers; a relabelled pod is a new identity', () => {
    const set = compile(stripe);
    const a = pod('payments', { app: 'payments-api' });
    const b = pod('payments', { app: 'payments-api' });
    assert.deepEqual(set.selection(a), set.selection(b));
    assert.equal(set.selection(a), set.selection(a));
    const relabelled = pod('payments', { app: 'other' });
    assert.equal(decide(set, relabelled, n('evil.com'), 'TCP', 443).reason, 'ungoverned');
  });
});

/**
 * The reference: the combining rules (docs/policy.md) written as plainly as possible, with the slow
 * pattern matcher and no index. decide() must agree with it on random policies and questions.
 */
function referenceDecide(
  policies: readonly Policy[],
  who: Identity,
  name: string,
  protocol: Protocol,
  port: number,
): [string, string, string | null, number | null, string | null] {
  const selects = (p: Policy) =>
    (p.namespace === null
      ? compileSelector(p.namespaceSelector)(who.namespaceLabels)
      : p.namespace === who.namespace) && compileSelector(p.podSelector)(who.labels);
  const selecting = policies.map((p, i) => [p, i] as const).filter(([p]) => selects(p));
  if (selecting.length === 0) return ['allow', 'ungoverned', null, null, null];
  const enforce = selecting.filter(([p]) => p.mode === 'Enforce');
  const mode = enforce.length > 0 ? 'Enforce' : 'Audit';
  const counted = enforce.length > 0 ? enforce : selecting;
  const matching: Array<[Policy, number]> = [];
  for (const [p] of counted) {
    p.rules.forEach((r, i) => {
      if (r.fqdns.some((f) => patternMatches(f.pattern, n(name)))) matching.push([p, i]);
    });
  }
  const no = mode === 'Enforce' ? 'deny' : 'audit';
  if (matching.length === 0) return [no, 'no_matching_rule', null, null, mode];
  const allowing = matching.find(([p, i]) => portAllows(p.rules[i]?.ports ?? [], protocol, port));
  if (allowing) return ['allow', 'fqdn_rule', policyRefText(allowing[0].ref), allowing[1], mode];
  const [p, i] = matching[0] as [Policy, number];
  return [no, 'port_not_allowed', policyRefText(p.ref), i, mode];
}

describe('decide agrees with a plain reference of the combining rules', () => {
  const LABELS = ['a', 'b', 'api', 'www', 'example', 'com', 'org'];
  const labelArb = fc.constantFrom(...LABELS);
  const nameArb = fc.array(labelArb, { minLength: 1, maxLength: 4 }).map((l) => l.join('.'));
  const suffixArb = fc.array(labelArb, { minLength: 2, maxLength: 3 }).map((l) => l.join('.'));
  const fqdnArb = fc.oneof(
    nameArb.filter((s) => !/^(com|org)$/.test(s)).map((name) => ({ name })),
    suffixArb.map((s) => ({ pattern: `*.${s}` })),
    suffixArb.map((s) => ({ pattern: `**.${s}` })),
  );
  const portArb = fc.oneof(
    fc.record({ port: fc.constantFrom(53, 80, 443), protocol: fc.constantFrom('TCP', 'UDP') }),
    fc.record({
      port: fc.constant(8000),
      endPort: fc.constantFrom(8000, 8080),
      protocol: fc.constant('TCP'),
    }),
  );
  const ruleArb = fc.record({
    toFQDNs: fc.array(fqdnArb, { minLength: 1, maxLength: 3 }),
    ports: fc.array(portArb, { maxLength: 2 }),
  });
  const selectorArb = fc.constantFrom(
    undefined,
    {},
    { matchLabels: { app: 'web' } },
    { matchExpressions: [{ key: 'app', operator: 'NotIn', values: ['db'] }] },
    { matchExpressions: [{ key: 'tier', operator: 'Exists' }] },
  );
  const nsSelectorArb = fc.constantFrom(
    undefined,
    { matchLabels: { env: 'prod' } },
    { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: ['ns1'] }] },
  );
  const docArb = fc
    .record({
      cluster: fc.boolean(),
      namespace: fc.constantFrom('ns1', 'ns2'),
      mode: fc.constantFrom('Enforce', 'Audit'),
      podSelector: selectorArb,
      namespaceSelector: nsSelectorArb,
      egress: fc.array(ruleArb, { maxLength: 3 }),
    })
    .map(
      (r): Omit<Doc, 'name'> => ({
        kind: r.cluster ? 'ClusterEgressPolicy' : 'EgressPolicy',
        ...(r.cluster ? {} : { namespace: r.namespace }),
        spec: {
          mode: r.mode,
          ...(r.podSelector === undefined ? {} : { podSelector: r.podSelector }),
          ...(r.cluster && r.namespaceSelector !== undefined
            ? { namespaceSelector: r.namespaceSelector }
            : {}),
          egress: r.egress,
        },
      }),
    );
  const identityArb = fc
    .record({
      namespace: fc.constantFrom('ns1', 'ns2', 'ns3'),
      app: fc.constantFrom(undefined, 'web', 'db'),
      tier: fc.constantFrom(undefined, 'front'),
      env: fc.constantFrom(undefined, 'prod'),
    })
    .map((r) =>
      pod(
        r.namespace,
        { ...(r.app ? { app: r.app } : {}), ...(r.tier ? { tier: r.tier } : {}) },
        r.env ? { env: r.env } : {},
      ),
    );

  test('random policies, identities, names and ports', () => {
    fc.assert(
      fc.property(
        fc.array(docArb, { minLength: 0, maxLength: 6 }),
        fc.array(
          fc.tuple(
            identityArb,
            nameArb,
            fc.constantFrom('TCP', 'UDP'),
            fc.constantFrom(53, 80, 443, 8000, 8042, 9000),
          ),
          {
            minLength: 1,
            maxLength: 15,
          },
        ),
        (docs, questions) => {
          const policies = docs.map((d, i) => policy({ ...d, name: `p${(i * 7) % 10}-${i}` }));
          const set = new CompiledPolicies(policies);
          for (const [who, name, protocol, port] of questions) {
            const want = referenceDecide(set.policies, who, name, protocol as Protocol, port);
            assert.deepEqual(
              brief(decide(set, who, n(name), protocol as Protocol, port)),
              want,
              `${who.key} ${name} ${protocol}/${port}`,
            );
            const q = decideQuery(set, who, n(name));
            assert.equal(
              q.verdict === 'allow',
              want[1] === 'ungoverned' || want[1] === 'fqdn_rule' || want[1] === 'port_not_allowed',
            );
            // explain's verdict line is the decision
            const { decision } = explain(set, who, n(name), protocol as Protocol, port);
            assert.deepEqual(brief(decision), want);
          }
        },
      ),
      { numRuns: 400 },
    );
  });
});
