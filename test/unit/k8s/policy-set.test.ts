/**
 * The Kubernetes policy source's checks over a whole dialect (pure part): a ClusterNetworkPolicy
 * whose Accept a Deny of an earlier policy could shrink is rejected, as `validate` rejects it.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  type Evaluated,
  evaluatePolicyObject,
  type PolicyObject,
  setProblems,
} from '../../../src/k8s/policy-source.ts';

function cnp(name: string, priority: number, action: 'Accept' | 'Deny'): PolicyObject {
  return {
    apiVersion: 'policy.networking.k8s.io/v1alpha2',
    kind: 'ClusterNetworkPolicy',
    metadata: { name },
    spec: {
      tier: 'Admin',
      priority,
      subject: { namespaces: {} },
      egress: [
        action === 'Accept'
          ? { action, to: [{ domainNames: ['a.example.com'] }] }
          : { action, to: [{ networks: ['0.0.0.0/0', '::/0'] }] },
      ],
    },
  };
}

function evaluate(objects: PolicyObject[]) {
  const byId = new Map(objects.map((o) => [`ClusterNetworkPolicy/${o.metadata.name}`, o]));
  const evaluated = new Map<string, Evaluated>();
  for (const [id, o] of byId) evaluated.set(id, evaluatePolicyObject(o, { istioRegistryOnly: true }));
  return setProblems(evaluated, byId);
}

describe('setProblems', () => {
  test('a Deny at priority 10 before an Accept at 20: the Accept’s object is rejected', () => {
    const problems = evaluate([cnp('deny', 10, 'Deny'), cnp('accept', 20, 'Accept')]);
    assert.deepEqual([...problems.keys()], ['ClusterNetworkPolicy/accept']);
    assert.match(
      problems.get('ClusterNetworkPolicy/accept')?.[0]?.message ?? '',
      /deny \(tier Admin, priority 10\)/,
    );
  });

  test('the other order is what Kubernetes does too: nothing to reject', () => {
    assert.equal(evaluate([cnp('accept', 10, 'Accept'), cnp('deny', 20, 'Deny')]).size, 0);
  });
});
