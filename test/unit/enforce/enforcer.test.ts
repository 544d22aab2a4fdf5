/**
 * The enforcer against a recording datapath: static state follows policy and identity, learned
 * elements follow what the store justifies, the syncs of a start keep what no checkpoint
 * explains, and a sync whose view went stale forgets nothing.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createAgentMetrics } from '../../../src/agent/metrics.ts';
import { ManualClock } from '../../../src/core/clock.ts';
import type { AllowElement } from '../../../src/datapath/datapath.ts';
import { RecordingDatapath } from '../../../src/datapath/recording.ts';
import { Enforcer } from '../../../src/enforce/enforcer.ts';
import { StaticGroups } from '../../../src/identity/static-groups.ts';
import { silentLogger } from '../../../src/observe/log.ts';
import { createRegistry } from '../../../src/observe/metrics.ts';
import { CompiledPolicies } from '../../../src/policy/compile.ts';
import type { Policy } from '../../../src/policy/model.ts';
import type { PolicySource } from '../../../src/policy/source.ts';
import { LearnedStore } from '../../../src/store/learned-store.ts';
import { STRIPE } from './helpers.ts';

const POD = '10.0.0.2';
const POD6 = 'fd00::2';
const OTHER = '10.0.0.3';
const API = '203.0.113.10';

class Policies implements PolicySource {
  set: CompiledPolicies;
  #listeners: Array<(s: CompiledPolicies) => void> = [];
  constructor(policies: Policy[]) {
    this.set = new CompiledPolicies(policies);
  }
  current(): CompiledPolicies {
    return this.set;
  }
  onChange(l: (s: CompiledPolicies) => void): () => void {
    this.#listeners.push(l);
    return () => {};
  }
  replace(policies: Policy[]): void {
    this.set = new CompiledPolicies(policies);
  }
}

function setup(policies: Policy[] = [STRIPE]) {
  const clock = new ManualClock();
  const datapath = new RecordingDatapath(clock);
  const identities = new StaticGroups([
    {
      name: 'api',
      namespace: 'payments',
      labels: { app: 'api' },
      namespaceLabels: {},
      cidrs: [`${POD}/32`, `${POD6}/128`],
    },
    {
      name: 'other',
      namespace: 'payments',
      labels: { app: 'other' },
      namespaceLabels: {},
      cidrs: [`${OTHER}/32`],
    },
  ]);
  const store = new LearnedStore({ ttl: { minTtlSeconds: 30, maxTtlSeconds: 3600, graceSeconds: 10 } });
  const source = new Policies(policies);
  const enforcer = new Enforcer({
    datapath,
    store: () => store,
    identities,
    policies: source,
    clock,
    log: silentLogger(),
    metrics: createAgentMetrics(createRegistry()),
  });
  return { clock, datapath, identities, store, source, enforcer };
}

function element(source: string, destination: string, port = 443, timeoutMs = 60_000): AllowElement {
  return { source, destination, protocol: 'TCP', portFrom: port, portTo: port, timeoutMs };
}

describe('Enforcer', () => {
  it('programs governed sources, their CIDR allows, and nothing for ungoverned ones', async () => {
    const { datapath, enforcer } = setup();
    await enforcer.sync('policy');
    assert.deepEqual(datapath.state.sources.map((s) => [s.ip, s.mode]).sort(), [
      [POD, 'Enforce'],
      [POD6, 'Enforce'],
    ]);
    assert.deepEqual(
      datapath.state.cidrs.map((c) => [c.source, c.cidr.text, c.portFrom]),
      [[POD, '198.51.100.0/24', 22]],
    );
  });

  it('learns what the store justifies and the kernel lacks', async () => {
    const { clock, datapath, store, enforcer } = setup();
    store.learn(POD, 'api.stripe.com', [{ ip: API, ttl: 300 }], clock.now());
    const r = await enforcer.sync('policy');
    assert.equal(r.learned, 1);
    assert.ok(datapath.allows(POD, API, 'TCP', 443));
    assert.ok(!datapath.allows(POD, API, 'TCP', 80));
  });

  it('a removed policy takes its elements away and drops its store entries', async () => {
    const { clock, datapath, store, source, enforcer } = setup();
    store.learn(POD, 'api.stripe.com', [{ ip: API, ttl: 300 }], clock.now());
    await enforcer.sync('policy');
    source.replace([]);
    const r = await enforcer.sync('policy');
    assert.equal(r.forgotten, 1);
    assert.equal(r.stale, 1);
    assert.ok(!datapath.allows(POD, API, 'TCP', 443));
    assert.equal(store.size, 0);
    assert.deepEqual(datapath.state.sources, []);
  });

  it('keeps elements of governed sources its store never held; forgets those of ungoverned ones', async () => {
    const { datapath, enforcer } = setup();
    // What an earlier agent left in the kernel (no checkpoint), or another agent sharing the
    // table during a rolling update learned: this agent's store cannot explain it.
    await datapath.learn([element(POD, API), element('10.9.9.9', API)]);
    await enforcer.sync('startup');
    assert.ok(datapath.allows(POD, API, 'TCP', 443), 'kept: the pod is governed; it expires on its own');
    assert.ok(!datapath.allows('10.9.9.9', API, 'TCP', 443), 'forgotten: no identity any more');
    await enforcer.sync('periodic');
    assert.ok(datapath.allows(POD, API, 'TCP', 443), 'still kept by a later sync');
  });

  it('an expired store entry does not claim an element another agent refreshed (REL-11)', async () => {
    const { clock, datapath, store, enforcer } = setup();
    store.learn(POD, 'api.stripe.com', [{ ip: API, ttl: 30 }], clock.now());
    await enforcer.sync('policy');
    // A second agent on the node answers the same name later and refreshes the element.
    clock.advance(30_000);
    await datapath.learn([element(POD, API, 443, 300_000)]);
    // This agent's entry has expired (its store has not collected it yet): not a reason to
    // forget what the other agent's fresh answer opened.
    clock.advance(11_000);
    const r = await enforcer.sync('periodic');
    assert.equal(r.forgotten, 0);
    assert.ok(datapath.allows(POD, API, 'TCP', 443));
  });

  it('forgets an unexplained element once the source stops being governed', async () => {
    const { datapath, source, enforcer } = setup();
    await datapath.learn([element(POD, API)]);
    source.replace([]);
    await enforcer.sync('policy');
    assert.ok(!datapath.allows(POD, API, 'TCP', 443));
  });

  it('a sync whose view went stale forgets nothing; the follow-up does', async () => {
    const { clock, datapath, store, source, enforcer } = setup();
    store.learn(POD, 'api.stripe.com', [{ ip: API, ttl: 300 }], clock.now());
    await enforcer.sync('policy');
    source.replace([]);
    const first = enforcer.sync('policy');
    // A change arrives while the first sync runs: the first must not act on its old view.
    const second = enforcer.sync('identity');
    const r = await first;
    assert.equal(r.forgotten, 0);
    await second;
    // The follow-up runs after the first; wait for it through another request.
    await enforcer.sync('policy');
    assert.ok(!datapath.allows(POD, API, 'TCP', 443));
  });

  it('syncAfter waits for a sync that starts after the call, not the one already running', async () => {
    const { datapath, identities, enforcer } = setup();
    await enforcer.sync('policy');
    const running = enforcer.sync('policy');
    // A new pod arrives while that sync runs: it read the identities before the pod existed.
    identities.replace([
      {
        name: 'new',
        namespace: 'payments',
        labels: { app: 'api' },
        namespaceLabels: {},
        cidrs: ['10.0.0.9/32'],
      },
    ]);
    const after = enforcer.syncAfter('unknown_hold');
    await running;
    let done = false;
    void after.then(() => {
      done = true;
    });
    await new Promise((r) => setImmediate(r));
    // Either still waiting, or the follow-up already ran: never done with only the old sync.
    if (done) assert.ok(datapath.state.sources.some((s) => s.ip === '10.0.0.9'));
    await after;
    assert.ok(
      datapath.state.sources.some((s) => s.ip === '10.0.0.9'),
      'the new source is in the kernel',
    );
    // Idle: a sync of its own.
    const before = enforcer.syncs;
    await enforcer.syncAfter('unknown_hold');
    assert.equal(enforcer.syncs, before + 1);
  });

  it('a dual-stack pod: an AAAA answer asked over IPv4 opens the IPv6 sibling', async () => {
    const { clock, datapath, store, enforcer } = setup();
    store.learn(POD, 'api.stripe.com', [{ ip: '2001:db8::10', ttl: 300 }], clock.now());
    await enforcer.sync('policy');
    assert.ok(datapath.allows(POD6, '2001:db8::10', 'TCP', 443));
  });

  it('removeSources forgets what those addresses learned and their store entries', async () => {
    const { clock, datapath, store, enforcer } = setup();
    store.learn(POD, 'api.stripe.com', [{ ip: API, ttl: 300 }], clock.now());
    await enforcer.sync('policy');
    await enforcer.removeSources([POD]);
    assert.ok(!datapath.allows(POD, API, 'TCP', 443));
    assert.equal(store.countOf(POD), 0);
  });

  it('answers in denied ranges are not opened without a toCIDRs rule', async () => {
    const { clock, datapath, store, enforcer } = setup();
    store.learn(POD, 'api.stripe.com', [{ ip: '10.1.2.3', ttl: 300 }], clock.now());
    const r = await enforcer.sync('policy');
    assert.equal(r.stale, 1);
    assert.ok(!datapath.allows(POD, '10.1.2.3', 'TCP', 443));
  });
});
