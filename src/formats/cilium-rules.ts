/**
 * One Cilium egress rule -> native rules: toFQDNs (matchName / matchPattern), toCIDR and
 * toCIDRSet, toEntities, toPorts (with serverNames as SNI-checked ports); every peer namegate
 * does not govern (endpoints, services, nodes, groups, ICMP) is named in a warning.
 *
 * Cilium's matchPattern, kept exactly (pkg/fqdn/matchpattern):
 *   a pattern of stars only ("*", "**", "*.")  every name                      -> "**"
 *   "**." prefix (two or more stars, a dot)    one or more whole labels        -> "**." + rest
 *   any other "*" (runs collapsed)             zero or more [a-z0-9_-] inside one label
 *                                               ("*.x" is then native one-label; "a*b.x" is a glob)
 */
import type { Cidr } from '../core/ip.ts';
import type { Protocol } from '../policy/model.ts';
import { convertHttpRules } from './cilium-http.ts';
import { intersectServerNames, readServerNames } from './cilium-server-names.ts';
import {
  absent,
  admitPattern,
  type Conversion,
  child,
  EVERY_ADDRESS,
  EVERY_PORT,
  nativePorts,
  type PatternFlags,
  type PortSpan,
  readCidr,
  readList,
  readOptionalRecord,
  readRecord,
  readString,
  warnUnknown,
} from './foreign-common.ts';
import type { RuleInput } from './native-schema.ts';

const DIALECT = 'Cilium';

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
export function convertEgressRule(
  c: Conversion,
  value: unknown,
  path: string,
  flags: PatternFlags,
): RuleInput[] {
  const rule = readRecord(c, value, path);
  if (!rule) return [];
  const before = c.errors.length;
  warnUnknown(c, rule, path, RULE_FIELDS);
  const toFQDNs = convertFqdnPeers(c, rule['toFQDNs'], child(path, 'toFQDNs'), flags);
  const toCIDRs = convertCidrPeers(c, rule, path);
  convertEntities(c, rule['toEntities'], child(path, 'toEntities'), flags, toFQDNs, toCIDRs);
  warnInClusterPeers(c, rule, path);
  const ports = convertToPorts(c, rule['toPorts'], child(path, 'toPorts'));
  // A rule with an error yields nothing (the document fails); no follow-on warnings.
  if (ports === undefined || c.errors.length > before) return [];
  if (toFQDNs.length === 0 && toCIDRs.length === 0) {
    warnNoPeer(c, rule, path);
    return [];
  }
  return nativeRules(c, path, toFQDNs, toCIDRs, ports, flags);
}

type FqdnPeers = NonNullable<RuleInput['toFQDNs']>;
type CidrPeers = NonNullable<RuleInput['toCIDRs']>;

function convertFqdnPeers(c: Conversion, value: unknown, path: string, flags: PatternFlags): FqdnPeers {
  const toFQDNs: FqdnPeers = [];
  (readList(c, value, path) ?? []).forEach((f, j) => {
    const entry = convertFqdnSelector(c, f, child(path, j), flags);
    if (entry) toFQDNs.push(entry);
  });
  return toFQDNs;
}

/** toCIDR and toCIDRSet. */
function convertCidrPeers(c: Conversion, rule: Record<string, unknown>, path: string): CidrPeers {
  const toCIDRs: CidrPeers = [];
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
  return toCIDRs;
}

/**
 * toEntities: `world` (and friends) reach every address outside the cluster, by name or by
 * address, so they add every-address CIDRs and the pattern "**"; in-cluster entities are left to
 * NetworkPolicy.
 */
function convertEntities(
  c: Conversion,
  value: unknown,
  path: string,
  flags: PatternFlags,
  toFQDNs: FqdnPeers,
  toCIDRs: CidrPeers,
): void {
  (readList(c, value, path) ?? []).forEach((v, j) => {
    const at = child(path, j);
    const entity = readString(c, v, at);
    if (entity === undefined) return;
    const external = EXTERNAL_ENTITIES[entity];
    if (external) {
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
}

/** Peers and fields namegate does not govern: each is named in a warning. */
function warnInClusterPeers(c: Conversion, rule: Record<string, unknown>, path: string): void {
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
}

function warnNoPeer(c: Conversion, rule: Record<string, unknown>, path: string): void {
  const peerless = RULE_FIELDS.filter(
    (f) => f !== 'toPorts' && f !== 'icmps' && f !== 'authentication',
  ).every((f) => absent(rule[f]));
  c.warn(
    path,
    peerless && !absent(rule['toPorts'])
      ? 'not converted: a rule with only toPorts lets Cilium reach every destination on those ports; namegate needs toFQDNs or toCIDRs (write toCIDRs 0.0.0.0/0 and ::/0 if that is meant)'
      : 'no toFQDNs or toCIDR peer: nothing for namegate to allow in this rule',
  );
}

/**
 * The native rules: the plain ports for every peer, the serverNames ports SNI-checked and the
 * http-rule ports inspected, both for names only.
 */
function nativeRules(
  c: Conversion,
  path: string,
  toFQDNs: FqdnPeers,
  toCIDRs: CidrPeers,
  ports: PortGroups,
  flags: PatternFlags,
): RuleInput[] {
  const out: RuleInput[] = [];
  const admit = (at: string) => (text: string) => admitPattern(c, text, at, flags, DIALECT);
  const peers = {
    ...(toFQDNs.length > 0 ? { toFQDNs } : {}),
    ...(toCIDRs.length > 0 ? { toCIDRs } : {}),
  };
  if (ports.plain.length > 0) {
    const native = nativePorts(ports.plain);
    out.push({ ...peers, ...(native ? { ports: native } : {}) });
  }
  if (ports.sni.length === 0 && ports.inspect.length === 0) return out;
  if (toFQDNs.length === 0) {
    c.warn(
      path,
      'not converted for the serverNames and http-rule ports: checking names needs toFQDNs, and allowing toCIDR without it would be wider',
    );
    return out;
  }
  if (toCIDRs.length > 0) {
    c.warn(
      path,
      'toCIDR is not converted for the serverNames and http-rule ports: namegate checks names only there',
    );
  }
  for (const g of ports.sni) {
    const names = intersectServerNames(c, g.at, g.serverNames, toFQDNs, admit(g.at));
    if (names.length > 0) out.push({ toFQDNs: names, ports: nativePorts(g.spans) ?? [], verify: 'SNI' });
  }
  for (const g of ports.inspect) {
    const names = g.serverNames
      ? intersectServerNames(c, g.at, g.serverNames, toFQDNs, admit(g.at))
      : toFQDNs;
    if (names.length > 0)
      out.push({ toFQDNs: names, ports: nativePorts(g.spans) ?? [], verify: 'Inspect', http: g.http });
  }
  return out;
}

interface PortGroups {
  readonly plain: PortSpan[];
  /** Ports whose PortRule has serverNames (native patterns): one native SNI rule per entry. */
  readonly sni: Array<{ spans: PortSpan[]; serverNames: string[]; at: string }>;
  /** Ports whose PortRule has rules.http: one native Inspect rule per entry. */
  readonly inspect: Array<{
    spans: PortSpan[];
    http: NonNullable<RuleInput['http']>;
    serverNames?: string[];
    at: string;
  }>;
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
function convertToPorts(c: Conversion, value: unknown, path: string): PortGroups | undefined {
  const list = readList(c, value, path);
  if (!list) return undefined;
  if (list.length === 0) return { plain: [...EVERY_PORT], sni: [], inspect: [] };
  const plain: PortSpan[] = [];
  const sni: PortGroups['sni'] = [];
  const inspect: PortGroups['inspect'] = [];
  const before = c.errors.length;
  list.forEach((v, j) => {
    const at = child(path, j);
    const pr = readRecord(c, v, at);
    if (!pr) return;
    warnUnknown(c, pr, at, PORT_RULE_FIELDS);
    const spans = convertPortList(c, pr['ports'], child(at, 'ports'));
    const http = convertL7(c, pr['rules'], child(at, 'rules'));
    if (!absent(pr['listener'])) c.warn(child(at, 'listener'), 'not kept: namegate has no Envoy listeners');
    const tls = ['terminatingTLS', 'originatingTLS'].filter((f) => !absent(pr[f]));
    for (const field of tls) {
      c.warn(
        child(at, field),
        http
          ? 'kept as verify: Inspect: namegate terminates TLS with its inspection CA (proxy.inspect.ca) and verifies the destination against proxy.inspect.upstreamCA; the Secret named here is not read'
          : 'not needed: without http rules every request passes, so namegate checks the SNI and does not terminate TLS',
      );
    }
    const namesAt = child(at, 'serverNames');
    const names = readServerNames(c, pr['serverNames'], namesAt, ciliumPatternToNative);
    if (http) {
      const tcp = spans.filter((s) => s.protocol === 'TCP');
      if (tcp.length < spans.length)
        c.warn(
          child(child(at, 'rules'), 'http'),
          'the UDP ports of this entry are not converted: HTTP rules need TCP',
        );
      if (names)
        c.warn(
          namesAt,
          'kept as verify: Inspect on the names both serverNames and toFQDNs allow: the SNI must be one of them',
        );
      if (tcp.length > 0)
        inspect.push({ spans: tcp, http, at: namesAt, ...(names ? { serverNames: names } : {}) });
    } else if (names) {
      const tcp = spans.filter((s) => s.protocol === 'TCP');
      if (tcp.length < spans.length) {
        c.warn(namesAt, 'the UDP ports of this entry are not converted: an SNI check needs TLS over TCP');
      }
      c.warn(
        namesAt,
        'kept as verify: SNI on the names both serverNames and toFQDNs allow: the SNI must be one of them, and the address learned for it',
      );
      if (tcp.length > 0) sni.push({ spans: tcp, serverNames: names, at: namesAt });
    } else {
      plain.push(...spans);
    }
  });
  if (c.errors.length > before) return undefined;
  if (plain.length === 0 && sni.length === 0 && inspect.length === 0) {
    c.warn(path, 'no port namegate can allow: the rule is not converted');
    return undefined;
  }
  return { plain, sni, inspect };
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

/** rules: http becomes native HTTP rules (cilium-http.ts); the other kinds are named in warnings. */
function convertL7(c: Conversion, value: unknown, path: string): NonNullable<RuleInput['http']> | undefined {
  const rules = readOptionalRecord(c, value, path);
  if (!rules) return undefined;
  warnUnknown(c, rules, path, ['dns', 'http', 'kafka', 'l7proto', 'l7']);
  if (!absent(rules['dns'])) {
    c.warn(
      child(path, 'dns'),
      'not needed: namegate answers DNS itself and lets a pod resolve exactly the names its policies allow',
    );
  }
  for (const field of ['kafka', 'l7proto', 'l7']) {
    if (!absent(rules[field])) {
      c.error(
        child(path, field),
        'not converted: namegate inspects HTTP only; allowing every request on these ports would be wider',
      );
    }
  }
  if (absent(rules['http'])) return undefined;
  const http = convertHttpRules(c, rules['http'], child(path, 'http'));
  return http && http.length > 0 ? http : undefined;
}
