/**
 * The Syncer: one pass writes every target; a target that fails is reported and retried while
 * the others are written; wildcards are reported once per change; a policy change re-plans the
 * names; the status says what happened.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NetworkPolicyTargetSchema } from '../../../src/config/sync.ts';
import { ManualClock } from '../../../src/core/clock.ts';
import type { StaticState } from '../../../src/datapath/datapath.ts';
import { StaticGroups } from '../../../src/identity/static-groups.ts';
import { createRegistry } from '../../../src/observe/metrics.ts';
import { CompiledPolicies } from '../../../src/policy/compile.ts';
import { createSyncMetrics } from '../../../src/sync/metrics.ts';
import type { NetworkPolicyObject } from '../../../src/sync/netpol-plan.ts';
import { Syncer } from '../../../src/sync/syncer.ts';
import { capturedLog, policy, resolution, SETTINGS, STRIPE } from './helpers.ts';

function feed(initial: CompiledPolicies) {
  let set = initial;
  const listeners: Array<(s: CompiledPolicies) => void> = [];
  return {
    current: () => set,
    onChange: (l: (s: CompiledPolicies) => void) => {
      listeners.push(l);
      return () => {};
    },
    swap(next: CompiledPolicies) {
      set = next;
      for (const l of listeners) l(next);
    },
  };
}

test('a failing target is reported and does not stop the others; the next pass retries it', async () => {
  const { log, lines } = capturedLog();
  const registry = createRegistry();
  let fail = true;
  const written: NetworkPolicyObject[][] = [];
  const states: StaticState[] = [];
  const syncer = new Syncer({
    settings: SETTINGS,
    policies: feed(new CompiledPolicies([STRIPE])),
    groups: new StaticGroups([
      { name: 'api', namespace: 'payments', labels: { app: 'api' }, cidrs: ['10.0.1.0/24'] },
    ]),
    resolve: async () => resolution(['203.0.113.10']),
    targets: {
      networkPolicy: {
        settings: NetworkPolicyTargetSchema.parse({}),
        writer: {
          namespaces: async () => [],
          writeConditions: async () => 0,
          write: async (objects) => {
            if (fail) throw new Error('the API server is away');
            written.push([...objects]);
            return { applied: objects.length, deleted: 0, unchanged: 0 };
          },
        },
      },
      nftables: { datapath: { reconcile: async (s) => void states.push(s) } },
    },
    clock: new ManualClock(),
    log,
    metrics: createSyncMetrics(registry),
  });
  const status = await syncer.once();
  assert.equal(status.targets.networkpolicy?.ok, false);
  assert.match(status.targets.networkpolicy?.error ?? '', /away/);
  assert.equal(status.targets.nftables?.ok, true);
  assert.equal(states.length, 1);
  assert.ok(states[0]?.cidrs.some((c) => c.cidr.text === '203.0.113.10/32'));
  assert.ok(lines().some((l) => l['reason'] === 'target_write_failed' && l['target'] === 'networkpolicy'));
  assert.equal(syncer.ready(), false);
  assert.match(
    await registry.metrics(),
    /namegate_sync_writes_total\{target="networkpolicy",result="error"\} 1/,
  );

  fail = false;
  await syncer.pass();
  assert.equal(syncer.status().targets.networkpolicy?.ok, true);
  assert.equal(written[0]?.[0]?.metadata.name, 'namegate-stripe');
  assert.equal(syncer.ready(), true);
  assert.ok(lines().some((l) => l['reason'] === 'target_recovered'));
  assert.deepEqual(
    syncer.status().wildcards.map((w) => [w.pattern, w.policies]),
    [['*.stripe.com', ['payments/stripe']]],
  );
  assert.equal(lines().filter((l) => l['reason'] === 'wildcard_unresolvable').length, 1);
  await syncer.stop();
});

test('a policy change re-plans the names: a name no policy has any more leaves every target', async () => {
  const { log } = capturedLog();
  const states: StaticState[] = [];
  const policies = feed(new CompiledPolicies([STRIPE]));
  const syncer = new Syncer({
    settings: SETTINGS,
    policies,
    groups: new StaticGroups([
      { name: 'api', namespace: 'payments', labels: { app: 'api' }, cidrs: ['10.0.1.0/24'] },
    ]),
    resolve: async (name) => resolution(name === 'api.stripe.com' ? ['203.0.113.10'] : ['203.0.113.20']),
    targets: { nftables: { datapath: { reconcile: async (s) => void states.push(s) } } },
    clock: new ManualClock(),
    log,
    periodicMs: 3_600_000,
  });
  await syncer.once();
  syncer.start();
  policies.swap(
    new CompiledPolicies([
      policy(`
apiVersion: namegate.dev/v1alpha1
kind: EgressPolicy
metadata: { name: stripe, namespace: payments }
spec:
  podSelector: { matchLabels: { app: api } }
  egress: [{ toFQDNs: [{ name: other.example.com }], ports: [{ port: 443 }] }]
`),
    ]),
  );
  await syncer.loop.idle();
  await syncer.pass();
  const last = states.at(-1);
  const dests = last?.cidrs.map((c) => c.cidr.text) ?? [];
  assert.ok(!dests.includes('203.0.113.10/32'), 'the old name left');
  assert.ok(dests.includes('203.0.113.20/32'), 'the new name is in');
  await syncer.stop();
});
