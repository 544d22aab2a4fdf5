/**
 * Every recommended document is read back by the reader of its format before it is printed:
 * the native validator for namegate documents, the Cilium and network-policy-api importers
 * (which keep those formats' meaning and reject what those projects reject) for the others,
 * and the native validator again on what the importers make of them. A recommendation that
 * does not pass is a bug, reported as an error, never printed as if it were fine.
 */
import { ciliumImporter } from '../formats/cilium.ts';
import type { ImportResult } from '../formats/importer.ts';
import { validateNative } from '../formats/native.ts';
import { npepImporter } from '../formats/npep.ts';
import type { Policy } from '../policy/model.ts';
import type { RecommendFormat } from './render.ts';

export interface Validation {
  readonly errors: string[];
  /** Importer warnings: meaning the format cannot keep exactly (e.g. a wider wildcard). */
  readonly warnings: string[];
  /** The native policies the document means (for closed-loop checks). */
  readonly policies: Policy[];
}

function fromImport(result: ImportResult): Validation {
  const errors = result.errors.map((e) => `${e.path}: ${e.message}`);
  const warnings = result.warnings.map((w) => `${w.path}: ${w.message}`);
  const policies: Policy[] = [];
  for (const doc of result.documents) {
    const v = validateNative(doc);
    errors.push(...v.errors.map((e) => `${e.path}: ${e.message}`));
    if (v.policy) policies.push(v.policy);
  }
  return { errors, warnings, policies };
}

export function validateRecommended(doc: Record<string, unknown>, format: RecommendFormat): Validation {
  if (format === 'cilium') return fromImport(ciliumImporter.convert(doc, { defaultNamespace: 'default' }));
  if (format === 'npa') return fromImport(npepImporter.convert(doc, { defaultNamespace: 'default' }));
  const v = validateNative(doc);
  return {
    errors: v.errors.map((e) => `${e.path}: ${e.message}`),
    warnings: v.warnings.map((w) => `${w.path}: ${w.message}`),
    policies: v.policy ? [v.policy] : [],
  };
}
