/** The controller's status computation and the agent config section (pure; no API server). */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { resolveKubernetesConfig } from '../../../src/config/kubernetes.ts';
import { microTime } from '../../../src/k8s/lease.ts';
import { evaluatePolicyObject } from '../../../src/k8s/policy-source.ts';
import { desiredStatus, statusEqual } from '../../../src/k8s/status.ts';

const T0 = '2026-01-01T00:00:00Z';
const T1 = '2026-01-01T00:05:00Z';

describe('desiredStatus', () => {
  test("another writer's condition (namegate sync's NetworkPolicyWritten) is kept as it is", () => {
    const theirs = {
      type: 'NetworkPolicyWritten',
      status: 'True',
      reason: 'Split',
      message: 'written as 3 NetworkPolicy objects',
      lastTransitionTime: T0,
    };
    const previous = { conditions: [theirs] };
    const s = desiredStatus({ generation: 1, errors: [], rules: 1, governedPods: 0, previous, now: T1 });
    assert.deepEqual(s.conditions.at(-1), theirs);
    assert.equal(statusEqual({ ...s }, s), true, 'nothing to write again: the controller keeps it');
  });

  test('valid: Accepted and Programmed True, counts, observedGeneration on status and conditions', () => {
    const s = desiredStatus({
      generation: 3,
      errors: [],
      rules: 2,
      governedPods: 5,
      previous: undefined,
      now: T0,
    });
    assert.equal(s.observedGeneration, 3);
    assert.equal(s.rules, 2);
    assert.equal(s.governedPods, 5);
    assert.deepEqual(
      s.conditions.map((c) => [c.type, c.status, c.reason, c.observedGeneration, c.lastTransitionTime]),
      [
        ['Accepted', 'True', 'Valid', 3, T0],
        ['Programmed', 'True', 'Compiled', 3, T0],
      ],
    );
  });

  test('invalid: Accepted False with every problem and its path; nothing counted', () => {
    const s = desiredStatus({
      generation: 1,
      errors: [
        { path: 'spec.egress[0].toFQDNs[0].pattern', message: 'bad' },
        { path: 'spec.podSelector', message: 'worse' },
      ],
      rules: 2,
      governedPods: 5,
      previous: undefined,
      now: T0,
    });
    const accepted = s.conditions.find((c) => c.type === 'Accepted');
    assert.equal(accepted?.status, 'False');
    assert.equal(accepted?.message, 'spec.egress[0].toFQDNs[0].pattern: bad; spec.podSelector: worse');
    assert.equal(s.governedPods, 0);
    assert.equal(s.rules, 0);
  });

  test('lastTransitionTime moves only when a condition changes status', () => {
    const first = desiredStatus({
      generation: 1,
      errors: [],
      rules: 1,
      governedPods: 1,
      previous: undefined,
      now: T0,
    });
    const same = desiredStatus({
      generation: 2,
      errors: [],
      rules: 1,
      governedPods: 2,
      previous: first,
      now: T1,
    });
    assert.ok(same.conditions.every((c) => c.lastTransitionTime === T0));
    const flipped = desiredStatus({
      generation: 3,
      errors: [{ path: 'spec', message: 'x' }],
      rules: 1,
      governedPods: 2,
      previous: same,
      now: T1,
    });
    assert.ok(flipped.conditions.every((c) => c.lastTransitionTime === T1));
  });

  test('statusEqual ignores condition order and detects any difference', () => {
    const s = desiredStatus({
      generation: 1,
      errors: [],
      rules: 1,
      governedPods: 1,
      previous: undefined,
      now: T0,
    });
    assert.ok(statusEqual({ ...s, conditions: [...s.conditions].reverse() }, s));
    assert.ok(!statusEqual({ ...s, governedPods: 2 }, s));
    assert.ok(!statusEqual(undefined, s));
  });
});

describe('evaluatePolicyObject', () => {
  test('a native object becomes one policy, or errors with field paths', () => {
    const ok = evaluatePolicyObject(
      {
        apiVersion: 'namegate.dev/v1alpha1',
        kind: 'EgressPolicy',
        metadata: { name: 'a', namespace: 'shop', generation: 2 },
        spec: { egress: [{ toFQDNs: [{ name: 'api.example.com' }] }] },
      },
      { istioRegistryOnly: true },
    );
    assert.equal(ok.policies.length, 1);
    assert.equal(ok.object, 'EgressPolicy shop/a');
    assert.equal(ok.policies[0]?.generation, 2);
    const bad = evaluatePolicyObject(
      {
        apiVersion: 'namegate.dev/v1alpha1',
        kind: 'EgressPolicy',
        metadata: { name: 'b', namespace: 'shop' },
        spec: { egress: [{ toFQDNs: [{ pattern: 'a*b.example.com' }] }] },
      },
      { istioRegistryOnly: true },
    );
    assert.equal(bad.policies.length, 0);
    assert.equal(bad.errors[0]?.path, 'spec.egress[0].toFQDNs[0].pattern');
  });

  test('Istio ServiceEntries are Audit unless the mesh is REGISTRY_ONLY', () => {
    const se = {
      apiVersion: 'networking.istio.io/v1',
      kind: 'ServiceEntry',
      metadata: { name: 'stripe', namespace: 'shop' },
      spec: {
        hosts: ['api.stripe.com'],
        ports: [{ number: 443, name: 'https', protocol: 'TLS' }],
        resolution: 'DNS',
        location: 'MESH_EXTERNAL',
      },
    };
    const registryOnly = evaluatePolicyObject(se, { istioRegistryOnly: true });
    const allowAny = evaluatePolicyObject(se, { istioRegistryOnly: false });
    assert.deepEqual(registryOnly.errors, []);
    assert.ok(registryOnly.policies.length > 0);
    assert.ok(registryOnly.policies.every((p) => p.mode === 'Enforce'));
    assert.ok(allowAny.policies.every((p) => p.mode === 'Audit'));
  });
});

describe('kubernetes config section', () => {
  test('defaults, and nodeName from $NODE_NAME', () => {
    const c = resolveKubernetesConfig({}, { NODE_NAME: 'n1' });
    assert.equal(c.nodeName, 'n1');
    assert.deepEqual(c.dialects, { cilium: false, istio: false, npep: false, gke: false });
    assert.equal(c.istioRegistryOnly, false);
  });
  test('no node name at all is a config error; unknown keys are errors', () => {
    assert.throws(() => resolveKubernetesConfig({}, {}), /nodeName/);
    assert.throws(() => resolveKubernetesConfig({ nodename: 'x' }, { NODE_NAME: 'n1' }));
  });
});

test('microTime has six fractional digits (metav1.MicroTime)', () => {
  assert.equal(microTime(Date.UTC(2026, 0, 1, 0, 0, 0, 123)), '2026-01-01T00:00:00.123000Z');
});
