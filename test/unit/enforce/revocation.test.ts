/**
 * A revocation is one step (K8S-02, a pod relabelled out; any policy change): the enforcer reports it done (log reason `revoked`, metric
 * namegate_agent_revocations_total{result="ok"}) only once the datapath's forget resolved, i.e.
 * the elements are gone and so are their flows; a forget that could not end the flows is
 * `revocation_failed`, counted as an error, and fails the sync.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createAgentMetrics } from '../../../src/agent/metrics.ts';
import { ManualClock } from '../../../src/core/clock.ts';
import { ErrorCode, NamegateError } from '../../../src/core/errors.ts';
import type { ElementKey, ForgetResult } from '../../../src/datapath/datapath.ts';
import { RecordingDatapath } from '../../../src/datapath/recording.ts';
import { Enforcer } from '../../../src/enforce/enforcer.ts';
import { StaticGroups } from '../../../src/identity/static-groups.ts';
import { createRegistry } from '../../../src/observe/metrics.ts';
import { CompiledPolicies } from '../../../src/policy/compile.ts';
import { LearnedStore } from '../../../src/store/learned-store.ts';
import { capturedLog } from '../sync/helpers.ts';
import { STRIPE } from './helpers.ts';

const POD = '10.0.0.2';
const API = '203.0.113.10';

/** A datapath whose forget waits for the test: the flows of what it removed end when released. */
class GatedDatapath extends RecordingDatapath {
  readonly forgets: Array<{ release(r: ForgetResult | Error): void }> = [];
  #waiters: Array<() => void> = [];

  override async forget(elements: readonly ElementKey[]): Promise<ForgetResult> {
    await super.forget(elements);
    const outcome = await new Promise<ForgetResult | Error>((release) => {
      this.forgets.push({ release });
      for (const w of this.#waiters.splice(0)) w();
    });
    if (outcome instanceof Error) throw outcome;
    return outcome;
  }

  /** Resolves once a forget is waiting. */
  forgetCalled(): Promise<void> {
    if (this.forgets.length > 0) return Promise.resolve();
    return new Promise((r) => this.#waiters.push(r));
  }
}

function setup() {
  const clock = new ManualClock();
  const datapath = new GatedDatapath(clock);
  const store = new LearnedStore({ ttl: { minTtlSeconds: 30, maxTtlSeconds: 3600, graceSeconds: 10 } });
  let set = new CompiledPolicies([STRIPE]);
  const registry = createRegistry();
  const { log, lines } = capturedLog();
  const enforcer = new Enforcer({
    datapath,
    store: () => store,
    identities: new StaticGroups([
      { name: 'api', namespace: 'payments', labels: { app: 'api' }, cidrs: [`${POD}/32`] },
    ]),
    policies: { current: () => set },
    clock,
    log,
    metrics: createAgentMetrics(registry),
  });
  const revocations = async (result: string) => {
    const m = await registry.getSingleMetric('namegate_agent_revocations_total')?.get();
    return m?.values.find((v) => v.labels['result'] === result)?.value ?? 0;
  };
  const revokedLines = () => lines().filter((l) => l['reason'] === 'revoked');
  return {
    clock,
    datapath,
    store,
    enforcer,
    lines,
    revokedLines,
    revocations,
    revokeAll: () => {
      set = new CompiledPolicies([]);
    },
  };
}

describe('revocation', () => {
  it('is reported done only after the elements and their flows are gone', async () => {
    const s = setup();
    s.store.learn(POD, 'api.stripe.com', [{ ip: API, ttl: 300 }], s.clock.now());
    await s.enforcer.sync('policy');
    assert.ok(s.datapath.allows(POD, API, 'TCP', 443));

    s.revokeAll();
    const sync = s.enforcer.sync('policy');
    await s.datapath.forgetCalled();
    // The elements are out, conntrack has not finished: not done yet.
    assert.ok(!s.datapath.allows(POD, API, 'TCP', 443));
    assert.deepEqual(s.revokedLines(), []);
    assert.equal(await s.revocations('ok'), 0);

    s.datapath.forgets[0]!.release({ flows: 2 });
    const r = await sync;
    assert.equal(r.forgotten, 1);
    const [line, ...more] = s.revokedLines();
    assert.deepEqual(more, []);
    assert.equal(line?.['trigger'], 'policy');
    assert.equal(line?.['elements'], 1);
    assert.equal(line?.['flows'], 2);
    assert.deepEqual(line?.['sources'], [POD]);
    assert.equal(await s.revocations('ok'), 1);
    // And the sync itself is in step only after the revocation.
    const order = s.lines().map((l) => l['reason']);
    assert.ok(order.indexOf('revoked') < order.lastIndexOf('policy'), order.join(','));
  });

  it('that could not end the flows is revocation_failed, counted, and fails the sync', async () => {
    const s = setup();
    s.store.learn(POD, 'api.stripe.com', [{ ip: API, ttl: 300 }], s.clock.now());
    await s.enforcer.sync('policy');
    s.revokeAll();
    const sync = s.enforcer.sync('policy');
    await s.datapath.forgetCalled();
    s.datapath.forgets[0]!.release(new NamegateError(ErrorCode.CommandFailed, 'conntrack: no such binary'));
    await assert.rejects(sync, /conntrack/);
    assert.deepEqual(s.revokedLines(), []);
    const failed = s.lines().find((l) => l['reason'] === 'revocation_failed');
    assert.deepEqual(failed?.['sources'], [POD]);
    assert.equal(await s.revocations('error'), 1);
  });

  it('removing a source is one revocation step too', async () => {
    const s = setup();
    s.store.learn(POD, 'api.stripe.com', [{ ip: API, ttl: 300 }], s.clock.now());
    await s.enforcer.sync('policy');
    const removing = s.enforcer.removeSources([POD]);
    await s.datapath.forgetCalled();
    assert.deepEqual(s.revokedLines(), []);
    s.datapath.forgets[0]!.release({ flows: 1 });
    await removing;
    assert.equal(s.revokedLines()[0]?.['trigger'], 'sources_removed');
    assert.equal(s.store.countOf(POD), 0);
  });
});
