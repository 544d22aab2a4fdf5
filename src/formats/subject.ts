/**
 * Failing closed on a rejected document: the pods it selects stay governed, with nothing
 * allowed, instead of falling out of every policy (which would allow all their egress).
 * `readSubjects` reads who a document governs without its rules (native documents here, foreign
 * ones through their importer's `subject` hook); `denyAll` turns that into policies with no
 * egress rule, checked like any native document.
 */
import { API_VERSION, type Policy } from '../policy/model.ts';
import type { LabelSelector } from '../policy/selector.ts';
import { absent, isRecord, memberName } from './foreign-common.ts';
import type { ImportContext, Subject } from './importer.ts';
import { validateNative } from './native.ts';
import { findImporter } from './registry.ts';

/** Who the document governs; undefined when not even that can be read. */
export function readSubjects(doc: Record<string, unknown>, context: ImportContext): Subject[] | undefined {
  const kind = doc['kind'];
  if (kind === 'EgressPolicy' || kind === 'ClusterEgressPolicy') return nativeSubject(doc, kind, context);
  const importer = findImporter(String(doc['apiVersion']), String(kind));
  try {
    return importer?.subject?.(doc, context);
  } catch {
    return undefined; // a document no importer can read has no subject either
  }
}

/**
 * Structure only: the selectors are checked by `denyAll`, which validates the policies it makes.
 * An absent podSelector selects every pod, as in the valid document.
 */
function nativeSubject(
  doc: Record<string, unknown>,
  kind: 'EgressPolicy' | 'ClusterEgressPolicy',
  context: ImportContext,
): Subject[] | undefined {
  const meta = isRecord(doc['metadata']) ? doc['metadata'] : {};
  const spec = absent(doc['spec']) ? {} : doc['spec'];
  if (!isRecord(spec)) return undefined;
  const ns = meta['namespace'];
  const mode = spec['mode'];
  return [
    {
      kind,
      namespace: kind === 'EgressPolicy' ? (typeof ns === 'string' ? ns : context.defaultNamespace) : null,
      podSelector: (spec['podSelector'] ?? {}) as LabelSelector,
      namespaceSelector: (spec['namespaceSelector'] ?? undefined) as LabelSelector | undefined,
      mode: mode === 'Audit' || mode === 'Enforce' ? mode : undefined,
    },
  ];
}

/**
 * One policy per subject, named after the document, with no egress rule: the selected pods are
 * governed and reach nothing. Undefined when there is no subject or one does not validate.
 */
export function denyAll(subjects: readonly Subject[] | undefined, name: string): Policy[] | undefined {
  if (!subjects || subjects.length === 0) return undefined;
  const policies: Policy[] = [];
  for (const [i, s] of subjects.entries()) {
    const cluster = s.kind === 'ClusterEgressPolicy';
    const doc = {
      apiVersion: API_VERSION,
      kind: s.kind,
      metadata: {
        name: memberName(name, i + 1, subjects.length),
        ...(!cluster && s.namespace !== null ? { namespace: s.namespace } : {}),
      },
      spec: {
        podSelector: s.podSelector,
        ...(cluster && s.namespaceSelector !== undefined ? { namespaceSelector: s.namespaceSelector } : {}),
        mode: s.mode ?? 'Enforce',
        egress: [],
      },
    };
    const r = validateNative(doc, s.namespace ?? 'default');
    if (!r.policy) return undefined;
    policies.push(r.policy);
  }
  return policies;
}
