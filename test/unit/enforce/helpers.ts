/** What the enforce tests share. */
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { validateNative } from '../../../src/formats/native.ts';
import type { Policy } from '../../../src/policy/model.ts';

/** A policy from native YAML through the real validator; a problem fails the test. */
export function policy(yaml: string): Policy {
  const r = validateNative(parse(yaml));
  assert.deepEqual(r.errors, []);
  assert.ok(r.policy);
  return r.policy;
}

/** api.stripe.com on 443 and 198.51.100.0/24 on 22 for app=api pods in payments. */
export const STRIPE = policy(`
apiVersion: namegate.dev/v1alpha1
kind: EgressPolicy
metadata: { name: stripe, namespace: payments }
spec:
  podSelector: { matchLabels: { app: api } }
  egress:
    - toFQDNs: [{ name: api.stripe.com }]
      ports: [{ port: 443 }]
    - toCIDRs: [{ cidr: 198.51.100.0/24 }]
      ports: [{ port: 22 }]
`);
