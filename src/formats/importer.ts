/**
 * The contract every dialect importer fulfils: one foreign document in, native documents out,
 * plus a warning for every field whose meaning namegate does not keep exactly and an error
 * (with the field path) for every field it cannot read.
 */
import type { NativeDocument, Problem } from './native.ts';

export type Dialect = 'native' | 'cilium' | 'istio' | 'npep' | 'gke';

export const DIALECTS: readonly Dialect[] = ['native', 'cilium', 'istio', 'npep', 'gke'];

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

export interface Importer {
  readonly dialect: Exclude<Dialect, 'native'>;
  /** Does this importer read documents of this apiVersion and kind? */
  accepts(apiVersion: string, kind: string): boolean;
  convert(doc: Record<string, unknown>, context: ImportContext): ImportResult;
}

/** The annotation that records where a converted policy came from. */
export const SOURCE_ANNOTATION = 'namegate.dev/converted-from';
