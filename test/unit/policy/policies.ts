/**
 * Test helpers: build Policy values from native documents through the real validator, so the
 * decision tests run on exactly what `namegate validate` and the agent would load.
 */
import { type CanonicalName, canonicalName } from '../../../src/core/names.ts';
import { validateNative } from '../../../src/formats/native.ts';
import { makeIdentity } from '../../../src/identity/identity.ts';
import { CompiledPolicies } from '../../../src/policy/compile.ts';
import type { Identity, Policy } from '../../../src/policy/model.ts';
import type { Labels } from '../../../src/policy/selector.ts';

export interface Doc {
  kind?: 'EgressPolicy' | 'ClusterEgressPolicy';
  name: string;
  namespace?: string;
  spec: Record<string, unknown>;
}

export function policy(doc: Doc): Policy {
  const kind = doc.kind ?? 'EgressPolicy';
  const result = validateNative({
    apiVersion: 'namegate.dev/v1alpha1',
    kind,
    metadata: { name: doc.name, ...(doc.namespace === undefined ? {} : { namespace: doc.namespace }) },
    spec: doc.spec,
  });
  if (!result.policy) {
    throw new Error(`${doc.name}: ${result.errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`);
  }
  return result.policy;
}

export function compile(...docs: Doc[]): CompiledPolicies {
  return new CompiledPolicies(docs.map(policy));
}

export function pod(namespace: string, labels: Labels = {}, namespaceLabels: Labels = {}): Identity {
  return makeIdentity(`pod:${namespace}/test`, namespace, labels, namespaceLabels);
}

export const n = (text: string): CanonicalName => canonicalName(text);
