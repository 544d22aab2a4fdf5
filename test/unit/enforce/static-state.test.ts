/**
 * Static state from policy and identity: governed sources with their CIDR allows and verify
 * ports, and the known sources no policy selects (`ungoverned`), which the datapath carves out of
 * governed prefixes and lets pass where it governs unknown addresses of its source CIDRs (L3-05).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { staticElements } from '../../../src/datapath/nft-elements.ts';
import { staticState } from '../../../src/enforce/static-state.ts';
import { StaticGroups } from '../../../src/identity/static-groups.ts';
import { CompiledPolicies } from '../../../src/policy/compile.ts';
import { policy } from './helpers.ts';

const CI = policy(`
apiVersion: namegate.dev/v1alpha1
kind: EgressPolicy
metadata: { name: ci, namespace: ci }
spec:
  podSelector: { matchLabels: { role: runner } }
  egress:
    - toFQDNs: [{ name: github.com }]
      ports: [{ port: 443 }]
`);

const groups = new StaticGroups([
  {
    name: 'ci',
    namespace: 'ci',
    labels: { role: 'runner' },
    namespaceLabels: {},
    cidrs: ['10.10.2.2/32', 'fd00:10:2::2/128'],
  },
  {
    name: 'free',
    namespace: 'sandbox',
    labels: {},
    namespaceLabels: {},
    cidrs: ['10.10.4.2/32', 'fd00:10:4::2/128'],
  },
  // A network no policy selects, with a governed runner inside.
  { name: 'lan', namespace: 'lan', labels: {}, namespaceLabels: {}, cidrs: ['10.20.0.0/24'] },
  {
    name: 'runner',
    namespace: 'ci',
    labels: { role: 'runner' },
    namespaceLabels: {},
    cidrs: ['10.20.0.7/32'],
  },
]);

test('known sources no policy selects are listed as ungoverned (host routes as addresses)', () => {
  const s = staticState(new CompiledPolicies([CI]), groups.entries());
  assert.deepEqual(
    s.sources.map((x) => [x.ip, x.mode]),
    [
      ['10.10.2.2', 'Enforce'],
      ['fd00:10:2::2', 'Enforce'],
      ['10.20.0.7', 'Enforce'],
    ],
  );
  assert.deepEqual(s.ungoverned, ['10.10.4.2', 'fd00:10:4::2', '10.20.0.0/24']);
  // The governed /32 inside the ungoverned /24 is governed; the rest of the /24 is known.
  const els = staticElements(s);
  assert.deepEqual([...(els.get('enforce4') ?? [])].sort(), ['10.10.2.2', '10.20.0.7']);
  assert.deepEqual([...(els.get('ungoverned4') ?? [])], ['10.10.4.2']);
  assert.deepEqual([...(els.get('ungovernednet4') ?? [])], ['10.20.0.0-10.20.0.6', '10.20.0.8-10.20.0.255']);
});

test('without policies every known source is ungoverned; a source is never in both lists', () => {
  const none = staticState(new CompiledPolicies([]), groups.entries());
  assert.deepEqual(none.sources, []);
  assert.equal(none.ungoverned?.length, 6);
  const s = staticState(new CompiledPolicies([CI]), groups.entries());
  const governed = new Set(s.sources.map((x) => x.ip));
  for (const u of s.ungoverned ?? []) assert.ok(!governed.has(u), u);
});
