/**
 * NetworkPolicy objects from policies and synced addresses: one per EgressPolicy with its pod
 * selector, ipBlocks /32 and /128 with the rule's ports, toCIDRs with except, the DNS peers,
 * never an egress rule without peers, splitting with a condition, Audit and wildcards reported.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { NetworkPolicyTargetSchema } from '../../../src/config/sync.ts';
import { HASH_ANNOTATION, npPorts, planNetworkPolicies } from '../../../src/sync/netpol-plan.ts';
import { policy, STRIPE } from './helpers.ts';

const SETTINGS = NetworkPolicyTargetSchema.parse({});
const synced: Record<string, string[]> = {
  'api.stripe.com': ['203.0.113.10', '203.0.113.11', '2001:db8::10'],
};
const addressesOf = (name: string) => synced[name] ?? [];

test('one object per EgressPolicy: pod selector, /32 and /128 per address with the ports, CIDRs, DNS', () => {
  const plan = planNetworkPolicies({
    policies: [STRIPE],
    addressesOf,
    settings: SETTINGS,
    ownerOf: () => null,
    namespaces: [],
  });
  assert.equal(plan.objects.length, 1);
  const o = plan.objects[0];
  assert.ok(o);
  assert.equal(o.metadata.name, 'namegate-stripe');
  assert.equal(o.metadata.namespace, 'payments');
  assert.deepEqual(o.spec.podSelector, { matchLabels: { app: 'api' } });
  assert.deepEqual(o.spec.policyTypes, ['Egress']);
  assert.deepEqual(o.spec.egress, [
    {
      to: [{ ipBlock: { cidr: '192.0.2.0/24', except: ['192.0.2.128/25'] } }],
      ports: [{ protocol: 'TCP', port: 8443 }],
    },
    {
      to: [
        {
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } },
          podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } },
        },
      ],
      ports: [
        { protocol: 'UDP', port: 53 },
        { protocol: 'TCP', port: 53 },
      ],
    },
    {
      to: [
        { ipBlock: { cidr: '203.0.113.10/32' } },
        { ipBlock: { cidr: '203.0.113.11/32' } },
        { ipBlock: { cidr: '2001:db8::10/128' } },
      ],
      ports: [{ protocol: 'TCP', port: 443 }],
    },
  ]);
  assert.equal(o.metadata.labels['app.kubernetes.io/managed-by'], 'namegate-sync');
  assert.ok(o.metadata.annotations[HASH_ANNOTATION]);
  assert.equal(o.metadata.annotations['namegate.dev/unresolvable'], '*.stripe.com');
  const r = plan.reports[0];
  assert.deepEqual(r?.wildcards, ['*.stripe.com']);
  assert.equal(r?.condition.reason, 'Written');
});

test('no egress rule ever goes out without peers: a rule whose names have no address is left out', () => {
  const plan = planNetworkPolicies({
    policies: [STRIPE],
    addressesOf: () => [],
    settings: { ...SETTINGS, dnsPeers: [] },
    ownerOf: () => null,
    namespaces: [],
  });
  const egress = plan.objects[0]?.spec.egress ?? [];
  for (const rule of egress)
    assert.ok(rule.to.length > 0, 'a rule with only ports would allow every destination');
  assert.equal(egress.length, 1, 'only the CIDR rule');
  assert.deepEqual(plan.reports[0]?.unresolved, ['api.stripe.com']);
});

test('too many addresses for one object: split into parts that allow the same, with a condition', () => {
  const many = Array.from({ length: 25 }, (_, i) => `203.0.113.${i + 1}`);
  const plan = planNetworkPolicies({
    policies: [STRIPE],
    addressesOf: (n) => (n === 'api.stripe.com' ? many : []),
    settings: { ...SETTINGS, maxIpBlocksPerObject: 10 },
    ownerOf: () => null,
    namespaces: [],
  });
  assert.deepEqual(
    plan.objects.map((o) => o.metadata.name),
    ['namegate-stripe', 'namegate-stripe-2', 'namegate-stripe-3'],
  );
  const blocks = plan.objects.flatMap((o) =>
    o.spec.egress.flatMap((e) => e.to.filter((p) => p.ipBlock?.cidr.endsWith('/32'))),
  );
  assert.equal(blocks.length, 25);
  for (const o of plan.objects) assert.deepEqual(o.spec.podSelector, STRIPE.podSelector);
  assert.equal(plan.reports[0]?.condition.reason, 'Split');
  assert.equal(plan.objects[2]?.metadata.annotations['namegate.dev/part'], '3/3');
});

test('Audit policies are reported, not written; ClusterEgressPolicy goes to every selected namespace', () => {
  const audit = policy(`
apiVersion: namegate.dev/v1alpha1
kind: EgressPolicy
metadata: { name: trial, namespace: web }
spec:
  mode: Audit
  podSelector: {}
  egress: [{ toFQDNs: [{ name: api.stripe.com }] }]
`);
  const cluster = policy(`
apiVersion: namegate.dev/v1alpha1
kind: ClusterEgressPolicy
metadata: { name: base }
spec:
  namespaceSelector: { matchLabels: { tier: apps } }
  podSelector: {}
  egress: [{ toFQDNs: [{ name: api.stripe.com }] }]
`);
  const plan = planNetworkPolicies({
    policies: [audit, cluster],
    addressesOf,
    settings: SETTINGS,
    ownerOf: (p) =>
      p === cluster
        ? { apiVersion: 'namegate.dev/v1alpha1', kind: 'ClusterEgressPolicy', name: 'base', uid: 'u-1' }
        : null,
    namespaces: [
      { name: 'a', labels: { tier: 'apps' } },
      { name: 'b', labels: { tier: 'db' } },
    ],
  });
  assert.deepEqual(
    plan.objects.map((o) => `${o.metadata.namespace}/${o.metadata.name}`),
    ['a/namegate-cluster-base'],
  );
  assert.deepEqual(plan.objects[0]?.metadata.ownerReferences?.[0]?.uid, 'u-1');
  assert.equal(plan.reports[0]?.condition.reason, 'AuditMode');
  // Every port of both protocols: listed by protocol, never an absent `ports` (which allows SCTP too).
  assert.deepEqual(plan.objects[0]?.spec.egress.at(-1)?.ports, [{ protocol: 'TCP' }, { protocol: 'UDP' }]);
});

test('ports: single, range (endPort), whole protocol', () => {
  assert.deepEqual(
    npPorts([
      { protocol: 'TCP', from: 443, to: 443 },
      { protocol: 'TCP', from: 8000, to: 8100 },
      { protocol: 'UDP', from: 0, to: 65535 },
    ]),
    [{ protocol: 'TCP', port: 443 }, { protocol: 'TCP', port: 8000, endPort: 8100 }, { protocol: 'UDP' }],
  );
});

test('property: every egress rule has peers, no object exceeds the cap, the parts together allow exactly the synced addresses', () => {
  const ip4 = fc
    .tuple(fc.integer({ min: 1, max: 223 }), fc.integer({ min: 0, max: 255 }))
    .map(([a, b]) => `${a}.0.${b}.1`);
  const ip6 = fc.integer({ min: 1, max: 0xffff }).map((n) => `2001:db8::${n.toString(16)}`);
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.oneof(ip4, ip6), { maxLength: 60 }),
      fc.integer({ min: 1, max: 12 }),
      (ips, max) => {
        const plan = planNetworkPolicies({
          policies: [STRIPE],
          addressesOf: (n) => (n === 'api.stripe.com' ? ips : []),
          settings: { ...SETTINGS, maxIpBlocksPerObject: max },
          ownerOf: () => null,
          namespaces: [],
        });
        const hosts: string[] = [];
        for (const o of plan.objects) {
          let blocks = 0;
          for (const rule of o.spec.egress) {
            assert.ok(rule.to.length > 0);
            for (const p of rule.to) {
              const cidr = p.ipBlock?.cidr;
              if (cidr?.endsWith('/32') || cidr?.endsWith('/128')) {
                blocks++;
                hosts.push(cidr.split('/')[0] as string);
              }
            }
          }
          assert.ok(blocks <= max);
          assert.deepEqual(o.spec.podSelector, STRIPE.podSelector);
        }
        assert.deepEqual([...hosts].sort(), [...ips].sort());
        assert.equal(plan.reports[0]?.condition.reason, plan.objects.length > 1 ? 'Split' : 'Written');
      },
    ),
  );
});
