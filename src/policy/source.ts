/**
 * The policies in force. Whoever loads them (policy files, the Kubernetes API) hands out one
 * compiled set and swaps it whole on every accepted change; readers (the DNS proxy, the
 * proxies, the enforcer) ask for the current set at each decision and never keep one.
 */
import type { CompiledPolicies } from './compile.ts';

/** What a reader needs: the set in force now. */
export interface CurrentPolicies {
  /** The set in force. Throws before the first successful load. */
  current(): CompiledPolicies;
}

/** A loader of policies (files or the API): the current set, and word of every change. */
export interface PolicySource extends CurrentPolicies {
  /** Called with the new set after every accepted change; returns an unsubscribe function. */
  onChange(listener: (set: CompiledPolicies) => void): () => void;
}
