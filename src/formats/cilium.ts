/**
 * CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy (cilium.io/v2) -> EgressPolicy /
 * ClusterEgressPolicy. Only the egress allow side has a namegate meaning: toFQDNs, toCIDR,
 * toCIDRSet, toEntities world, toPorts. Everything else is reported. This file reads the
 * document and its spec; cilium-selectors.ts converts endpoint selectors and cilium-rules.ts
 * the egress rules.
 */
import { convertEgressRule } from './cilium-rules.ts';
import { convertEndpointSelector } from './cilium-selectors.ts';
import {
  absent,
  Conversion,
  child,
  FOREIGN_LIMITS,
  type ForeignMeta,
  isRecord,
  memberName,
  type NativeSpecParts,
  nativeDocument,
  PatternFlags,
  readBoolean,
  readList,
  readMeta,
  readOptionalRecord,
  readRecord,
  sourceText,
  warnUnknown,
} from './foreign-common.ts';
import type { ImportContext, Importer, ImportResult, Subject } from './importer.ts';
import { LIMITS, type NativeDocument } from './native.ts';
import type { RuleInput } from './native-schema.ts';

/** The pattern translation lives with the rules; kept importable from here. */
export { ciliumPatternToNative } from './cilium-rules.ts';

const API_VERSION = 'cilium.io/v2';

export const ciliumImporter = {
  dialect: 'cilium',
  title: 'Cilium',
  summary: 'CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy (toFQDNs)',
  kinds: [
    {
      group: 'cilium.io',
      version: 'v2',
      plural: 'ciliumnetworkpolicies',
      kind: 'CiliumNetworkPolicy',
      namespaced: true,
    },
    {
      group: 'cilium.io',
      version: 'v2',
      plural: 'ciliumclusterwidenetworkpolicies',
      kind: 'CiliumClusterwideNetworkPolicy',
      namespaced: false,
    },
  ],
  convert: convertCilium,
  subject: ciliumSubject,
} as const satisfies Importer;

function convertCilium(doc: Record<string, unknown>, context: ImportContext): ImportResult {
  const c = new Conversion();
  const apiVersion = String(doc['apiVersion']);
  const kind = String(doc['kind']);
  if (apiVersion !== API_VERSION) {
    c.error('apiVersion', `${JSON.stringify(apiVersion)} is not supported; expected ${API_VERSION}`);
    return c.result([]);
  }
  const clusterwide = kind === 'CiliumClusterwideNetworkPolicy';
  const meta = readMeta(c, doc, !clusterwide, context.defaultNamespace);
  warnUnknown(c, doc, '', ['apiVersion', 'kind', 'metadata', 'spec', 'specs', 'status']);
  if (!meta) return c.result([]);

  // A policy may carry one rule in `spec`, a list in `specs`, or both; all of them apply.
  const specs: Array<{ path: string; value: unknown }> = [];
  if (!absent(doc['spec'])) specs.push({ path: 'spec', value: doc['spec'] });
  (readList(c, doc['specs'], 'specs', FOREIGN_LIMITS.specs) ?? []).forEach((value, i) => {
    specs.push({ path: `specs[${i}]`, value });
  });
  if (specs.length === 0 && !c.failed) c.error('spec', 'a Cilium policy needs spec or specs');

  const documents: NativeDocument[] = [];
  specs.forEach((s, i) => {
    const parts = convertSpec(c, s.value, s.path, clusterwide, meta);
    if (!parts) return;
    documents.push(
      nativeDocument({
        kind: clusterwide ? 'ClusterEgressPolicy' : 'EgressPolicy',
        // The position among all specs, so names do not shift when one spec yields nothing.
        name: memberName(meta.name, i + 1, specs.length),
        namespace: meta.namespace,
        source: sourceText(apiVersion, kind, meta, specs.length > 1 ? s.path : ''),
        parts,
      }),
    );
  });
  return c.result(documents);
}

/** Each spec's endpointSelector; host policies and unreadable specs govern no pod. */
function ciliumSubject(doc: Record<string, unknown>, context: ImportContext): Subject[] | undefined {
  const c = new Conversion();
  const clusterwide = doc['kind'] === 'CiliumClusterwideNetworkPolicy';
  const meta = readMeta(c, doc, !clusterwide, context.defaultNamespace);
  if (!meta) return undefined;
  const specs = [doc['spec'], ...(readList(c, doc['specs'], 'specs', FOREIGN_LIMITS.specs) ?? [])];
  const subjects: Subject[] = [];
  for (const spec of specs) {
    if (!isRecord(spec) || !absent(spec['nodeSelector']) || absent(spec['endpointSelector'])) continue;
    const s = convertEndpointSelector(c, spec['endpointSelector'], 'endpointSelector', clusterwide, meta);
    if (!s || s === 'nothing') continue;
    subjects.push({
      kind: clusterwide ? 'ClusterEgressPolicy' : 'EgressPolicy',
      namespace: meta.namespace,
      ...s,
    });
  }
  return subjects.length > 0 ? subjects : undefined;
}

const SPEC_FIELDS = [
  'endpointSelector',
  'nodeSelector',
  'ingress',
  'ingressDeny',
  'egress',
  'egressDeny',
  'labels',
  'description',
  'enableDefaultDeny',
  'log',
];

function convertSpec(
  c: Conversion,
  value: unknown,
  path: string,
  clusterwide: boolean,
  meta: ForeignMeta,
): NativeSpecParts | undefined {
  const spec = readRecord(c, value, path);
  if (!spec) return undefined;
  const before = c.errors.length;
  warnUnknown(c, spec, path, SPEC_FIELDS);
  if (!absent(spec['nodeSelector'])) {
    c.error(
      child(path, 'nodeSelector'),
      'host policies (nodeSelector) are not converted: namegate governs pods and gateway sources',
    );
    return undefined;
  }
  if (absent(spec['endpointSelector'])) {
    c.error(child(path, 'endpointSelector'), 'required (the pods the rule applies to)');
    return undefined;
  }
  for (const field of ['ingress', 'ingressDeny']) {
    if (!absent(spec[field])) c.warn(child(path, field), 'ignored: namegate governs egress only');
  }
  const subject = convertEndpointSelector(
    c,
    spec['endpointSelector'],
    child(path, 'endpointSelector'),
    clusterwide,
    meta,
  );

  const egressPath = child(path, 'egress');
  const egress = readList(c, spec['egress'], egressPath, LIMITS.rulesPerPolicy);
  const deny = readList(c, spec['egressDeny'], child(path, 'egressDeny'), LIMITS.rulesPerPolicy);
  if (deny && deny.length > 0) {
    // Dropping a deny rule would allow what Cilium denies; namegate cannot subtract.
    c.error(
      child(path, 'egressDeny'),
      'namegate is allow-only and cannot keep deny rules; remove egressDeny (and narrow the allow rules) before converting',
    );
  }
  const defaultDeny = readOptionalRecord(c, spec['enableDefaultDeny'], child(path, 'enableDefaultDeny'));
  if (defaultDeny) warnUnknown(c, defaultDeny, child(path, 'enableDefaultDeny'), ['egress', 'ingress']);
  const explicit = defaultDeny
    ? readBoolean(c, defaultDeny['egress'], child(child(path, 'enableDefaultDeny'), 'egress'))
    : undefined;
  if (!egress || !subject || c.errors.length > before) return undefined;

  // Cilium puts the selected pods into egress default-deny when the policy has egress rules
  // (or says so explicitly); only then does the policy restrict anything.
  const governs = explicit ?? (egress.length > 0 || (deny?.length ?? 0) > 0);
  if (!governs) {
    if (egress.length === 0) {
      c.warn(
        egressPath,
        'no egress rules: Cilium leaves the egress of these pods alone, so there is nothing to convert',
      );
      return undefined;
    }
    c.warn(
      child(child(path, 'enableDefaultDeny'), 'egress'),
      'false is not kept: in namegate a policy that selects a pod governs it, so everything no policy allows is denied',
    );
  }
  if (subject === 'nothing') return undefined;

  const flags = new PatternFlags();
  const rules: RuleInput[] = [];
  egress.forEach((r, i) => {
    rules.push(...convertEgressRule(c, r, child(egressPath, i), flags));
  });
  if (rules.length > LIMITS.rulesPerPolicy) {
    c.error(egressPath, `converts to more than ${LIMITS.rulesPerPolicy} rules`);
  }
  return { ...subject, rules, flags };
}

// Cilium's own labels: pod namespace, namespace labels, service account, cluster.
