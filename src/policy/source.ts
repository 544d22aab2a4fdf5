/**
 * Where the agent's policies come from: files (PolicyFiles) or the Kubernetes API. Either way
 * the agent sees one compiled set, swapped whole on every accepted change.
 */
import type { CompiledPolicies } from './compile.ts';

export interface PolicySource {
  /** The set in force. Throws before the first successful load. */
  current(): CompiledPolicies;
  /** Called with the new set after every accepted change; returns an unsubscribe function. */
  onChange(listener: (set: CompiledPolicies) => void): () => void;
}
