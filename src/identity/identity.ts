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
  /**
   * Every host address of the identity that holds `ip` (a pod's IPv4 and IPv6 addresses),
   * `ip` included. A dual-stack workload often asks for AAAA over IPv4 and then connects over
   * IPv6: what one of its addresses learned is opened for its sibling of the answer's family.
   */
  siblings?(ip: string): readonly string[];
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

/**
 * The source addresses an element for destination `destination`, learned from a query of
 * `querySource`, is programmed for: the query source and its siblings, of the destination's
 * family (an element pairs addresses of one family).
 */
export function elementSources(
  identities: IdentityProvider,
  querySource: string,
  destination: string,
): string[] {
  const v6 = destination.includes(':');
  const all = identities.siblings ? identities.siblings(querySource) : [querySource];
  const out = all.filter((a) => a.includes(':') === v6);
  if (querySource.includes(':') === v6 && !out.includes(querySource)) out.push(querySource);
  return out;
}
