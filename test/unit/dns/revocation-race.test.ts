/**
 * Answers racing a revocation (K8S-02, and any policy change), with the order of events injected: the upstream's answer and the
 * datapath's commit are held by the test while a policy change and the enforcer's sync run.
 * Nothing an answer learned under the old view may stay in the kernel once the sync for the new
 * one is done, and nothing learned under the new view may be removed by it.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createAgentMetrics } from '../../../src/agent/metrics.ts';
import type { AllowElement } from '../../../src/datapath/datapath.ts';
import { Enforcer } from '../../../src/enforce/enforcer.ts';
import { StaticGroups } from '../../../src/identity/static-groups.ts';
import { silentLogger } from '../../../src/observe/log.ts';
import { createRegistry } from '../../../src/observe/metrics.ts';
import { CompiledPolicies } from '../../../src/policy/compile.ts';
import { A, GROUPS, type Harness, harness, POLICIES, policy, query, rcodeOf, reply } from './helpers.ts';

const WEB = '10.0.1.5';
const NAME = 'api.example.com';
const IP = '198.51.100.7';

/** Web still governed, but api.example.com no longer allowed: a revocation of that name. */
const withoutWeb = () =>
  new CompiledPolicies([
    ...POLICIES().filter((p) => p.ref.name !== 'web'),
    policy(
      {
        podSelector: { matchLabels: { app: 'web' } },
        egress: [{ toFQDNs: [{ name: 'other.example.com' }] }],
      },
      'web',
      'EgressPolicy',
      'shop',
    ),
  ]);

/** A promise and its resolver. */
function gate<T = void>(): { promise: Promise<T>; open(v: T): void } {
  let open!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    open = r;
  });
  return { promise, open };
}

function enforcerFor(h: Harness): Enforcer {
  return new Enforcer({
    datapath: h.datapath,
    store: () => h.store,
    identities: new StaticGroups(GROUPS),
    policies: { current: () => h.policies },
    clock: h.clock,
    log: silentLogger(),
    metrics: createAgentMetrics(createRegistry()),
  });
}

/** Let every pending callback (commits, undo) run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

describe('answers racing a revocation', () => {
  test('a query asked before the revocation and answered after it learns nothing', async () => {
    const h = harness();
    const upstream = gate<Buffer>();
    h.upstream = () => upstream.promise;
    const asked = h.ask(WEB, query(NAME));
    // The policy change lands (and its sync is done) while the upstream is still answering.
    h.policies = withoutWeb();
    await enforcerFor(h).sync('policy');
    upstream.open(reply(NAME, 'A', [A(NAME, IP)]));
    assert.equal(rcodeOf(await asked), 5, 'decided again under the policies in force: REFUSED');
    await settle();
    assert.ok(!h.datapath.allows(WEB, IP, 'TCP', 443), 'the revoked name is not put back');
    assert.equal(h.store.size, 0);
    assert.equal(await h.metric('namegate_dns_not_learned_total', { reason: 'view_changed' }), 1);
  });

  test('an entry revoked while its commit is on the way leaves the kernel again', async () => {
    const h = harness({ settings: { holdTimeoutMs: 5_000 } });
    h.upstream = () => reply(NAME, 'A', [A(NAME, IP)]);
    const commit = gate();
    const learn = h.datapath.learn.bind(h.datapath);
    const learning = gate();
    h.datapath.learn = async (elements: readonly AllowElement[]) => {
      learning.open();
      await commit.promise;
      return learn(elements);
    };
    const asked = h.ask(WEB, query(NAME));
    await learning.promise;
    // The store holds the answer, the kernel not yet: the sync of a revocation runs now. It
    // finds no element to remove and drops the store entry.
    h.policies = withoutWeb();
    await enforcerFor(h).sync('policy');
    assert.equal(h.store.size, 0);
    commit.open();
    await asked;
    await settle();
    assert.ok(!h.datapath.allows(WEB, IP, 'TCP', 443), 'the element committed after the sync is removed');
    assert.equal(await h.metric('namegate_dns_not_learned_total', { reason: 'revoked_in_flight' }), 1);
  });

  test('an answer learned under a newer view survives a sync of the older one', async () => {
    const h = harness();
    h.policies = withoutWeb();
    const enforcer = enforcerFor(h);
    // A sync of the old view (no web rule) is running: held in its reconcile.
    const reconcile = h.datapath.reconcile.bind(h.datapath);
    const reconciling = gate();
    const release = gate();
    let first = true;
    h.datapath.reconcile = async (state) => {
      if (first) {
        first = false;
        reconciling.open();
        await release.promise;
      }
      return reconcile(state);
    };
    const old = enforcer.sync('identity');
    await reconciling.promise;
    // The web rule comes back; the DNS proxy answers under it at once.
    h.policies = new CompiledPolicies(POLICIES());
    const followUp = enforcer.sync('policy');
    h.upstream = () => reply(NAME, 'A', [A(NAME, IP)]);
    assert.equal(rcodeOf(await h.ask(WEB, query(NAME))), 0);
    assert.ok(h.datapath.allows(WEB, IP, 'TCP', 443));
    release.open();
    await old;
    await followUp;
    await enforcer.sync('policy');
    assert.ok(h.datapath.allows(WEB, IP, 'TCP', 443), 'the just-learned element stays');
    assert.ok(h.store.holds(WEB, NAME, IP, h.clock.now()));
  });
});
