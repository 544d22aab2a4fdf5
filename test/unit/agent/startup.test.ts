/**
 * The agent's startup: a policy change that lands while the first full sync runs (the DNS proxy
 * already answers with it) must reach the kernel too, by a follow-up sync, not a minute later
 * by the periodic one.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startAgent } from '../../../src/agent/agent.ts';
import { validateConfig } from '../../../src/config/load.ts';
import type { StaticState } from '../../../src/datapath/datapath.ts';
import { RecordingDatapath } from '../../../src/datapath/recording.ts';
import { StaticGroups } from '../../../src/identity/static-groups.ts';
import { silentLogger } from '../../../src/observe/log.ts';
import { CompiledPolicies } from '../../../src/policy/compile.ts';
import { policy } from '../enforce/helpers.ts';

test('a policy change during the startup sync is brought to the kernel', async (t) => {
  const config = validateConfig(
    { dns: { listen: ['127.0.0.1:0'], upstreams: ['127.0.0.1:9'] }, datapath: { driver: 'recording' } },
    '/',
  );
  let set = new CompiledPolicies([]);
  const listeners: Array<(s: CompiledPolicies) => void> = [];
  const policies = {
    current: () => set,
    onChange: (l: (s: CompiledPolicies) => void) => {
      listeners.push(l);
      return () => {};
    },
  };
  const governing = new CompiledPolicies([
    policy(`
apiVersion: namegate.dev/v1alpha1
kind: EgressPolicy
metadata: { name: api, namespace: apps }
spec:
  podSelector: { matchLabels: { app: api } }
  egress: [{ toFQDNs: [{ name: api.example.com }], ports: [{ port: 443 }] }]
`),
  ]);
  const datapath = new RecordingDatapath();
  const states: StaticState[] = [];
  const reconcile = datapath.reconcile.bind(datapath);
  datapath.reconcile = async (state) => {
    states.push(state);
    // The second reconcile is the startup sync: the policy arrives while it runs.
    if (states.length === 2) {
      set = governing;
      for (const l of listeners) l(set);
    }
    return reconcile(state);
  };
  const agent = await startAgent({
    config,
    datapath,
    policies,
    identities: new StaticGroups([
      { name: 'api', namespace: 'apps', labels: { app: 'api' }, cidrs: ['10.0.1.5/32'] },
    ]),
    log: silentLogger(),
    flowLog: null,
    httpListen: null,
  });
  t.after(() => agent.stop());
  for (let i = 0; i < 50 && states.at(-1)?.sources.length === 0; i++)
    await new Promise((r) => setImmediate(r));
  assert.deepEqual(states.at(-1)?.sources, [{ ip: '10.0.1.5', mode: 'Enforce' }]);
});
