/**
 * GKE FQDNNetworkPolicy -> EgressPolicy. Two schemas share the group and kind:
 *   networking.gke.io/v1alpha1  GKE's managed feature: egress[].matches[] {name | pattern}, ports[]
 *   networking.gke.io/v1alpha1, v1alpha2, v1alpha3  the archived open-source controller:
 *                               egress[].to[].fqdns[], ports[] in NetworkPolicy form (exact names)
 * v1alpha1 is both: the rules' fields say which one a document is (`matches` or `to`); a document
 * that mixes them is an error, never a guess.
 *
 * A port's empty or missing protocol is TCP, as the controller's defaulting webhook sets it.
 *
 * GKE's pattern, kept exactly: "*.example.com" matches exactly ONE label in front of
 * example.com ("api.example.com", not "eu.api.example.com", not "example.com") -> native
 * "*.example.com", the same meaning.
 */
import type { LabelSelector } from '../policy/selector.ts';
import { validateSelector } from '../policy/selector.ts';
import {
  absent,
  admitPattern,
  Conversion,
  child,
  type ForeignMeta,
  isRecord,
  nativeDocument,
  nativePorts,
  PatternFlags,
  type PortSpan,
  readList,
  readMeta,
  readPortNumber,
  readRecord,
  readSelector,
  readString,
  sourceText,
  warnUnknown,
} from './foreign-common.ts';
import type { ImportContext, Importer, ImportResult } from './importer.ts';
import { LIMITS } from './native.ts';
import type { RuleInput } from './native-schema.ts';

const MANAGED = 'networking.gke.io/v1alpha1';
/** The archived controller's versions; its v1alpha1 shares MANAGED's apiVersion. */
const OSS_ONLY = ['networking.gke.io/v1alpha2', 'networking.gke.io/v1alpha3'];
const DIALECT = 'GKE';

export const gkeImporter = {
  dialect: 'gke',
  title: 'GKE',
  summary: 'GKE FQDNNetworkPolicy',
  kinds: [
    {
      group: 'networking.gke.io',
      version: 'v1alpha1',
      plural: 'fqdnnetworkpolicies',
      kind: 'FQDNNetworkPolicy',
      namespaced: true,
    },
  ],
  convert: convertGke,
} as const satisfies Importer;

type Entry = { name: string } | { pattern: string };

function convertGke(doc: Record<string, unknown>, context: ImportContext): ImportResult {
  const c = new Conversion();
  const apiVersion = String(doc['apiVersion']);
  if (apiVersion !== MANAGED && !OSS_ONLY.includes(apiVersion)) {
    c.error(
      'apiVersion',
      `${JSON.stringify(apiVersion)} is not supported; expected ${MANAGED} (or the archived controller's ${OSS_ONLY.join(', ')})`,
    );
    return c.result([]);
  }
  const meta = readMeta(c, doc, true, context.defaultNamespace);
  warnUnknown(c, doc, '', ['apiVersion', 'kind', 'metadata', 'spec', 'status']);
  const spec = readRecord(c, doc['spec'], 'spec');
  if (!meta || !spec) return c.result([]);
  const schema = OSS_ONLY.includes(apiVersion) ? 'oss' : schemaOfV1alpha1(c, spec);
  if (schema === undefined) return c.result([]);
  const oss = schema === 'oss';
  warnUnknown(c, spec, 'spec', ['podSelector', 'egress', ...(oss ? ['ingress', 'policyTypes'] : [])]);
  warnAnnotations(c, doc);

  const podSelector = readSelector(c, spec['podSelector'], 'spec.podSelector');
  if (podSelector) for (const [p, m] of validateSelector(podSelector, 'spec.podSelector')) c.error(p, m);
  if (oss && !absent(spec['ingress'])) c.warn('spec.ingress', 'ignored: namegate governs egress only');

  if (oss && !egressIsolated(c, spec)) {
    c.warn(
      absent(spec['policyTypes']) ? 'spec' : 'spec.policyTypes',
      'the policy does not restrict egress (no Egress policy type), so there is nothing to convert',
    );
    return c.result([]);
  }
  const flags = new PatternFlags();
  const rules: RuleInput[] = [];
  const list = readList(c, spec['egress'], 'spec.egress', LIMITS.rulesPerPolicy) ?? [];
  list.forEach((r, i) => {
    const rule = oss
      ? convertOssRule(c, r, child('spec.egress', i), flags)
      : convertRule(c, r, child('spec.egress', i), flags);
    if (rule) rules.push(rule);
  });
  if (list.length === 0) {
    c.warn('spec.egress', 'no egress rules: the selected pods may reach no outside name');
  }
  if (c.failed || !podSelector) return c.result([]);
  return c.result([document(apiVersion, meta, podSelector, rules, flags)]);
}

function document(
  apiVersion: string,
  meta: ForeignMeta,
  podSelector: LabelSelector,
  rules: RuleInput[],
  flags: PatternFlags,
) {
  return nativeDocument({
    kind: 'EgressPolicy',
    name: meta.name,
    namespace: meta.namespace,
    source: sourceText(apiVersion, 'FQDNNetworkPolicy', meta),
    parts: { podSelector, rules, flags },
  });
}

/** v1alpha1: {matches: [{name} | {pattern}], ports: [{protocol, port}]}. */
function convertRule(
  c: Conversion,
  value: unknown,
  path: string,
  flags: PatternFlags,
): RuleInput | undefined {
  const rule = readRecord(c, value, path);
  if (!rule) return undefined;
  warnUnknown(c, rule, path, ['matches', 'ports']);
  const entries: Entry[] = [];
  const matchesPath = child(path, 'matches');
  (readList(c, rule['matches'], matchesPath) ?? []).forEach((m, j) => {
    const entry = convertMatch(c, m, child(matchesPath, j), flags);
    if (entry) entries.push(entry);
  });
  const ports = readPorts(c, rule['ports'], child(path, 'ports'));
  if (absent(rule['matches']) || (Array.isArray(rule['matches']) && rule['matches'].length === 0)) {
    c.warn(path, 'no matches: GKE does not document what such a rule allows; not converted (narrower)');
    return undefined;
  }
  return finishRule(c, path, entries, ports);
}

function finishRule(
  c: Conversion,
  path: string,
  entries: Entry[],
  ports: PortSpan[] | undefined,
): RuleInput | undefined {
  if (entries.length === 0 || c.failed) return undefined;
  if (ports !== undefined && ports.length === 0) {
    c.warn(child(path, 'ports'), 'no port namegate can allow: the rule is not converted');
    return undefined;
  }
  const native = ports === undefined ? undefined : nativePorts(ports);
  return { toFQDNs: entries, ...(native ? { ports: native } : {}) };
}

function convertMatch(c: Conversion, value: unknown, path: string, flags: PatternFlags): Entry | undefined {
  const match = readRecord(c, value, path);
  if (!match) return undefined;
  warnUnknown(c, match, path, ['name', 'pattern']);
  if (absent(match['name']) === absent(match['pattern'])) {
    c.error(path, 'set exactly one of name or pattern');
    return undefined;
  }
  if (!absent(match['name'])) {
    const at = child(path, 'name');
    const text = readString(c, match['name'], at);
    if (text === undefined) return undefined;
    if (text.includes('*')) {
      c.error(at, `${JSON.stringify(text)}: a name has no wildcard; use pattern`);
      return undefined;
    }
    const name = text.toLowerCase().replace(/\.$/, '');
    return admitPattern(c, name, at, flags, DIALECT) ? { name } : undefined;
  }
  const at = child(path, 'pattern');
  const text = readString(c, match['pattern'], at);
  if (text === undefined) return undefined;
  const pattern = gkePatternToNative(c, text, at);
  if (pattern === undefined || !admitPattern(c, pattern, at, flags, DIALECT)) return undefined;
  return pattern.includes('*') ? { pattern } : { name: pattern };
}

/** GKE pattern -> native text (same meaning), or undefined with an error. Exported for tests. */
export function gkePatternToNative(c: Conversion, text: string, at: string): string | undefined {
  const p = text.toLowerCase().replace(/\.$/, '');
  if (!p.includes('*')) {
    c.warn(at, `${JSON.stringify(text)} has no wildcard: read as that exact name`);
    return p;
  }
  if (!p.startsWith('*.') || p.slice(2).includes('*')) {
    c.error(
      at,
      `${JSON.stringify(text)}: GKE documents one wildcard form, "*." in front of a name (exactly one label); this one has no documented meaning`,
    );
    return undefined;
  }
  return p;
}

function readPorts(c: Conversion, value: unknown, path: string): PortSpan[] | undefined {
  if (absent(value)) return undefined;
  const list = readList(c, value, path, LIMITS.portsPerRule);
  if (!list) return [];
  if (list.length === 0) return undefined;
  const spans: PortSpan[] = [];
  list.forEach((p, k) => {
    const at = child(path, k);
    const port = readRecord(c, p, at);
    if (!port) return;
    warnUnknown(c, port, at, ['protocol', 'port', 'endPort']);
    // Missing or "": TCP, as the controller's defaulting webhook (and NetworkPolicy) says.
    const protocol = absent(port['protocol']) || port['protocol'] === '' ? 'TCP' : port['protocol'];
    if (protocol !== 'TCP' && protocol !== 'UDP') {
      if (protocol === 'SCTP')
        c.warn(child(at, 'protocol'), 'not converted: namegate governs TCP and UDP only');
      else c.error(child(at, 'protocol'), 'expected TCP, UDP or SCTP');
      return;
    }
    if (typeof port['port'] === 'string' && /[a-z]/i.test(port['port'])) {
      c.warn(
        child(at, 'port'),
        'not converted: a named port names a container port of a pod, never of an outside destination',
      );
      return;
    }
    if (absent(port['port'])) {
      spans.push({ protocol, from: 1, to: 65535 });
      return;
    }
    const from = readPortNumber(c, port['port'], child(at, 'port'));
    if (from === undefined) return;
    let to = from;
    if (!absent(port['endPort'])) {
      const end = readPortNumber(c, port['endPort'], child(at, 'endPort'));
      if (end === undefined) return;
      if (end < from) {
        c.error(child(at, 'endPort'), `endPort ${end} is below port ${from}`);
        return;
      }
      to = end;
    }
    spans.push({ protocol, from, to });
  });
  return spans;
}

/** The archived controller (v1alpha1-v1alpha3): {to: [{fqdns: [...]}], ports: [NetworkPolicyPort]}; exact names only. */
function convertOssRule(
  c: Conversion,
  value: unknown,
  path: string,
  flags: PatternFlags,
): RuleInput | undefined {
  const rule = readRecord(c, value, path);
  if (!rule) return undefined;
  warnUnknown(c, rule, path, ['to', 'ports']);
  const entries: Entry[] = [];
  const toPath = child(path, 'to');
  (readList(c, rule['to'], toPath) ?? []).forEach((peer, j) => {
    const at = child(toPath, j);
    const rec = readRecord(c, peer, at);
    if (!rec) return;
    warnUnknown(c, rec, at, ['fqdns']);
    (readList(c, rec['fqdns'], child(at, 'fqdns')) ?? []).forEach((f, k) => {
      const fp = child(child(at, 'fqdns'), k);
      const text = readString(c, f, fp);
      if (text === undefined) return;
      if (text.includes('*')) {
        c.error(fp, `${JSON.stringify(text)}: the v1alpha3 controller has no wildcards`);
        return;
      }
      const name = text.toLowerCase().replace(/\.$/, '');
      if (admitPattern(c, name, fp, flags, DIALECT)) entries.push({ name });
    });
  });
  const ports = readPorts(c, rule['ports'], child(path, 'ports'));
  if (entries.length === 0 && !c.failed) {
    // The controller omits such a rule: a NetworkPolicy rule with only ports would allow everything.
    c.warn(path, 'no fqdns: the controller leaves this rule out, and so does the conversion');
    return undefined;
  }
  return finishRule(c, path, entries, ports);
}

/**
 * Which v1alpha1 a document is: GKE's (rules with `matches`) or the archived controller's (rules
 * with `to[].fqdns`, or its `ingress`/`policyTypes`). Undefined (with an error) when it mixes both.
 */
function schemaOfV1alpha1(c: Conversion, spec: Record<string, unknown>): 'managed' | 'oss' | undefined {
  const rules = Array.isArray(spec['egress']) ? spec['egress'] : [];
  const has = (field: string) => rules.some((r) => isRecord(r) && !absent(r[field]));
  const managed = has('matches');
  const oss = has('to') || !absent(spec['ingress']) || !absent(spec['policyTypes']);
  if (managed && oss) {
    c.error(
      'spec.egress',
      "mixes GKE's schema (matches) and the archived controller's (to[].fqdns, ingress, policyTypes); use one",
    );
    return undefined;
  }
  if (!oss) return 'managed';
  c.warn(
    'apiVersion',
    `${MANAGED} with to[].fqdns: read as the archived open-source controller's schema (exact names, NetworkPolicy ports)`,
  );
  return 'oss';
}

/**
 * NetworkPolicy's rule: egress is restricted when policyTypes lists Egress, or, without
 * policyTypes, when the policy has an egress section.
 */
function egressIsolated(c: Conversion, spec: Record<string, unknown>): boolean {
  if (absent(spec['policyTypes'])) return !absent(spec['egress']);
  const types = readList(c, spec['policyTypes'], 'spec.policyTypes') ?? [];
  return types.includes('Egress');
}

function warnAnnotations(c: Conversion, doc: Record<string, unknown>): void {
  const meta = doc['metadata'];
  if (typeof meta !== 'object' || meta === null) return;
  const annotations = (meta as Record<string, unknown>)['annotations'];
  if (typeof annotations !== 'object' || annotations === null) return;
  for (const key of Object.keys(annotations)) {
    if (key.startsWith('fqdnnetworkpolicies.networking.gke.io/')) {
      c.warn(child('metadata.annotations', key), 'not kept: a setting of the archived controller');
    }
  }
}
