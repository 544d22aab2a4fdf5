/** The gateway's nftables state: the agent's static state plus one CIDR allow per synced address. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StaticGroups } from '../../../src/identity/static-groups.ts';
import { CompiledPolicies } from '../../../src/policy/compile.ts';
import { planNftState } from '../../../src/sync/nft-plan.ts';
import { STRIPE } from './helpers.ts';

const groups = new StaticGroups([
  { name: 'api', namespace: 'payments', labels: { app: 'api' }, cidrs: ['10.0.1.0/24', 'fd00:1::/64'] },
  { name: 'other', namespace: 'payments', labels: { app: 'x' }, cidrs: ['10.0.9.0/24'] },
]);

test('governed sources get an allow per synced address of their family and port; others nothing', () => {
  const set = new CompiledPolicies([STRIPE]);
  const state = planNftState(set, [...groups.entries()], (n) =>
    n === 'api.stripe.com' ? ['203.0.113.10', '2001:db8::10'] : [],
  );
  assert.deepEqual(state.sources, [
    { ip: '10.0.1.0/24', mode: 'Enforce' },
    { ip: 'fd00:1::/64', mode: 'Enforce' },
  ]);
  const synced = state.cidrs.filter((c) => c.protocol === 'TCP' && c.portFrom === 443);
  assert.deepEqual(
    synced.map((c) => `${c.source} -> ${c.cidr.text}`),
    ['10.0.1.0/24 -> 203.0.113.10/32', 'fd00:1::/64 -> 2001:db8::10/128'],
  );
  assert.ok(
    state.cidrs.some((c) => c.cidr.text === '192.0.2.0/24' && c.except.length === 1),
    'toCIDRs kept',
  );
  assert.deepEqual(state.ungoverned, ['10.0.9.0/24']);
});
