/**
 * Source IP -> identity. The DNS proxy, the datapath and the proxies see sources only through
 * an IdentityProvider; static groups (gateway config) and Kubernetes pods both implement it.
 */
import type { Identity } from '../policy/model.ts';
import type { Labels } from '../policy/selector.ts';

/** The label Kubernetes puts on every namespace; selectors may rely on it. */
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';

export interface IdentityProvider {
  /** The identity of a source address, or undefined when the address is unknown. */
  lookup(ip: string): Identity | undefined;
  /** Every known (ip, identity) pair; the datapath programs governed sources from it. */
  entries(): Iterable<readonly [string, Identity]>;
  /** Called after any change of the mapping; returns an unsubscribe function. */
  onChange(listener: () => void): () => void;
}

export function makeIdentity(
  key: string,
  namespace: string,
  labels: Labels,
  namespaceLabels: Labels = {},
): Identity {
  return Object.freeze({
    key,
    namespace,
    labels: Object.freeze({ ...labels }),
    namespaceLabels: Object.freeze({ ...namespaceLabels, [NAMESPACE_NAME_LABEL]: namespace }),
  });
}
