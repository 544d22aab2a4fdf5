/**
 * CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy (cilium.io/v2) -> EgressPolicy /
 * ClusterEgressPolicy. Only the egress allow side has a namegate meaning: toFQDNs, toCIDR,
 * toCIDRSet, toEntities world, toPorts. Everything else is reported.
 *
 * Cilium's matchPattern, kept exactly (pkg/fqdn/matchpattern):
 *   a pattern of stars only ("*", "**", "*.")  every name                      -> "**"
 *   "**." prefix (two or more stars, a dot)    one or more whole labels        -> "**." + rest
 *   any other "*" (runs collapsed)             zero or more [a-z0-9_-] inside one label
 *                                               ("*.x" is then native one-label; "a*b.x" is a glob)
 */
import type { Cidr } from '../core/ip.ts';
import type { Protocol } from '../policy/model.ts';
import type { LabelSelector, LabelSelectorRequirement } from '../policy/selector.ts';
import { validateSelector } from '../policy/selector.ts';
import {
  absent,
  admitPattern,
  Conversion,
  child,
  compactSelector,
  EVERY_ADDRESS,
  EVERY_PORT,
  FOREIGN_LIMITS,
  type ForeignMeta,
  memberName,
  type NativeSpecParts,
  nativeDocument,
  nativePorts,
  PatternFlags,
  type PortSpan,
  readBoolean,
  readCidr,
  readList,
  readMeta,
  readOptionalRecord,
  readRecord,
  readSelector,
  readString,
  sourceText,
  warnUnknown,
} from './foreign-common.ts';
import type { ImportContext, Importer, ImportResult } from './importer.ts';
import { LIMITS, type NativeDocument } from './native.ts';
import type { RuleInput } from './native-schema.ts';

const API_VERSION = 'cilium.io/v2';
const DIALECT = 'Cilium';

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
const NAMESPACE_KEY = 'io.kubernetes.pod.namespace';
const NAMESPACE_LABELS_PREFIX = 'io.cilium.k8s.namespace.labels.';
const POLICY_KEY_PREFIX = 'io.cilium.k8s.policy.';
const METADATA_NAME = 'kubernetes.io/metadata.name';

/**
 * endpointSelector -> podSelector (+ namespaceSelector for the clusterwide kind). Keys may carry
 * a Cilium source prefix; `k8s:` and `any:` select pod labels, anything else (reserved:,
 * container:, cidr: ...) selects identities that are not pods.
 */
function convertEndpointSelector(
  c: Conversion,
  value: unknown,
  path: string,
  clusterwide: boolean,
  meta: ForeignMeta,
): { podSelector: LabelSelector; namespaceSelector?: LabelSelector } | 'nothing' | undefined {
  const raw = readSelector(c, value, path);
  if (!raw) return undefined;
  const before = c.errors.length;
  const pods: { labels: Record<string, string>; exprs: LabelSelectorRequirement[] } = {
    labels: {},
    exprs: [],
  };
  const nss: { labels: Record<string, string>; exprs: LabelSelectorRequirement[] } = {
    labels: {},
    exprs: [],
  };
  let selectsNothing = false;

  // What a namespace requirement means in a namespaced policy, whose own namespace Cilium adds
  // to the selector: "keep" (redundant: it holds), "ignore" (Cilium drops a conflicting
  // matchLabels entry) or "nothing" (an expression that excludes the own namespace).
  type OwnNamespace = 'keep' | 'ignore' | 'nothing';
  const place = (
    rawKey: string,
    at: string,
    add: (target: typeof pods, key: string) => void,
    own: () => OwnNamespace,
  ) => {
    const key = stripSource(c, rawKey, at);
    if (key === undefined) return;
    if (key === NAMESPACE_KEY) {
      if (clusterwide) {
        add(nss, METADATA_NAME);
        return;
      }
      const verdict = own();
      if (verdict === 'ignore') {
        c.warn(
          at,
          `ignored: a CiliumNetworkPolicy only ever selects pods of its own namespace ${JSON.stringify(meta.namespace)}`,
        );
      } else if (verdict === 'nothing') {
        selectsNothing = true;
      }
      return;
    }
    if (key.startsWith(NAMESPACE_LABELS_PREFIX)) {
      if (clusterwide) add(nss, key.slice(NAMESPACE_LABELS_PREFIX.length));
      else {
        c.error(
          at,
          'selecting by the labels of the own namespace is not converted for a namespaced policy; use a CiliumClusterwideNetworkPolicy or drop the requirement',
        );
      }
      return;
    }
    if (key.startsWith(POLICY_KEY_PREFIX)) {
      c.error(
        at,
        `${JSON.stringify(key)} is a Cilium identity label (service account, cluster); namegate selects pods by their labels`,
      );
      return;
    }
    add(pods, key);
  };

  for (const [rawKey, v] of Object.entries(raw.matchLabels ?? {})) {
    place(
      rawKey,
      child(child(path, 'matchLabels'), rawKey),
      (t, key) => {
        t.labels[key] = v;
      },
      () => (v === meta.namespace ? 'keep' : 'ignore'),
    );
  }
  (raw.matchExpressions ?? []).forEach((req, i) => {
    place(
      req.key,
      child(child(child(path, 'matchExpressions'), i), 'key'),
      (t, key) => {
        t.exprs.push({ ...req, key });
      },
      () => {
        const listed = (req.values ?? []).includes(meta.namespace ?? '');
        const holds =
          req.operator === 'Exists' ||
          (req.operator === 'In' && listed) ||
          (req.operator === 'NotIn' && !listed);
        return holds ? 'keep' : 'nothing';
      },
    );
  });
  if (c.errors.length > before) return undefined;
  if (selectsNothing) {
    c.warn(
      path,
      `selects no pod: a namespace requirement excludes the policy's own namespace ${JSON.stringify(meta.namespace)}`,
    );
    return 'nothing';
  }
  const podSelector = compactSelector({ matchLabels: pods.labels, matchExpressions: pods.exprs });
  const namespaceSelector = compactSelector({ matchLabels: nss.labels, matchExpressions: nss.exprs });
  for (const [p, m] of validateSelector(podSelector, path)) c.error(p, m);
  for (const [p, m] of validateSelector(namespaceSelector, path)) c.error(p, m);
  if (c.errors.length > before) return undefined;
  return clusterwide && Object.keys(namespaceSelector).length > 0
    ? { podSelector, namespaceSelector }
    : { podSelector };
}

/** "k8s:app" -> "app"; "any:app" -> "app"; "app" -> "app"; other sources are an error. */
function stripSource(c: Conversion, key: string, at: string): string | undefined {
  const colon = key.indexOf(':');
  if (colon < 0) return key;
  const source = key.slice(0, colon);
  if (source === 'k8s' || source === 'any') return key.slice(colon + 1);
  c.error(at, `the label source ${JSON.stringify(source)} selects Cilium identities that are not pods`);
  return undefined;
}

const RULE_FIELDS = [
  'toEndpoints',
  'toRequires',
  'toCIDR',
  'toCIDRSet',
  'toEntities',
  'toServices',
  'toGroups',
  'toNodes',
  'toPorts',
  'toFQDNs',
  'icmps',
  'authentication',
];

const IN_CLUSTER_PEERS: Record<string, string> = {
  toEndpoints: 'endpoints',
  toServices: 'Kubernetes services',
  toNodes: 'nodes',
  toRequires: 'endpoint requirements',
};

const EXTERNAL_ENTITIES: Record<string, readonly string[]> = {
  world: EVERY_ADDRESS,
  all: EVERY_ADDRESS,
  'world-ipv4': ['0.0.0.0/0'],
  'world-ipv6': ['::/0'],
};
const INTERNAL_ENTITIES = [
  'cluster',
  'host',
  'remote-node',
  'kube-apiserver',
  'init',
  'health',
  'unmanaged',
  'ingress',
];

/** One Cilium egress rule -> zero, one or two native rules (plain ports, and SNI-checked ports). */
function convertEgressRule(c: Conversion, value: unknown, path: string, flags: PatternFlags): RuleInput[] {
  const rule = readRecord(c, value, path);
  if (!rule) return [];
  const before = c.errors.length;
  warnUnknown(c, rule, path, RULE_FIELDS);
  const toFQDNs: NonNullable<RuleInput['toFQDNs']> = [];
  const toCIDRs: NonNullable<RuleInput['toCIDRs']> = [];

  const fqdnPath = child(path, 'toFQDNs');
  (readList(c, rule['toFQDNs'], fqdnPath) ?? []).forEach((f, j) => {
    const entry = convertFqdnSelector(c, f, child(fqdnPath, j), flags);
    if (entry) toFQDNs.push(entry);
  });

  const cidrPath = child(path, 'toCIDR');
  (readList(c, rule['toCIDR'], cidrPath) ?? []).forEach((v, j) => {
    const cidr = readCidr(c, v, child(cidrPath, j));
    if (cidr) toCIDRs.push({ cidr: cidr.text });
  });
  const setPath = child(path, 'toCIDRSet');
  (readList(c, rule['toCIDRSet'], setPath) ?? []).forEach((v, j) => {
    const entry = convertCidrRule(c, v, child(setPath, j));
    if (entry) toCIDRs.push(entry);
  });

  const entityPath = child(path, 'toEntities');
  (readList(c, rule['toEntities'], entityPath) ?? []).forEach((v, j) => {
    const at = child(entityPath, j);
    const entity = readString(c, v, at);
    if (entity === undefined) return;
    const external = EXTERNAL_ENTITIES[entity];
    if (external) {
      // `world` reaches every address outside the cluster, by name or by address.
      for (const cidr of external) toCIDRs.push({ cidr });
      if (!toFQDNs.some((f) => f.pattern === '**') && admitPattern(c, '**', at, flags, DIALECT)) {
        toFQDNs.push({ pattern: '**' });
      }
      c.warn(
        at,
        `${JSON.stringify(entity)} converts to toCIDRs ${external.join(', ')} plus the pattern "**" (every name)` +
          (entity === 'all' ? '; its in-cluster part is left to NetworkPolicy' : ''),
      );
    } else if (INTERNAL_ENTITIES.includes(entity)) {
      c.warn(
        at,
        `ignored: the entity ${JSON.stringify(entity)} is in-cluster traffic, which namegate leaves to NetworkPolicy`,
      );
    } else {
      c.error(at, `unknown entity ${JSON.stringify(entity)}`);
    }
  });

  for (const [field, what] of Object.entries(IN_CLUSTER_PEERS)) {
    if (!absent(rule[field])) {
      c.warn(
        child(path, field),
        `ignored: ${what} are in-cluster traffic, which namegate leaves to NetworkPolicy`,
      );
    }
  }
  if (!absent(rule['toGroups'])) {
    c.warn(
      child(path, 'toGroups'),
      'not converted: cloud provider groups are resolved by Cilium, not by the importer (narrower)',
    );
  }
  if (!absent(rule['icmps']))
    c.warn(child(path, 'icmps'), 'not converted: namegate governs TCP and UDP only');
  if (!absent(rule['authentication'])) {
    c.warn(child(path, 'authentication'), 'not kept: namegate has no mutual authentication');
  }

  const ports = convertToPorts(c, rule['toPorts'], child(path, 'toPorts'));
  // A rule with an error yields nothing (the document fails); no follow-on warnings.
  if (ports === undefined || c.errors.length > before) return [];
  if (toFQDNs.length === 0 && toCIDRs.length === 0) {
    const peerless = RULE_FIELDS.filter(
      (f) => f !== 'toPorts' && f !== 'icmps' && f !== 'authentication',
    ).every((f) => absent(rule[f]));
    c.warn(
      path,
      peerless && !absent(rule['toPorts'])
        ? 'not converted: a rule with only toPorts lets Cilium reach every destination on those ports; namegate needs toFQDNs or toCIDRs (write toCIDRs 0.0.0.0/0 and ::/0 if that is meant)'
        : 'no toFQDNs or toCIDR peer: nothing for namegate to allow in this rule',
    );
    return [];
  }
  const out: RuleInput[] = [];
  const peers = {
    ...(toFQDNs.length > 0 ? { toFQDNs } : {}),
    ...(toCIDRs.length > 0 ? { toCIDRs } : {}),
  };
  if (ports.plain.length > 0) {
    const native = nativePorts(ports.plain);
    out.push({ ...peers, ...(native ? { ports: native } : {}) });
  }
  if (ports.sni.length > 0) {
    if (toFQDNs.length === 0) {
      c.warn(
        path,
        'not converted for the serverNames ports: an SNI check needs toFQDNs, and allowing toCIDR without it would be wider',
      );
    } else {
      if (toCIDRs.length > 0) {
        c.warn(
          path,
          'toCIDR is not converted for the serverNames ports: namegate checks SNI against names only',
        );
      }
      out.push({ toFQDNs, ports: nativePorts(ports.sni) ?? [], verify: 'SNI' });
    }
  }
  return out;
}

/** matchName / matchPattern -> native name / pattern with the same meaning. */
function convertFqdnSelector(
  c: Conversion,
  value: unknown,
  path: string,
  flags: PatternFlags,
): { name: string } | { pattern: string } | undefined {
  const sel = readRecord(c, value, path);
  if (!sel) return undefined;
  warnUnknown(c, sel, path, ['matchName', 'matchPattern']);
  const hasName = !absent(sel['matchName']);
  const hasPattern = !absent(sel['matchPattern']);
  if (hasName === hasPattern) {
    c.error(path, 'set exactly one of matchName or matchPattern');
    return undefined;
  }
  if (hasName) {
    const at = child(path, 'matchName');
    const text = readString(c, sel['matchName'], at);
    if (text === undefined) return undefined;
    const name = text.trim().toLowerCase();
    if (!/^[-a-z0-9_.]+$/.test(name)) {
      c.error(at, `${JSON.stringify(text)}: a matchName may contain only letters, digits, "-", "_" and "."`);
      return undefined;
    }
    const native = name.replace(/\.$/, '');
    return admitPattern(c, native, at, flags, DIALECT) ? { name: native } : undefined;
  }
  const at = child(path, 'matchPattern');
  const text = readString(c, sel['matchPattern'], at);
  if (text === undefined) return undefined;
  const native = ciliumPatternToNative(c, text, at);
  if (native === undefined || !admitPattern(c, native, at, flags, DIALECT)) return undefined;
  if (native.includes('*') && !/^\*\*?\.[^*]*$/.test(native) && native !== '**') {
    c.warn(
      at,
      `${JSON.stringify(text)} keeps Cilium's meaning: each "*" inside a label matches zero or more of [a-z0-9_-] within that one label` +
        (native.startsWith('**.') ? ', after one or more leading labels' : '') +
        ' (allowPartialLabelWildcards is set)',
    );
  }
  return { pattern: native };
}

/**
 * Cilium matchPattern text -> native pattern text of the same meaning, or undefined (error).
 * Exported for tests.
 */
export function ciliumPatternToNative(c: Conversion, text: string, at: string): string | undefined {
  const raw = text.trim().toLowerCase();
  if (raw === '' || raw.length > 255) {
    c.error(at, `${JSON.stringify(text)}: a matchPattern has 1..255 characters`);
    return undefined;
  }
  if (!/^[-a-z0-9_.*]+$/.test(raw)) {
    c.error(
      at,
      `${JSON.stringify(text)}: a matchPattern may contain only letters, digits, "-", "_", "." and "*"`,
    );
    return undefined;
  }
  if (/^\*+\.?$/.test(raw)) {
    c.warn(at, `${JSON.stringify(text)} matches every name in Cilium; converted to "**"`);
    return '**';
  }
  const body = raw.endsWith('.') ? raw.slice(0, -1) : raw;
  const deep = /^\*{2,}\./.exec(body);
  if (deep) {
    // Only a leading "**." means "one or more labels"; later star runs stay within one label.
    return `**.${body.slice(deep[0].length).replace(/\*+/g, '*')}`;
  }
  return body.replace(/\*+/g, '*');
}

function convertCidrRule(
  c: Conversion,
  value: unknown,
  path: string,
): { cidr: string; except?: string[] } | undefined {
  const rule = readRecord(c, value, path);
  if (!rule) return undefined;
  warnUnknown(c, rule, path, ['cidr', 'except', 'cidrGroupRef', 'cidrGroupSelector']);
  for (const field of ['cidrGroupRef', 'cidrGroupSelector']) {
    if (!absent(rule[field])) {
      c.warn(
        child(path, field),
        'not converted: CiliumCIDRGroup objects are not visible to the importer (narrower)',
      );
    }
  }
  if (absent(rule['cidr'])) {
    if (absent(rule['cidrGroupRef']) && absent(rule['cidrGroupSelector']))
      c.error(child(path, 'cidr'), 'required');
    return undefined;
  }
  const cidr = readCidr(c, rule['cidr'], child(path, 'cidr'));
  const except: Cidr[] = [];
  const exceptPath = child(path, 'except');
  (readList(c, rule['except'], exceptPath) ?? []).forEach((v, k) => {
    const ex = readCidr(c, v, child(exceptPath, k));
    if (ex) except.push(ex);
  });
  if (!cidr) return undefined;
  return except.length > 0 ? { cidr: cidr.text, except: except.map((e) => e.text) } : { cidr: cidr.text };
}

const PORT_RULE_FIELDS = ['ports', 'rules', 'serverNames', 'terminatingTLS', 'originatingTLS', 'listener'];

/**
 * toPorts -> port spans, split into plain ports and ports whose PortRule has serverNames (kept
 * as verify: SNI). Undefined when toPorts is present but nothing in it is a port namegate can
 * allow: then the rule must be dropped, never widened to every port.
 */
function convertToPorts(
  c: Conversion,
  value: unknown,
  path: string,
): { plain: PortSpan[]; sni: PortSpan[] } | undefined {
  const list = readList(c, value, path);
  if (!list) return undefined;
  if (list.length === 0) return { plain: [...EVERY_PORT], sni: [] };
  const plain: PortSpan[] = [];
  const sni: PortSpan[] = [];
  const before = c.errors.length;
  list.forEach((v, j) => {
    const at = child(path, j);
    const pr = readRecord(c, v, at);
    if (!pr) return;
    warnUnknown(c, pr, at, PORT_RULE_FIELDS);
    const spans = convertPortList(c, pr['ports'], child(at, 'ports'));
    convertL7(c, pr['rules'], child(at, 'rules'));
    for (const field of ['terminatingTLS', 'originatingTLS', 'listener']) {
      if (!absent(pr[field])) c.warn(child(at, field), 'not kept: namegate does not proxy or terminate TLS');
    }
    const names = readList(c, pr['serverNames'], child(at, 'serverNames'));
    if (names && names.length > 0) {
      const tcp = spans.filter((s) => s.protocol === 'TCP');
      if (tcp.length < spans.length) {
        c.warn(
          child(at, 'serverNames'),
          'the UDP ports of this entry are not converted: an SNI check needs TLS over TCP',
        );
      }
      c.warn(
        child(at, 'serverNames'),
        'kept as verify: SNI: connections on these ports must present a name the rule allows (its toFQDNs), not this list',
      );
      sni.push(...tcp);
    } else {
      plain.push(...spans);
    }
  });
  if (plain.length === 0 && sni.length === 0) {
    if (c.errors.length > before) return undefined;
    c.warn(path, 'no port namegate can allow: the rule is not converted');
    return undefined;
  }
  return { plain, sni };
}

function convertPortList(c: Conversion, value: unknown, path: string): PortSpan[] {
  const list = readList(c, value, path);
  if (!list) return [];
  if (list.length === 0) return [...EVERY_PORT];
  const spans: PortSpan[] = [];
  list.forEach((v, k) => {
    const at = child(path, k);
    const pp = readRecord(c, v, at);
    if (!pp) return;
    warnUnknown(c, pp, at, ['port', 'endPort', 'protocol']);
    const protocolValue = absent(pp['protocol']) ? 'ANY' : pp['protocol'];
    const protocols: readonly Protocol[] =
      protocolValue === 'ANY'
        ? ['TCP', 'UDP']
        : protocolValue === 'TCP' || protocolValue === 'UDP'
          ? [protocolValue]
          : [];
    if (protocols.length === 0) {
      if (protocolValue === 'SCTP' || protocolValue === 'VRRP' || protocolValue === 'IGMP') {
        c.warn(child(at, 'protocol'), `not converted: namegate governs TCP and UDP, not ${protocolValue}`);
      } else {
        c.error(child(at, 'protocol'), 'expected TCP, UDP, SCTP or ANY');
      }
      return;
    }
    const portValue = pp['port'];
    if (typeof portValue === 'string' && /[a-z]/i.test(portValue)) {
      c.warn(
        child(at, 'port'),
        `not converted: the named port ${JSON.stringify(portValue)} names a container port of a pod, never of an outside destination`,
      );
      return;
    }
    const port = absent(portValue) ? 0 : readPortNumber0(c, portValue, child(at, 'port'));
    if (port === undefined) return;
    let end = port === 0 ? 65535 : port;
    if (!absent(pp['endPort'])) {
      const e = pp['endPort'];
      if (typeof e !== 'number' || !Number.isInteger(e) || e < port || e > 65535) {
        c.error(child(at, 'endPort'), `expected a port number from ${port} to 65535`);
        return;
      }
      if (port !== 0) end = e;
    }
    for (const protocol of protocols) spans.push({ protocol, from: port === 0 ? 1 : port, to: end });
  });
  return spans;
}

/** Cilium ports are strings ("80") or numbers; "0" means every port. */
function readPortNumber0(c: Conversion, v: unknown, path: string): number | undefined {
  const n = typeof v === 'string' && /^[0-9]{1,5}$/.test(v.trim()) ? Number(v.trim()) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 65535) {
    c.error(path, 'expected a port number 0..65535 or a port name');
    return undefined;
  }
  return n;
}

function convertL7(c: Conversion, value: unknown, path: string): void {
  const rules = readOptionalRecord(c, value, path);
  if (!rules) return;
  warnUnknown(c, rules, path, ['dns', 'http', 'kafka', 'l7proto', 'l7']);
  if (!absent(rules['dns'])) {
    c.warn(
      child(path, 'dns'),
      'not needed: namegate answers DNS itself and lets a pod resolve exactly the names its policies allow',
    );
  }
  for (const field of ['http', 'kafka', 'l7proto', 'l7']) {
    if (!absent(rules[field])) {
      c.warn(
        child(path, field),
        'not kept: namegate allows every request on these ports (layer 7 rules are wider after conversion)',
      );
    }
  }
}
