/**
 * The shape of table `inet <table>`: its sets and chains, generated from the config alone (pure).
 * The driver reconciles the kernel towards these definitions; `renderRuleset` prints the whole
 * table for docs and `namegate datapath status`.
 *
 * Chain logic, per packet of a governed source:
 *   nat prerouting (before kube-proxy's DNAT): UDP/TCP 53 to any address -> the DNS proxy;
 *     verify ports of non-internal destinations -> the SNI proxy.
 *   filter forward: established/related -> accept (flows outlive element expiry); internal
 *     destination (pod/service CIDRs, left to NetworkPolicy) -> accept; learned element or CIDR
 *     allow -> accept; else Enforce -> count, (log), drop; Audit -> count, log, accept.
 *     Traffic the node itself originates (the DNS proxy's upstream queries, API calls) never
 *     passes prerouting or forward.
 * With source CIDRs configured (the networks workloads live in), an address inside them that is
 * neither governed nor a known ungoverned source is unknown and gets no grants: its DNS is
 * redirected (the proxy refuses it) unless it goes to a known address of this node (another
 * node's pod asking a DNS server pod here), internal destinations are accepted as for every
 * governed source, and the rest is counted and dropped. Known ungoverned sources pass untouched.
 * With antiSpoof, a source inside them must have arrived on the interface the route back to it
 * uses (strict reverse path, before conntrack), or it is counted and dropped.
 * Without source CIDRs, ungoverned and unknown sources are never matched.
 */
import { MAX_INTERNAL_CIDRS, MAX_SOURCE_CIDRS, type NftConfig } from './nft-config.ts';

export type Family = 4 | 6;
export const FAMILIES: readonly Family[] = [4, 6];

export type SetRole =
  | 'enforce'
  | 'audit'
  | 'drops'
  | 'enforcenet'
  | 'auditnet'
  | 'dropsnet'
  | 'allow'
  | 'allowall'
  | 'allowrange'
  | 'cidr'
  | 'verify'
  | 'revoked'
  | 'internal'
  | 'ungoverned'
  | 'ungovernednet'
  | 'scope'
  | 'dnsguard'
  | 'flowlog';
export const SET_ROLES: readonly SetRole[] = [
  'enforce',
  'audit',
  'drops',
  'enforcenet',
  'auditnet',
  'dropsnet',
  'allow',
  'allowall',
  'allowrange',
  'cidr',
  'verify',
  'revoked',
  'internal',
  'ungoverned',
  'ungovernednet',
  'scope',
];
/** Source sets by mode: single addresses (hash) and wider ranges (interval). */
export const SOURCE_ROLES = {
  Enforce: ['enforce', 'enforcenet'],
  Audit: ['audit', 'auditnet'],
  drops: ['drops', 'dropsnet'],
  /** Known sources no policy selects (they matter only with source CIDRs). */
  ungoverned: ['ungoverned', 'ungovernednet'],
} as const;
/** The learned sets: one port (hash), every port (hash), a port range (interval). */
export const LEARNED_ROLES = ['allow', 'allowall', 'allowrange'] as const;

export interface SetDef {
  readonly name: string;
  readonly role: SetRole;
  readonly family: Family;
  /** Data types; several means a concatenation. */
  readonly type: readonly string[];
  /** Sorted. */
  readonly flags: readonly string[];
  readonly size: number;
  /** A counter on every element (per-source drop counters). */
  readonly counter: boolean;
  /**
   * Filled from the packet path (`update @set`). Not in `flags` because nft 1.0.6's JSON
   * listing leaves the `dynamic` flag out, and flags are compared with that listing.
   */
  readonly dynamic?: boolean;
}

/** Named counters (objects of the table): they survive the chain flush of every reconcile. */
export const COUNTER_NAMES = {
  /** Packets of unknown sources inside the source CIDRs, dropped. */
  unknown: 'unknown',
  /** Packets inside the source CIDRs that failed the reverse-path check, dropped. */
  spoofed: 'spoofed',
  /** UDP packets to the DNS proxy over a source's kernel rate limit, dropped. */
  dnsflood: 'dnsflood',
} as const;

export interface BaseChain {
  readonly type: 'filter' | 'nat';
  readonly hook: 'prerouting' | 'input' | 'forward' | 'output';
  readonly priority: number;
  readonly policy: 'accept';
}

export interface ChainDef {
  readonly name: string;
  readonly base: BaseChain | null;
  readonly rules: readonly string[];
}

export function setName(role: SetRole, family: Family): string {
  return `${role}${family}`;
}

/**
 * Size of each `internal` set: fixed (not derived from the configured list), so that a changed
 * list changes elements only and never recreates the set. Each range may take two slots in the
 * kernel's interval tree, hence twice MAX_INTERNAL_CIDRS.
 */
export const INTERNAL_SET_SIZE = 2 * MAX_INTERNAL_CIDRS;
/** Size of each `scope` set, fixed for the same reason. */
export const SCOPE_SET_SIZE = 2 * MAX_SOURCE_CIDRS;
/** Priority of the anti-spoofing chain: raw, before conntrack (-200) makes an entry. */
export const ANTISPOOF_PRIORITY = -300;
/** Priority of the DNS flood guard (input hook): before any filter of the node at 0. */
export const DNS_GUARD_PRIORITY = -150;
/** How long a quiet source's rate state stays in the guard's set. */
const DNS_GUARD_IDLE = '60s';
/** How long a quiet source's meter stays in the flow-event sets. */
const FLOW_LOG_IDLE = '60s';
/** Bytes of each logged packet copied to user space: the network and transport headers. */
export const FLOW_LOG_SNAPLEN = 128;

export const LOG_PREFIX_DROP = 'namegate-drop ';
export const LOG_PREFIX_AUDIT = 'namegate-audit ';
export const LOG_PREFIX_UNKNOWN = 'namegate-unknown ';
export const LOG_PREFIX_SPOOF = 'namegate-spoof ';

export function setDefs(c: NftConfig): SetDef[] {
  const out: SetDef[] = [];
  for (const f of FAMILIES) {
    const addr = f === 4 ? 'ipv4_addr' : 'ipv6_addr';
    const def = (role: SetRole, type: string[], flags: string[], size: number, counter = false): SetDef => ({
      name: setName(role, f),
      role,
      family: f,
      type,
      flags: [...flags].sort(),
      size,
      counter,
    });
    out.push(
      // Governed sources, cut into disjoint ranges by longest prefix (source-ranges.ts): single
      // addresses (pods, /32 hosts) in hash sets, wider ranges (CIDR groups) in single-field
      // interval sets (rbtree, not pipapo). Kept apart because libnftables 1.0.6 reads every
      // element of every single-field interval set of the table before each `add element`
      // (its cache, for interval merging): measured, 300 source elements in interval sets made
      // a one-element learn transaction 0.26 ms instead of 0.08 ms. Ranges are few (groups).
      def('enforce', [addr], [], c.sizes.sources),
      def('audit', [addr], [], c.sizes.sources),
      def('enforcenet', [addr], ['interval'], c.sizes.sources),
      def('auditnet', [addr], ['interval'], c.sizes.sources),
      // Looked up only where a packet is dropped (or would be, in Audit), so each element's
      // counter is the drop count of one owned range (its comment names the owning source).
      def('drops', [addr], [], c.sizes.sources, true),
      def('dropsnet', [addr], ['interval'], c.sizes.sources, true),
      // Learned elements live in three sets, by port shape. A concatenated interval set
      // (pipapo) copies its lookup tables on every transaction, so commits slow down as it
      // grows (measured: ~1.3 ms per single add at 26k elements, 5 ms per 1000 elements more);
      // hash sets commit in constant time. Most rules name single ports or none at all, so
      // only true port ranges pay for the interval set.
      def('allow', [addr, addr, 'inet_proto', 'inet_service'], ['timeout'], c.sizes.allow),
      def('allowall', [addr, addr, 'inet_proto'], ['timeout'], c.sizes.allow),
      def('allowrange', [addr, addr, 'inet_proto', 'inet_service'], ['interval', 'timeout'], c.sizes.allow),
      def('cidr', [addr, addr, 'inet_proto', 'inet_service'], ['interval'], c.sizes.cidr),
      // Verify is TCP only (TLS SNI / HTTP Host), so the protocol is not part of the key.
      def('verify', [addr, 'inet_service'], ['interval'], c.sizes.verify),
      // (source, peer, protocol) of UDP grants just revoked: new packets from the peer to the
      // source are dropped while the peer keeps sending (the packet path refreshes the timeout),
      // so a peer cannot revive a flow whose conntrack entry `forget` deleted (see docs).
      def('revoked', [addr, addr, 'inet_proto'], ['timeout'], c.sizes.revoked),
      // Cluster-internal destinations (config.internalCidrs): a few prefixes, merged. A
      // single-field interval set like `enforcenet`, so libnftables reads it before every
      // learn transaction: measured, 4 prefixes made no difference to a one-element learn,
      // 64 separate ones added about 0.08 ms (docs/datapath.md).
      def('internal', [addr], ['interval'], INTERNAL_SET_SIZE),
      // Known sources that no policy selects, by longest prefix like the governed ones: with
      // source CIDRs they pass untouched, every other address inside them is unknown. Written
      // whether or not source CIDRs are configured, so turning them on changes rules only.
      def('ungoverned', [addr], [], c.sizes.sources),
      def('ungovernednet', [addr], ['interval'], c.sizes.sources),
      // config.sourceCidrs: a few prefixes, merged (like `internal`).
      def('scope', [addr], ['interval'], SCOPE_SET_SIZE),
    );
    // config.dnsGuard: one rate state per source that sent DNS lately, made by the packet path.
    if (c.dnsGuard !== null)
      out.push({ ...def('dnsguard', [addr], ['timeout'], c.sizes.sources), dynamic: true });
    // config.flowEvents: one meter per source that had a packet logged lately.
    if (c.flowEvents !== null)
      out.push({ ...def('flowlog', [addr], ['timeout'], c.sizes.sources), dynamic: true });
  }
  return out;
}

function ipOf(f: Family): 'ip' | 'ip6' {
  return f === 4 ? 'ip' : 'ip6';
}

/** Rules that send a governed source's packets to `target` (jump or goto), per source set. */
function governedJumps(target: string, verb: 'jump' | 'goto' = 'jump'): string[] {
  const out: string[] = [];
  for (const f of FAMILIES) {
    for (const role of [...SOURCE_ROLES.Enforce, ...SOURCE_ROLES.Audit]) {
      out.push(`${ipOf(f)} saddr @${setName(role, f)} ${verb} ${target}`);
    }
  }
  return out;
}

/** `rule(ip, set)` for each Enforce source set of each family. */
function perEnforceSet(rule: (ip: 'ip' | 'ip6', set: string, f: Family) => string): string[] {
  return FAMILIES.flatMap((f) => SOURCE_ROLES.Enforce.map((role) => rule(ipOf(f), setName(role, f), f)));
}

function dnsRules(c: NftConfig): string[] {
  const out: string[] = [];
  const d = c.dns;
  if (d.kind === 'none') return out;
  for (const proto of ['udp', 'tcp']) {
    if (d.kind === 'redirect') {
      out.push(`${proto} dport 53 redirect to :${d.port}`);
    } else {
      if (d.ipv4 !== null) out.push(`meta nfproto ipv4 ${proto} dport 53 dnat ip to ${d.ipv4}:${d.port}`);
      if (d.ipv6 !== null) out.push(`meta nfproto ipv6 ${proto} dport 53 dnat ip6 to [${d.ipv6}]:${d.port}`);
    }
  }
  return out;
}

/** `rule(ip, set)` for the internal set of each family. */
function perInternalSet(rule: (ip: 'ip' | 'ip6', set: string) => string): string[] {
  return FAMILIES.map((f) => rule(ipOf(f), setName('internal', f)));
}

function verifyRules(c: NftConfig): string[] {
  if (c.verifyPort === null) return [];
  return [
    // Connections to internal destinations are not namegate's (an in-cluster HTTPS service on
    // a verify port must not meet the SNI proxy); DNS to them was redirected above.
    ...perInternalSet((ip, set) => `${ip} daddr @${set} return`),
    ...FAMILIES.map(
      (f) => `${ipOf(f)} saddr . tcp dport @${setName('verify', f)} redirect to :${c.verifyPort}`,
    ),
  ];
}

/**
 * After `forget` deleted a UDP flow's conntrack entry, the peer's next datagram would open a new
 * entry in the other direction (the peer as originator) and the source's packets would then pass
 * as replies. While a revoked (source, peer, protocol) is in the set, such new packets towards an
 * Enforce source are dropped, and each one extends the window.
 */
function revokedRules(c: NftConfig): string[] {
  if (c.revokeWindowMs <= 0) return [];
  const t = `${Math.max(1, Math.ceil(c.revokeWindowMs / 1000))}s`;
  return perEnforceSet((ip, set, f) => {
    const key = `${ip} daddr . ${ip} saddr . meta l4proto`;
    const revoked = setName('revoked', f);
    return `${ip} daddr @${set} ${key} @${revoked} update @${revoked} { ${key} timeout ${t} } drop`;
  });
}

/** Rules for each set of these roles of each family: `rule(ip, set)`. */
function perSet(roles: readonly SetRole[], rule: (ip: 'ip' | 'ip6', set: string) => string): string[] {
  return FAMILIES.flatMap((f) => roles.map((role) => rule(ipOf(f), setName(role, f))));
}

/** Whether unknown sources are handled at all: only with source CIDRs. */
export function governsUnknown(c: NftConfig): boolean {
  return c.sourceCidrs.length > 0;
}

/** The roles of every source set this node knows: governed and ungoverned. */
const KNOWN_ROLES: readonly SetRole[] = [
  ...SOURCE_ROLES.Enforce,
  ...SOURCE_ROLES.Audit,
  ...SOURCE_ROLES.ungoverned,
];

/**
 * After the governed sources' rules: known ungoverned sources leave (`pass`), every other
 * address of the source CIDRs goes to `target`.
 */
function unknownDispatch(pass: 'return' | 'accept', verb: 'jump' | 'goto', target: string): string[] {
  return [
    ...perSet(SOURCE_ROLES.ungoverned, (ip, set) => `${ip} saddr @${set} ${pass}`),
    ...perSet(['scope'], (ip, set) => `${ip} saddr @${set} ${verb} ${target}`),
  ];
}

function countRules(): string[] {
  return FAMILIES.flatMap((f) => SOURCE_ROLES.drops.map((role) => `${ipOf(f)} saddr @${setName(role, f)}`));
}

function logRule(c: NftConfig, prefix: string): string {
  return `limit rate ${c.logRate} burst 20 packets log prefix "${prefix}" level info`;
}

/**
 * The log statement of one family: with flow events, to the NFLOG group through the source's
 * meter (a source over its rate is simply not logged: its packets are still counted); else
 * the kernel log, rate limited as a whole.
 */
function logStatement(c: NftConfig, prefix: string, f: Family): string {
  const e = c.flowEvents;
  if (e === null) return logRule(c, prefix);
  const set = setName('flowlog', f);
  return (
    `update @${set} { ${ipOf(f)} saddr timeout ${FLOW_LOG_IDLE} limit rate ${e.ratePerSource}/second ` +
    `burst ${e.burst} packets } log group ${e.group} snaplen ${FLOW_LOG_SNAPLEN} prefix "${prefix}"`
  );
}

/**
 * The rules that log a drop: one per family with flow events (the meter is per family; `ip
 * saddr` in the update matches only its own family's packets).
 */
function logRules(c: NftConfig, prefix: string): string[] {
  if (c.flowEvents === null) return [logRule(c, prefix)];
  return FAMILIES.map((f) => logStatement(c, prefix, f));
}

/** Whether drops of this kind are logged: all of them with flow events, else as configured. */
function logs(c: NftConfig, kind: 'drops' | 'audit'): boolean {
  return c.flowEvents !== null || (kind === 'drops' ? c.logDrops : c.logAudit);
}

export function chainDefs(c: NftConfig): ChainDef[] {
  const allowRules: string[] = [];
  for (const role of ['allow', 'allowall', 'allowrange', 'cidr'] as const) {
    for (const f of FAMILIES) {
      const ip = ipOf(f);
      const port = role === 'allowall' ? '' : ' . th dport';
      allowRules.push(`${ip} saddr . ${ip} daddr . meta l4proto${port} @${setName(role, f)} accept`);
    }
  }
  const unknown = governsUnknown(c);
  const chains: ChainDef[] = [
    {
      name: 'nat_prerouting',
      base: { type: 'nat', hook: 'prerouting', priority: c.natPriority, policy: 'accept' },
      rules: [
        // goto: a governed source's packet that nat_governed did not redirect is done here (it
        // must not go on to the unknown-source rules below).
        ...governedJumps('nat_governed', 'goto'),
        ...(unknown ? unknownDispatch('return', 'jump', 'nat_unknown') : []),
      ],
    },
    { name: 'nat_governed', base: null, rules: [...dnsRules(c), ...verifyRules(c)] },
    {
      name: 'filter_forward',
      base: { type: 'filter', hook: 'forward', priority: c.filterPriority, policy: 'accept' },
      rules: [
        // First, so that the bulk of packets costs one conntrack check and no set lookup.
        'ct state established,related accept',
        // A TCP segment that is not a SYN yet creates a conntrack entry towards an Enforce
        // source is a mid-stream pickup (after `forget` deleted its entry, the peer spoke
        // first): without this rule the source's replies would pass as "established". Internal
        // peers are exempt: the source may reach them anyway, and in-cluster flows are left to
        // NetworkPolicy.
        ...perEnforceSet(
          (ip, set, f) =>
            `${ip} daddr @${set} ${ip} saddr != @${setName('internal', f)} ct state new tcp flags & (syn | ack) != syn drop`,
        ),
        ...revokedRules(c),
        ...governedJumps('governed'),
        ...(unknown ? unknownDispatch('accept', 'goto', 'unknown_deny') : []),
      ],
    },
    {
      name: 'governed',
      base: null,
      rules: [
        // First: cluster-internal destinations are left to NetworkPolicy, for Enforce and
        // Audit sources alike (nothing counted or logged).
        ...perInternalSet((ip, set) => `${ip} daddr @${set} accept`),
        ...allowRules,
        ...FAMILIES.flatMap((f) =>
          SOURCE_ROLES.Audit.map((role) => `${ipOf(f)} saddr @${setName(role, f)} goto audit_deny`),
        ),
        // Anything else that reached this chain is dropped (fail closed).
        'goto enforce_deny',
      ],
    },
    {
      name: 'enforce_deny',
      base: null,
      rules: [...countRules(), ...(logs(c, 'drops') ? logRules(c, LOG_PREFIX_DROP) : []), 'drop'],
    },
    {
      name: 'audit_deny',
      base: null,
      rules: [...countRules(), ...(logs(c, 'audit') ? logRules(c, LOG_PREFIX_AUDIT) : []), 'accept'],
    },
  ];
  if (unknown) {
    chains.push(
      {
        name: 'nat_unknown',
        base: null,
        rules: [
          'meta l4proto . th dport != { tcp . 53, udp . 53 } return',
          // DNS to a known address of this node is another node's pod asking a DNS server pod
          // here (the pod CIDR spans every node; identity knows this node's pods only).
          ...perSet(KNOWN_ROLES, (ip, set) => `${ip} daddr @${set} return`),
          ...dnsRules(c),
        ],
      },
      {
        name: 'unknown_deny',
        base: null,
        rules: [
          // As for every governed source: in-cluster traffic is NetworkPolicy's (and traffic from
          // other nodes' pods, which this node's identity does not know, stays in the cluster).
          ...perInternalSet((ip, set) => `${ip} daddr @${set} accept`),
          ...(logs(c, 'drops') ? logRules(c, LOG_PREFIX_UNKNOWN) : []),
          `counter name "${COUNTER_NAMES.unknown}" drop`,
        ],
      },
    );
    if (c.antiSpoof) {
      const missing = 'fib saddr . iif oif missing';
      chains.push({
        name: 'filter_prerouting',
        base: { type: 'filter', hook: 'prerouting', priority: ANTISPOOF_PRIORITY, policy: 'accept' },
        rules: [
          ...(logs(c, 'drops')
            ? FAMILIES.map(
                (f) =>
                  `${ipOf(f)} saddr @${setName('scope', f)} ${missing} ${logStatement(c, LOG_PREFIX_SPOOF, f)}`,
              )
            : []),
          ...perSet(
            ['scope'],
            (ip, set) => `${ip} saddr @${set} ${missing} counter name "${COUNTER_NAMES.spoofed}" drop`,
          ),
        ],
      });
    }
  }
  if (c.dnsGuard !== null) {
    const g = c.dnsGuard;
    const ports = g.ports.length === 1 ? String(g.ports[0]) : `{ ${g.ports.join(', ')} }`;
    chains.push({
      name: 'filter_input',
      base: { type: 'filter', hook: 'input', priority: DNS_GUARD_PRIORITY, policy: 'accept' },
      rules: perSet(
        ['dnsguard'],
        (ip, set) =>
          `meta l4proto udp th dport ${ports} update @${set} { ${ip} saddr timeout ${DNS_GUARD_IDLE} ` +
          `limit rate over ${g.rate}/second burst ${g.burst} packets } counter name "${COUNTER_NAMES.dnsflood}" drop`,
      ),
    });
  }
  if (c.output.enabled) {
    const uids = `{ ${c.output.exemptUids.join(', ')} }`;
    chains.push(
      {
        name: 'filter_output',
        base: { type: 'filter', hook: 'output', priority: c.filterPriority, policy: 'accept' },
        rules: [
          'oif "lo" accept',
          // The agent and its DNS proxy run as these uids: their upstream and API traffic is
          // never governed.
          `meta skuid ${uids} accept`,
          'ct state established,related accept',
          ...governedJumps('governed'),
        ],
      },
      {
        name: 'nat_output',
        base: { type: 'nat', hook: 'output', priority: c.natPriority, policy: 'accept' },
        rules: [`meta skuid ${uids} return`, ...governedJumps('nat_governed')],
      },
    );
  }
  return chains;
}

/** The body of `add set` (between the braces). */
export function renderSetBody(def: SetDef): string {
  const parts = [`type ${def.type.join(' . ')};`];
  const flags = def.dynamic ? [...def.flags, 'dynamic'].sort() : def.flags;
  if (flags.length > 0) parts.push(`flags ${flags.join(',')};`);
  parts.push(`size ${def.size};`);
  if (def.counter) parts.push('counter;');
  return parts.join(' ');
}

export function renderChainHead(chain: ChainDef): string {
  const b = chain.base;
  return b === null ? '' : `type ${b.type} hook ${b.hook} priority ${b.priority}; policy ${b.policy};`;
}

/** The named counters the table holds for this config (created by reconcile, never reset). */
export function counterNames(c: NftConfig): string[] {
  return [
    ...(governsUnknown(c) ? [COUNTER_NAMES.unknown, COUNTER_NAMES.spoofed] : []),
    ...(c.dnsGuard !== null ? [COUNTER_NAMES.dnsflood] : []),
  ];
}

/** The whole table as `nft list` would show it (without elements). */
export function renderRuleset(c: NftConfig): string {
  const lines = [`table inet ${c.table} {`];
  for (const name of counterNames(c)) lines.push(`\tcounter ${name} {`, '\t\tpackets 0 bytes 0', '\t}', '');
  for (const s of setDefs(c)) {
    lines.push(`\tset ${s.name} {`);
    for (const part of renderSetBody(s).split('; ')) lines.push(`\t\t${part.replace(/;$/, '')}`);
    lines.push('\t}', '');
  }
  for (const ch of chainDefs(c)) {
    lines.push(`\tchain ${ch.name} {`);
    const head = renderChainHead(ch);
    if (head) lines.push(`\t\t${head}`);
    for (const r of ch.rules) lines.push(`\t\t${r}`);
    lines.push('\t}', '');
  }
  if (lines.at(-1) === '') lines.pop();
  lines.push('}');
  return lines.join('\n');
}
