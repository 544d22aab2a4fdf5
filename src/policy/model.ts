/**
 * The policy model every component works with, after validation and canonicalization.
 * Documents (native or foreign) become these values in src/formats; nothing below this line
 * sees raw YAML.
 */
import type { Cidr } from '../core/ip.ts';
import type { Mode } from '../core/mode.ts';
import type { Protocol } from '../core/protocol.ts';
import type { FqdnPattern, PatternOptions } from './pattern.ts';
import type { LabelSelector, Labels } from './selector.ts';

/** Mode and Protocol live in src/core (the datapath speaks of them too); re-exported for policy users. */
export type { Mode, Protocol };
export type Verify = 'None' | 'SNI';

export const API_GROUP = 'namegate.dev';
export const API_VERSION = `${API_GROUP}/v1alpha1`;

export type PolicyKind = 'EgressPolicy' | 'ClusterEgressPolicy';

/** Which document a policy came from; printed as "namespace/name" or "name". */
export interface PolicyRef {
  readonly kind: PolicyKind;
  readonly namespace: string | null;
  readonly name: string;
}

export function policyRefText(ref: PolicyRef): string {
  return ref.namespace === null ? ref.name : `${ref.namespace}/${ref.name}`;
}

/** An inclusive port range for one protocol. */
export interface PortRange {
  readonly protocol: Protocol;
  readonly from: number;
  readonly to: number;
}

/** Every port of both protocols: what an empty `ports` list means. */
export const ALL_PORTS: readonly PortRange[] = [
  { protocol: 'TCP', from: 0, to: 65535 },
  { protocol: 'UDP', from: 0, to: 65535 },
];

export interface CidrRule {
  readonly cidr: Cidr;
  readonly except: readonly Cidr[];
}

export interface FqdnRule {
  /** The text as written after canonicalization (for explain and logs). */
  readonly text: string;
  readonly pattern: FqdnPattern;
}

export interface Rule {
  readonly fqdns: readonly FqdnRule[];
  readonly cidrs: readonly CidrRule[];
  /** Never empty: an empty list in the document becomes ALL_PORTS. */
  readonly ports: readonly PortRange[];
  readonly verify: Verify;
}

export interface Policy {
  readonly ref: PolicyRef;
  readonly mode: Mode;
  /** EgressPolicy: only pods of this namespace. ClusterEgressPolicy: null. */
  readonly namespace: string | null;
  readonly podSelector: LabelSelector;
  /** ClusterEgressPolicy only; absent selects every namespace. */
  readonly namespaceSelector: LabelSelector | null;
  readonly rules: readonly Rule[];
  readonly options: PatternOptions;
  /** Kubernetes metadata.generation when read from the API (for status.observedGeneration). */
  readonly generation?: number | undefined;
}

/**
 * Who is asking: a pod (Kubernetes) or a source group (gateway config). Policies select it by
 * namespace, labels and the namespace's labels.
 */
export interface Identity {
  /** Stable, unique: "pod:ns/name", "group:name". */
  readonly key: string;
  readonly namespace: string;
  readonly labels: Labels;
  readonly namespaceLabels: Labels;
}
