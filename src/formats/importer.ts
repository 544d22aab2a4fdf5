/**
 * The contract every dialect importer fulfils: one foreign document in, native documents out,
 * plus a warning for every field whose meaning namegate does not keep exactly and an error
 * (with the field path) for every field it cannot read.
 */
import type { NativeDocument, Problem } from './native.ts';

export interface ImportResult {
  readonly documents: NativeDocument[];
  readonly warnings: Problem[];
  readonly errors: Problem[];
}

export interface ImportContext {
  /**
   * Namespace for namespaced documents that carry none (kubectl's default); importers keep an
   * explicit metadata.namespace.
   */
  readonly defaultNamespace: string;
}

/**
 * One kind of a dialect, as the Kubernetes API serves it. Files of any version of the group are
 * read; `version` is the one the agent watches.
 */
export interface DialectKind {
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  readonly kind: string;
  readonly namespaced: boolean;
}

/**
 * A dialect: its name (`convert --from`, the `kubernetes.dialects` key, the chart value), what it
 * is for people, the kinds it reads and the converter. Everything else about a dialect (the CLI's
 * choices, the config's defaults, the agent's watches, the chart's values and RBAC rules) is
 * derived from these fields through registry.ts.
 */
export interface Importer {
  readonly dialect: string;
  /** "Cilium": whose policies these are. */
  readonly title: string;
  /** What is read, in a few words ("CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy (toFQDNs)"). */
  readonly summary: string;
  readonly kinds: readonly DialectKind[];
  convert(doc: Record<string, unknown>, context: ImportContext): ImportResult;
  /**
   * Problems that only the documents of this dialect read together show (network-policy-api: a
   * Deny of a policy Kubernetes evaluates first shrinking a later policy's Accept). Called with
   * the documents that converted without errors; returns one list per document, in order. A
   * document with a problem here yields no policy, exactly as if `convert` had reported it.
   */
  checkSet?(docs: readonly Record<string, unknown>[]): Problem[][];
}

/** The annotation that records where a converted policy came from. */
export const SOURCE_ANNOTATION = 'namegate.dev/converted-from';
