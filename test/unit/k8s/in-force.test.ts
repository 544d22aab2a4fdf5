/**
 * Failing closed on rejected policy objects (src/k8s/in-force.ts; docs/security.md REL-06),
 * driven the way the Kubernetes policy source drives it: evaluate every object, add the set
 * checks' problems, decide what is in force, compile, and ask decide() for a pod.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { canonicalName } from '../../../src/core/names.ts';
import { makeIdentity } from '../../../src/identity/identity.ts';
import { inForce, type LastGood, type Standing } from '../../../src/k8s/in-force.ts';
import {
  type Evaluated,
  evaluatePolicyObject,
  type PolicyObject,
  setProblems,
  withSetProblems,
} from '../../../src/k8s/policy-source.ts';
import { CompiledPolicies } from '../../../src/policy/compile.ts';
import { decide, Reason } from '../../../src/policy/decide.ts';

/** A cluster: objects by id, and what was accepted before (the source's state between compiles). */
class Cluster {
  readonly objects = new Map<string, PolicyObject>();
  lastGood = new Map<string, LastGood>();
  standings = new Map<string, Standing>();
  set = new CompiledPolicies([]);

  apply(...objects: PolicyObject[]): this {
    for (const o of objects)
      this.objects.set(`${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`, o);
    return this.compile();
  }

  delete(o: PolicyObject): this {
    this.objects.delete(`${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`);
    return this.compile();
  }

  compile(): this {
    const evaluated = new Map<string, Evaluated>();
    for (const [id, o] of this.objects)
      evaluated.set(id, evaluatePolicyObject(o, { istioRegistryOnly: true }));
    const decided = inForce(withSetProblems(evaluated, setProblems(evaluated, this.objects)), this.lastGood);
    this.lastGood = decided.lastGood;
    this.standings = decided.standings;
    this.set = new CompiledPolicies(decided.policies);
    return this;
  }

  /** The verdict for `pod` (labels) in namespace shop connecting to name:443. */
  verdict(
    labels: Record<string, string>,
    name: string,
  ): { verdict: string; reason: Reason; mode: string | null } {
    const pod = makeIdentity(`pod:shop/${JSON.stringify(labels)}`, 'shop', labels);
    const d = decide(this.set, pod, canonicalName(name), 'TCP', 443);
    return { verdict: d.verdict, reason: d.reason, mode: d.mode };
  }
}

function egressPolicy(
  fqdn: string,
  opts: { uid?: string; mode?: 'Enforce' | 'Audit'; generation?: number } = {},
): PolicyObject {
  return {
    apiVersion: 'namegate.dev/v1alpha1',
    kind: 'EgressPolicy',
    metadata: { name: 'web', namespace: 'shop', uid: opts.uid ?? 'uid-1', generation: opts.generation ?? 1 },
    spec: {
      podSelector: { matchLabels: { app: 'web' } },
      ...(opts.mode ? { mode: opts.mode } : {}),
      egress: [{ toFQDNs: [{ name: fqdn }], ports: [{ port: 443 }] }],
    },
  };
}

const WEB = { app: 'web' };
const DENIED = { verdict: 'deny', reason: Reason.NoMatchingRule, mode: 'Enforce' };
const UNGOVERNED = { verdict: 'allow', reason: Reason.Ungoverned, mode: null };
// A name no FQDN selector may hold: the object is invalid.
const INVALID = 'bad..name';

describe('a rejected policy object fails closed', () => {
  test('never accepted: the pods only it selects are governed and denied, not ungoverned', () => {
    const c = new Cluster().apply(egressPolicy(INVALID));
    assert.deepEqual([...c.standings.values()], ['rejected_fail_closed']);
    assert.deepEqual(c.verdict(WEB, 'api.example.com'), DENIED);
    assert.deepEqual(c.verdict({ app: 'other' }, 'api.example.com'), UNGOVERNED, 'others stay as they were');
  });

  test('never accepted: its mode is kept when it can be read', () => {
    const c = new Cluster().apply(egressPolicy(INVALID, { mode: 'Audit' }));
    assert.deepEqual(c.verdict(WEB, 'api.example.com'), {
      verdict: 'audit',
      reason: Reason.NoMatchingRule,
      mode: 'Audit',
    });
  });

  test('an update makes it invalid: the last accepted version stays in force until fixed', () => {
    const c = new Cluster().apply(egressPolicy('a.example.com'));
    assert.equal(c.verdict(WEB, 'a.example.com').verdict, 'allow');
    c.apply(egressPolicy(INVALID, { generation: 2 }));
    assert.deepEqual([...c.standings.values()], ['rejected_last_good_kept']);
    assert.equal(c.verdict(WEB, 'a.example.com').verdict, 'allow');
    assert.deepEqual(c.verdict(WEB, 'b.example.com'), DENIED);
    // Still invalid on the next compile (another object changed): still the same version.
    c.compile();
    assert.equal(c.verdict(WEB, 'a.example.com').verdict, 'allow');
    c.apply(egressPolicy('b.example.com', { generation: 3 }));
    assert.deepEqual([...c.standings.values()], ['accepted']);
    assert.deepEqual(c.verdict(WEB, 'a.example.com'), DENIED);
    assert.equal(c.verdict(WEB, 'b.example.com').verdict, 'allow');
  });

  test('deleting it removes it and its last good version', () => {
    const c = new Cluster().apply(egressPolicy('a.example.com'));
    c.apply(egressPolicy(INVALID));
    c.delete(egressPolicy(INVALID));
    assert.equal(c.lastGood.size, 0);
    assert.deepEqual(c.verdict(WEB, 'a.example.com'), UNGOVERNED);
    // Recreated invalid under the same name: a new object, nothing of the old one carries over.
    c.apply(egressPolicy(INVALID, { uid: 'uid-2' }));
    assert.deepEqual([...c.standings.values()], ['rejected_fail_closed']);
    assert.deepEqual(c.verdict(WEB, 'a.example.com'), DENIED);
  });

  test('a new uid under the same name (a missed delete) does not inherit the old version', () => {
    const c = new Cluster().apply(egressPolicy('a.example.com'));
    c.apply(egressPolicy(INVALID, { uid: 'uid-2' }));
    assert.deepEqual([...c.standings.values()], ['rejected_fail_closed']);
    assert.deepEqual(c.verdict(WEB, 'a.example.com'), DENIED);
  });

  test('a subject that cannot be read is the one case left ungoverned', () => {
    const bad = egressPolicy(INVALID);
    const c = new Cluster().apply({ ...bad, spec: { ...(bad.spec as object), podSelector: 'app=web' } });
    assert.deepEqual([...c.standings.values()], ['rejected_no_subject']);
    assert.deepEqual(c.verdict(WEB, 'api.example.com'), UNGOVERNED);
  });

  test("rejected by its dialect's set check: its own subject is governed and denied", () => {
    const cnp = (name: string, priority: number, action: 'Accept' | 'Deny', pods: object): PolicyObject => ({
      apiVersion: 'policy.networking.k8s.io/v1alpha2',
      kind: 'ClusterNetworkPolicy',
      metadata: { name, uid: name },
      spec: {
        tier: 'Admin',
        priority,
        subject: { pods: { namespaceSelector: {}, podSelector: { matchLabels: pods } } },
        egress: [
          action === 'Accept'
            ? { action, to: [{ domainNames: ['a.example.com'] }] }
            : { action, to: [{ networks: ['0.0.0.0/0', '::/0'] }] },
        ],
      },
    });
    const accept = cnp('accept', 20, 'Accept', WEB);
    // Evaluated first, over pods that may also be app=web: it rejects the Accept.
    const deny = cnp('deny', 10, 'Deny', { tier: 'db' });
    const c = new Cluster().apply(accept);
    assert.equal(c.verdict(WEB, 'a.example.com').verdict, 'allow');
    c.apply(deny);
    assert.equal(c.standings.get('ClusterNetworkPolicy//accept'), 'rejected_last_good_kept');
    // Seen for the first time together (an agent starting): fail closed on its subject.
    const fresh = new Cluster().apply(accept, deny);
    assert.equal(fresh.standings.get('ClusterNetworkPolicy//accept'), 'rejected_fail_closed');
    assert.deepEqual(fresh.verdict(WEB, 'a.example.com'), DENIED);
  });
});
