/**
 * What a restart removes from the kernel (src/enforce/restore.ts): every element the restored
 * state no longer justifies after identities or policies changed while the agent was down, and
 * none that it still explains.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AllowElement } from '../../../src/datapath/datapath.ts';
import { elementKey } from '../../../src/datapath/datapath.ts';
import { checkpointPairs, couldBeLearned, planRestore } from '../../../src/enforce/restore.ts';
import { StaticGroups } from '../../../src/identity/static-groups.ts';
import { CompiledPolicies } from '../../../src/policy/compile.ts';
import { policy } from './helpers.ts';

const POD = '10.0.0.2';
const POD6 = 'fd00::2';
const API = '203.0.113.10';
const API6 = '2001:db8::10';

const STRIPE = policy(`
apiVersion: namegate.dev/v1alpha1
kind: EgressPolicy
metadata: { name: stripe, namespace: payments }
spec:
  podSelector: { matchLabels: { app: api } }
  egress:
    - toFQDNs: [{ name: api.stripe.com }]
      ports: [{ port: 443 }, { port: 8000, endPort: 8100 }]
`);
/** Another workload's policy: port 443 to another name. */
const GITHUB = policy(`
apiVersion: namegate.dev/v1alpha1
kind: EgressPolicy
metadata: { name: github, namespace: payments }
spec:
  podSelector: { matchLabels: { app: ci } }
  egress:
    - toFQDNs: [{ name: github.com }]
      ports: [{ port: 443 }]
    - toCIDRs: [{ cidr: 10.50.0.0/16 }]
      ports: [{ port: 22 }]
`);

/** The pod's group, labelled `app` (a relabel while the agent is down changes it). */
function pods(app: string | null): StaticGroups {
  if (app === null) return new StaticGroups([]);
  return new StaticGroups([
    {
      name: 'pod',
      namespace: 'payments',
      labels: { app },
      namespaceLabels: {},
      cidrs: [`${POD}/32`, `${POD6}/128`],
    },
  ]);
}

function el(
  source: string,
  destination: string,
  from = 443,
  to = from,
  protocol: 'TCP' | 'UDP' = 'TCP',
): AllowElement {
  return { source, destination, protocol, portFrom: from, portTo: to, timeoutMs: 60_000 };
}

const SET = new CompiledPolicies([STRIPE, GITHUB]);
const NOW = 1_000_000;
const LATER = NOW + 60_000;

describe('planRestore (REL-03)', () => {
  it('the pod was relabelled while the agent was down: its checkpointed element goes (the lab case)', () => {
    const identities = pods('ci');
    const actual = [el(POD, API), el(POD6, API6)];
    const plan = planRestore({
      actual,
      desired: new Map(),
      checkpointed: checkpointPairs(
        [
          { source: POD, ip: API, expiresAt: LATER },
          { source: POD, ip: API6, expiresAt: LATER },
        ],
        identities,
        NOW,
      ),
      policies: SET,
      identities,
    });
    // Port 443 is still granted to the pod (for github.com): only the checkpoint tells that
    // this element was learned for a name the new identity may not resolve.
    assert.deepEqual(plan.forget.map(elementKey).sort(), actual.map(elementKey).sort());
    assert.equal(plan.counts.stale, 2);
  });

  it('keeps what the restored store still justifies', () => {
    const identities = pods('api');
    const e = el(POD, API);
    const plan = planRestore({
      actual: [e],
      desired: new Map([[elementKey(e), e]]),
      checkpointed: checkpointPairs([{ source: POD, ip: API, expiresAt: LATER }], identities, NOW),
      policies: SET,
      identities,
    });
    assert.deepEqual(plan.forget, []);
    assert.equal(plan.counts.desired, 1);
  });

  it('a port the new policies no longer grant goes, the one they still grant stays', () => {
    const identities = pods('api');
    const kept = el(POD, API);
    const plan = planRestore({
      actual: [kept, el(POD, API, 9000)],
      desired: new Map([[elementKey(kept), kept]]),
      checkpointed: checkpointPairs([{ source: POD, ip: API, expiresAt: LATER }], identities, NOW),
      policies: SET,
      identities,
    });
    assert.deepEqual(plan.forget.map(elementKey), [elementKey(el(POD, API, 9000))]);
  });

  it('without a checkpoint: an element no policy of the pod could have opened goes', () => {
    const identities = pods('ci');
    const plan = planRestore({
      actual: [el(POD, API, 8000, 8100), el(POD, API, 443, 443, 'UDP'), el(POD, '10.1.2.3')],
      desired: new Map(),
      checkpointed: new Set(),
      policies: SET,
      identities,
    });
    assert.equal(plan.forget.length, 3);
    assert.equal(plan.counts.unexplained, 3);
  });

  it('without a checkpoint: an element a rule could explain is kept (learned after the last checkpoint, or by another agent)', () => {
    const identities = pods('ci');
    const plan = planRestore({
      actual: [el(POD, API)],
      desired: new Map(),
      checkpointed: new Set(),
      policies: SET,
      identities,
    });
    assert.deepEqual(plan.forget, []);
    assert.equal(plan.counts.kept, 1);
  });

  it('the pod left, or no policy selects it any more: everything of it goes', () => {
    for (const identities of [pods(null), pods('unselected')]) {
      const plan = planRestore({
        actual: [el(POD, API), el(POD6, API6)],
        desired: new Map(),
        checkpointed: new Set(),
        policies: SET,
        identities,
      });
      assert.equal(plan.forget.length, 2);
      assert.equal(plan.counts.ungoverned, 2);
    }
  });

  it('a policy removed while down: everything of its pods goes', () => {
    const identities = pods('api');
    const plan = planRestore({
      actual: [el(POD, API)],
      desired: new Map(),
      checkpointed: checkpointPairs([{ source: POD, ip: API, expiresAt: LATER }], identities, NOW),
      policies: new CompiledPolicies([GITHUB]),
      identities,
    });
    assert.equal(plan.forget.length, 1);
  });
});

describe('couldBeLearned', () => {
  const identity = pods('api').lookup(POD);
  assert.ok(identity);

  it('needs an FQDN rule granting the protocol and the whole port range', () => {
    assert.ok(couldBeLearned(SET, identity, el(POD, API)));
    assert.ok(couldBeLearned(SET, identity, el(POD, API, 8000, 8100)));
    assert.ok(
      couldBeLearned(SET, identity, el(POD, API, 8050, 8060)),
      'a piece of a range (a restored segment)',
    );
    assert.ok(!couldBeLearned(SET, identity, el(POD, API, 7999, 8100)));
    assert.ok(!couldBeLearned(SET, identity, el(POD, API, 443, 443, 'UDP')));
  });

  it('never for an address no answer may open (private, without a toCIDRs rule)', () => {
    assert.ok(!couldBeLearned(SET, identity, el(POD, '10.1.2.3')));
  });

  it('a toCIDRs rule alone explains nothing (CIDR allows are static state, never learned)', () => {
    const ci = pods('ci').lookup(POD);
    assert.ok(ci);
    assert.ok(!couldBeLearned(SET, ci, el(POD, '10.50.1.1', 22)));
  });
});

describe('checkpointPairs', () => {
  it('pairs each entry with the query source and its siblings of the destination family', () => {
    const pairs = checkpointPairs([{ source: POD, ip: API6, expiresAt: LATER }], pods('api'), NOW);
    assert.deepEqual([...pairs], [`${POD6}|${API6}`]);
  });

  it('an expired entry claims nothing (another agent may have refreshed the element, REL-11)', () => {
    assert.equal(checkpointPairs([{ source: POD, ip: API, expiresAt: NOW }], pods('api'), NOW).size, 0);
  });
});
