/**
 * A relabel revokes what the new labels no longer allow, and only that: the pod keeps the
 * elements (and flows) of rules that still select it, including one it learned just before.
 * An address handed to another workload loses everything (removeSources), as before.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { removedIps, startAgent } from '../../../src/agent/agent.ts';
import { validateConfig } from '../../../src/config/load.ts';
import { systemClock } from '../../../src/core/clock.ts';
import { RecordingDatapath } from '../../../src/datapath/recording.ts';
import { makeIdentity } from '../../../src/identity/identity.ts';
import { silentLogger } from '../../../src/observe/log.ts';
import { CompiledPolicies } from '../../../src/policy/compile.ts';
import type { Identity } from '../../../src/policy/model.ts';
import { policy } from '../enforce/helpers.ts';

const POD = '10.0.5.7';
const GITHUB = '203.0.113.20';
const NPM = '203.0.113.30';

const runner = makeIdentity('pod:ci/runner-1', 'ci', { role: 'runner' });
const builder = makeIdentity('pod:ci/runner-1', 'ci', { role: 'builder' });
const other = makeIdentity('pod:ci/other-2', 'ci', { role: 'runner' });

describe('removedIps', () => {
  test('an address kept by the same workload (a relabel) is not removed; reuse and deletion are', () => {
    assert.deepEqual(removedIps({ removed: [[POD, runner]], added: [[POD, builder]] }), []);
    assert.deepEqual(removedIps({ removed: [[POD, runner]], added: [[POD, other]] }), [POD]);
    assert.deepEqual(removedIps({ removed: [[POD, runner]], added: [] }), [POD]);
    assert.deepEqual(removedIps(undefined), []);
  });
});

test('K8S-02: a relabel keeps the elements of rules that still select the pod', async (t) => {
  const config = validateConfig(
    { dns: { listen: ['127.0.0.1:0'], upstreams: ['127.0.0.1:9'] }, datapath: { driver: 'recording' } },
    '/',
  );
  const set = new CompiledPolicies([
    policy(`
apiVersion: namegate.dev/v1alpha1
kind: EgressPolicy
metadata: { name: runners, namespace: ci }
spec:
  podSelector: { matchLabels: { role: runner } }
  egress: [{ toFQDNs: [{ name: github.com }], ports: [{ port: 443 }] }]
`),
    policy(`
apiVersion: namegate.dev/v1alpha1
kind: EgressPolicy
metadata: { name: baseline, namespace: ci }
spec:
  podSelector: {}
  egress: [{ toFQDNs: [{ name: registry.npmjs.org }], ports: [{ port: 443 }] }]
`),
  ]);
  let identity: Identity = runner;
  const listeners: Array<(delta: unknown) => void> = [];
  const identities = {
    lookup: (ip: string) => (ip === POD ? identity : undefined),
    entries: () => [[POD, identity] as const],
    onChange: (l: (delta: unknown) => void) => {
      listeners.push(l);
      return () => {};
    },
  };
  const datapath = new RecordingDatapath();
  const agent = await startAgent({
    config,
    datapath,
    policies: { current: () => set, onChange: () => () => {} },
    identities,
    log: silentLogger(),
    flowLog: null,
    httpListen: null,
  });
  t.after(() => agent.stop());

  // What two answers taught: the store first, then the kernel (as the DNS proxy does).
  const store = agent.dns.store;
  const element = (destination: string) => ({
    source: POD,
    destination,
    protocol: 'TCP' as const,
    portFrom: 443,
    portTo: 443,
    timeoutMs: 300_000,
  });
  store.learn(POD, 'github.com', [{ ip: GITHUB, ttl: 300 }], systemClock.now());
  store.learn(POD, 'registry.npmjs.org', [{ ip: NPM, ttl: 300 }], systemClock.now());
  await datapath.learn([element(GITHUB), element(NPM)]);

  const before = agent.enforcer.syncs;
  identity = builder;
  for (const l of listeners) l({ removed: [[POD, runner]], added: [[POD, builder]] });
  while (agent.enforcer.syncs === before) await new Promise((r) => setImmediate(r));

  assert.ok(!datapath.allows(POD, GITHUB, 'TCP', 443), 'the runner rule no longer selects the pod');
  assert.ok(datapath.allows(POD, NPM, 'TCP', 443), 'the baseline still does: its element stays');
  assert.ok(store.holds(POD, 'registry.npmjs.org', NPM, systemClock.now()));
  assert.ok(!store.holds(POD, 'github.com', GITHUB, systemClock.now()));
});
