/**
 * Istio ServiceEntry (networking.istio.io v1, v1beta1, v1alpha3), read as it acts under
 * meshConfig.outboundTrafficPolicy.mode REGISTRY_ONLY: every pod that sees the entry (exportTo)
 * may reach its hosts on its ports. The entry becomes a policy that governs exactly those pods.
 *
 * Istio's host wildcard is a suffix match on the name (pkg/config/host: HasSuffix), kept exactly:
 *   "*.example.com"     one or more labels in front        -> "**.example.com"
 *   "*foo.example.com"  any name ending in foo.example.com  -> "*foo.example.com" + "**.*foo.example.com"
 * Hosts Istio's own validation refuses (a bare "*", underscores, IDN such as "bücher.example")
 * are errors, as they are for `kubectl apply`.
 *
 * With `addresses`, Istio matches opaque TCP/UDP ports by destination address only (the hosts
 * name the service, nothing on the wire is compared with them), so those ports become toCIDRs
 * rules only; HTTP/TLS ports stay name-checked.
 */
import type { Cidr } from '../core/ip.ts';
import type { LabelSelector } from '../policy/selector.ts';
import {
  absent,
  admitPattern,
  Conversion,
  child,
  type ForeignMeta,
  nativeDocument,
  nativePorts,
  PatternFlags,
  type PortSpan,
  readCidr,
  readList,
  readMeta,
  readPortNumber,
  readRecord,
  readString,
  sourceText,
  warnUnknown,
} from './foreign-common.ts';
import type { ImportContext, Importer, ImportResult } from './importer.ts';
import type { RuleInput } from './native-schema.ts';

const API_VERSIONS = [
  'networking.istio.io/v1',
  'networking.istio.io/v1beta1',
  'networking.istio.io/v1alpha3',
];
const DIALECT = 'Istio';
const METADATA_NAME = 'kubernetes.io/metadata.name';

export const istioImporter = {
  dialect: 'istio',
  title: 'Istio',
  summary: 'Istio ServiceEntry',
  kinds: [
    {
      group: 'networking.istio.io',
      version: 'v1',
      plural: 'serviceentries',
      kind: 'ServiceEntry',
      namespaced: true,
    },
  ],
  convert: convertServiceEntry,
} as const satisfies Importer;

const SPEC_FIELDS = [
  'hosts',
  'addresses',
  'ports',
  'location',
  'resolution',
  'endpoints',
  'workloadSelector',
  'exportTo',
  'subjectAltNames',
];

/** Protocols Istio routes by TLS SNI or HTTP Host: kept as verify: SNI. */
const NAME_CHECKED = ['HTTP', 'HTTPS', 'TLS'];
/** TCP protocols Istio matches by address and port (or by :authority namegate cannot read). */
const OPAQUE_TCP = ['TCP', 'MONGO', 'MYSQL', 'REDIS', 'HTTP2', 'GRPC', 'GRPC-WEB', 'THRIFT'];

function convertServiceEntry(doc: Record<string, unknown>, context: ImportContext): ImportResult {
  const c = new Conversion();
  const entry = readEntry(c, doc, context);
  if (!entry) return c.result([]);
  const { apiVersion, meta, spec } = entry;
  const { location, resolution } = readPlacement(c, spec);
  const audience = convertExportTo(c, spec['exportTo'], meta);
  const flags = new PatternFlags();
  const toFQDNs = convertHosts(c, spec['hosts'], flags);
  const addresses = convertAddresses(c, spec['addresses']);
  const ports = convertPorts(c, spec['ports']);
  warnNotKept(c, spec);
  if (c.failed) return c.result([]);

  if (location === 'MESH_INTERNAL') {
    c.warn(
      'spec.location',
      'MESH_INTERNAL services are in-cluster traffic, which namegate leaves to NetworkPolicy; nothing converted',
    );
    return c.result([]);
  }
  if (audience === 'nobody') return c.result([]);
  const rules = entryRules(c, toFQDNs, addresses, ports, resolution);
  return c.result([entryPolicy(c, apiVersion, meta, audience, rules, flags)]);
}

/** The document's apiVersion, metadata and spec; null (with errors) when it cannot be read. */
function readEntry(
  c: Conversion,
  doc: Record<string, unknown>,
  context: ImportContext,
): { apiVersion: string; meta: ForeignMeta; spec: Record<string, unknown> } | null {
  const apiVersion = String(doc['apiVersion']);
  if (!API_VERSIONS.includes(apiVersion)) {
    c.error(
      'apiVersion',
      `${JSON.stringify(apiVersion)} is not supported; expected one of ${API_VERSIONS.join(', ')}`,
    );
    return null;
  }
  const meta = readMeta(c, doc, true, context.defaultNamespace);
  warnUnknown(c, doc, '', ['apiVersion', 'kind', 'metadata', 'spec', 'status']);
  const spec = readRecord(c, doc['spec'], 'spec');
  if (!meta || !spec) return null;
  warnUnknown(c, spec, 'spec', SPEC_FIELDS);
  return { apiVersion, meta, spec };
}

/** spec.location and spec.resolution, with Istio's defaults. */
function readPlacement(
  c: Conversion,
  spec: Record<string, unknown>,
): { location: unknown; resolution: unknown } {
  const location = absent(spec['location']) ? 'MESH_EXTERNAL' : spec['location'];
  if (location !== 'MESH_EXTERNAL' && location !== 'MESH_INTERNAL') {
    c.error('spec.location', 'expected MESH_EXTERNAL or MESH_INTERNAL');
  }
  const resolution = absent(spec['resolution']) ? 'NONE' : spec['resolution'];
  if (!['NONE', 'STATIC', 'DNS', 'DNS_ROUND_ROBIN', 'DYNAMIC_DNS'].includes(String(resolution))) {
    c.error('spec.resolution', 'expected NONE, STATIC, DNS, DNS_ROUND_ROBIN or DYNAMIC_DNS');
  }
  return { location, resolution };
}

/** spec.hosts -> toFQDNs entries (names or patterns), without repeats. */
function convertHosts(c: Conversion, value: unknown, flags: PatternFlags): NonNullable<RuleInput['toFQDNs']> {
  const toFQDNs: NonNullable<RuleInput['toFQDNs']> = [];
  const hosts = readList(c, value, 'spec.hosts', 256);
  if (hosts && hosts.length === 0) c.error('spec.hosts', 'a ServiceEntry needs at least one host');
  (hosts ?? []).forEach((h, i) => {
    const at = child('spec.hosts', i);
    const text = readString(c, h, at);
    if (text === undefined) return;
    for (const pattern of istioHostToNative(c, text, at)) {
      const entry = pattern.includes('*') ? { pattern } : { name: pattern };
      if (admitPattern(c, pattern, at, flags, DIALECT) && !toFQDNs.some((f) => sameEntry(f, entry))) {
        toFQDNs.push(entry);
      }
    }
  });
  return toFQDNs;
}

/** spec.addresses -> CIDRs. */
function convertAddresses(c: Conversion, value: unknown): Cidr[] {
  const addresses: Cidr[] = [];
  (readList(c, value, 'spec.addresses', 256) ?? []).forEach((a, i) => {
    const cidr = readCidr(c, a, child('spec.addresses', i));
    if (cidr) addresses.push(cidr);
  });
  return addresses;
}

/** Fields that describe the service's side, not its callers: said, not converted. */
function warnNotKept(c: Conversion, spec: Record<string, unknown>): void {
  if (!absent(spec['workloadSelector'])) {
    c.warn(
      'spec.workloadSelector',
      'not kept: it selects the endpoints behind the entry, not the pods that call it',
    );
  }
  if (!absent(spec['endpoints'])) {
    c.warn(
      'spec.endpoints',
      "not kept: Istio's sidecar forwards to these endpoints; without a sidecar pods reach the hosts by name",
    );
  }
  if (!absent(spec['subjectAltNames'])) {
    c.warn('spec.subjectAltNames', 'not kept: namegate does not verify server certificates');
  }
}

/**
 * The rules: name-checked ports (HTTP, TLS) as verify: SNI; opaque ports by the entry's
 * addresses when it lists any (as Istio matches them), else by the hosts' names.
 */
function entryRules(
  c: Conversion,
  toFQDNs: NonNullable<RuleInput['toFQDNs']>,
  addresses: readonly Cidr[],
  { checked, opaque }: ReturnType<typeof convertPorts>,
  resolution: unknown,
): RuleInput[] {
  const rules: RuleInput[] = [];
  if (checked.length > 0) {
    rules.push({ toFQDNs, ports: nativePorts(checked) ?? [], verify: 'SNI' });
  }
  if (opaque.length > 0) {
    const native = nativePorts(opaque);
    if (addresses.length > 0) {
      // Istio listens on address:port for these: the destination address decides, never the name.
      rules.push({ toCIDRs: addresses.map((a) => ({ cidr: a.text })), ...(native ? { ports: native } : {}) });
      if (toFQDNs.length > 0)
        c.warn(
          'spec.hosts',
          'not allowed by name on the opaque (TCP/UDP) ports: with addresses Istio matches them by address only',
        );
    } else {
      rules.push({ toFQDNs, ...(native ? { ports: native } : {}) });
      if (resolution === 'NONE' && opaque.some((p) => p.protocol === 'TCP')) {
        c.warn(
          'spec.ports',
          'with resolution NONE and no addresses Istio lets these TCP ports reach any address; namegate allows only the addresses the hosts resolve to (narrower)',
        );
      }
    }
  } else if (addresses.length > 0) {
    c.warn(
      'spec.addresses',
      'not converted: Istio matches HTTP and TLS ports by name, and so does the converted policy',
    );
  }
  if (checked.length === 0 && opaque.length === 0) {
    c.warn('spec.ports', 'no port namegate can allow: the policy governs the pods but allows nothing');
  }
  return rules;
}

/** The native policy: for the entry's namespace, or cluster-wide for every namespace it is exported to. */
function entryPolicy(
  c: Conversion,
  apiVersion: string,
  meta: ForeignMeta,
  audience: Exclude<ReturnType<typeof convertExportTo>, 'nobody'>,
  rules: RuleInput[],
  flags: PatternFlags,
) {
  const cluster = audience !== 'own';
  c.warn(
    'spec.exportTo',
    `governs every pod of ${describeAudience(audience, meta)}: under REGISTRY_ONLY Istio governs only pods in the mesh ` +
      '(narrow the selectors if some pods there have no sidecar)',
  );
  const parts = {
    podSelector: {},
    ...(cluster ? { namespaceSelector: audience as LabelSelector } : {}),
    rules,
    flags,
  };
  return nativeDocument({
    kind: cluster ? 'ClusterEgressPolicy' : 'EgressPolicy',
    // Cluster-scoped output from a namespaced entry: the namespace keeps names unique.
    name: cluster ? `${meta.namespace}-${meta.name}` : meta.name,
    namespace: meta.namespace,
    source: sourceText(apiVersion, 'ServiceEntry', meta),
    parts,
  });
}

function sameEntry(
  a: { name?: string | undefined; pattern?: string | undefined },
  b: { name?: string | undefined; pattern?: string | undefined },
): boolean {
  return a.name === b.name && a.pattern === b.pattern;
}

/**
 * exportTo -> who sees the entry: 'own' namespace, a namespace selector, or 'nobody'.
 * Absent means every namespace (Istio's default unless the mesh config changes it).
 */
function convertExportTo(c: Conversion, value: unknown, meta: ForeignMeta): 'own' | 'nobody' | LabelSelector {
  const list = readList(c, value, 'spec.exportTo');
  if (!list || list.length === 0) return {};
  const names = new Set<string>();
  list.forEach((v, i) => {
    const text = readString(c, v, child('spec.exportTo', i));
    if (text !== undefined) names.add(text === '.' ? (meta.namespace ?? '') : text);
  });
  if (names.has('~') || names.has('*')) {
    if (names.size > 1) {
      c.error('spec.exportTo', '"*" and "~" must be the only entry');
      return 'nobody';
    }
    if (names.has('~')) {
      c.warn('spec.exportTo', '"~": the entry is visible to no namespace, so nothing is converted');
      return 'nobody';
    }
    return {};
  }
  if (names.size === 1 && names.has(meta.namespace ?? '')) return 'own';
  return { matchExpressions: [{ key: METADATA_NAME, operator: 'In', values: [...names].sort() }] };
}

function describeAudience(audience: 'own' | LabelSelector, meta: ForeignMeta): string {
  if (audience === 'own') return `namespace ${meta.namespace}`;
  const values = audience.matchExpressions?.[0]?.values;
  return values ? `namespaces ${values.join(', ')}` : 'every namespace';
}

// Istio's own host validation (pkg/config/validation, ValidateWildcardDomain): DNS-1123 labels
// (letters, digits, inner hyphens; no underscores, no IDN), "*" or "*-" only in front of the
// first label, an optional trailing dot, a last label that is not a number, at most 255
// characters; a bare "*" is refused for a ServiceEntry.
const DNS1123_LABEL = /^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$/i;
const WILDCARD_FIRST_LABEL = /^(?:\*|(?:\*|\*-)?[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)$/i;

/** Why Istio's validation refuses `text` as a ServiceEntry host, or null when it accepts it. */
export function istioHostProblem(text: string): string | null {
  if (text === '*' || text === '*.')
    return 'Istio refuses "*" as a ServiceEntry host (it would match every name)';
  if (text.length === 0) return 'a host may not be empty';
  if (text.length > 255) return 'a host has at most 255 characters';
  const [first = '', ...rest] = (text.endsWith('.') && text !== '.' ? text.slice(0, -1) : text).split('.');
  if (first.length > 63 || !WILDCARD_FIRST_LABEL.test(first)) {
    return first.includes('*') && first.lastIndexOf('*') > 0
      ? 'Istio allows "*" only at the start of the first label'
      : `the label ${JSON.stringify(first)} is not a DNS-1123 label (letters, digits and inner hyphens, at most 63)`;
  }
  for (const label of rest) {
    if (label.includes('*')) return 'Istio allows "*" only at the start of the first label';
    if (label.length > 63 || !DNS1123_LABEL.test(label))
      return `the label ${JSON.stringify(label)} is not a DNS-1123 label (letters, digits and inner hyphens, at most 63)`;
  }
  if (rest.length > 0 && /^[0-9]+$/.test(rest[rest.length - 1] ?? ''))
    return 'the last label may not be a number';
  return null;
}

/**
 * Istio host -> native names/patterns with Istio's suffix meaning; a host Istio's validation
 * refuses is an error here too. Exported for tests.
 */
export function istioHostToNative(c: Conversion, text: string, at: string): string[] {
  const problem = istioHostProblem(text);
  if (problem !== null) {
    c.error(at, `${JSON.stringify(text)}: ${problem}`);
    return [];
  }
  const host = text.toLowerCase().replace(/\.$/, '');
  const labels = host.split('.');
  const first = labels[0] ?? '';
  if (!first.startsWith('*')) return [host];
  const rest = labels.slice(1).join('.');
  if (first === '*') {
    c.warn(
      at,
      `${JSON.stringify(text)} means one or more labels in front of ${rest} in Istio; converted to "**.${rest}"`,
    );
    return [`**.${rest}`];
  }
  // "*foo.example.com" is a string suffix match: it reaches "foo.example.com", "xfoo.example.com"
  // and any name below them.
  c.warn(
    at,
    `${JSON.stringify(text)} matches every name ending in ${JSON.stringify(host.slice(1))} in Istio; converted to ` +
      `"${host}" and "**.${host}" (allowPartialLabelWildcards is set)`,
  );
  return [host, `**.${host}`];
}

/** ports -> TCP/UDP spans whose connections Istio checks by name (verify: SNI) or not. */
function convertPorts(c: Conversion, value: unknown): { checked: PortSpan[]; opaque: PortSpan[] } {
  const checked: PortSpan[] = [];
  const opaque: PortSpan[] = [];
  (readList(c, value, 'spec.ports', 256) ?? []).forEach((v, i) => {
    const at = child('spec.ports', i);
    const port = readRecord(c, v, at);
    if (!port) return;
    warnUnknown(c, port, at, ['number', 'protocol', 'name', 'targetPort']);
    const number = readPortNumber(c, port['number'], child(at, 'number'));
    if (number === undefined) return;
    if (!absent(port['targetPort']) && port['targetPort'] !== number) {
      c.warn(
        child(at, 'targetPort'),
        'not kept: pods connect to number; targetPort is where the sidecar forwards',
      );
    }
    const protocol = typeof port['protocol'] === 'string' ? port['protocol'].toUpperCase() : 'TCP';
    const span = (p: 'TCP' | 'UDP'): PortSpan => ({ protocol: p, from: number, to: number });
    if (NAME_CHECKED.includes(protocol)) checked.push(span('TCP'));
    else if (protocol === 'UDP') opaque.push(span('UDP'));
    else if (OPAQUE_TCP.includes(protocol)) {
      opaque.push(span('TCP'));
      if (['HTTP2', 'GRPC', 'GRPC-WEB'].includes(protocol)) {
        c.warn(
          child(at, 'protocol'),
          `${protocol}: Istio routes it by :authority, which namegate does not read; only the address is checked`,
        );
      }
    } else {
      c.warn(
        child(at, 'protocol'),
        `unknown protocol ${JSON.stringify(port['protocol'])}: Istio treats it as TCP, and so does namegate`,
      );
      opaque.push(span('TCP'));
    }
  });
  return { checked, opaque };
}
