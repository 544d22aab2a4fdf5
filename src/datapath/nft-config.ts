/**
 * What the nftables driver is configured with: where DNS goes, the SNI proxy port, priorities,
 * logging, the optional output filter and the set sizes. Validated once; the ruleset generator
 * trusts a validated config.
 */
import { isIP } from 'node:net';
import { ErrorCode, NamegateError } from '../core/errors.ts';
import { parseCidr } from '../core/ip.ts';

/** How DNS from governed sources reaches the proxy. */
export type DnsTarget =
  /** `redirect to :port`: the proxy listens on the node's address of the incoming interface. */
  | { readonly kind: 'redirect'; readonly port: number }
  /** `dnat to addr:port`, per family; a family without an address is not redirected (it drops). */
  | {
      readonly kind: 'dnat';
      readonly port: number;
      readonly ipv4: string | null;
      readonly ipv6: string | null;
    }
  /**
   * Not redirected: governed sources resolve wherever they like (`namegate sync` on a gateway,
   * where no DNS proxy runs and the allowlists follow DNS instead). Their resolver must be
   * reachable like any destination: an internal CIDR or a toCIDRs rule.
   */
  | { readonly kind: 'none' };

export interface NftConfig {
  /** The table in family inet; one table holds everything namegate programs. */
  readonly table: string;
  readonly dns: DnsTarget;
  /** Port of the SNI/Host proxy that verify ports are redirected to; null: no redirect rule. */
  readonly verifyPort: number | null;
  /** Priority of the nat prerouting chain: before kube-proxy's DNAT at dstnat (-100). */
  readonly natPriority: number;
  readonly filterPriority: number;
  /** Log Enforce drops (rate limited) with prefix "namegate-drop ". */
  readonly logDrops: boolean;
  /** Log Audit would-be drops (rate limited) with prefix "namegate-audit ". */
  readonly logAudit: boolean;
  /** nft limit rate for both logs, e.g. "10/second". */
  readonly logRate: string;
  /**
   * Kernel drops as flow events: every drop the logs above would cover (Enforce, Audit,
   * unknown, spoofed) goes to this NFLOG group instead of the kernel log, rate limited per
   * source address in the kernel (a meter per source). null: the kernel log as configured.
   */
  readonly flowEvents: {
    readonly group: number;
    readonly ratePerSource: number;
    readonly burst: number;
  } | null;
  /** Govern the node's own processes too (gateway case); off by default. */
  readonly output: { readonly enabled: boolean; readonly exemptUids: readonly number[] };
  /** Set sizes per family: a full set makes learn() fail (REL-07), never a silent allow. */
  readonly sizes: {
    readonly sources: number;
    readonly allow: number;
    readonly cidr: number;
    readonly verify: number;
    /** UDP grants revoked within the revoke window (see revokeWindowMs). */
    readonly revoked: number;
  };
  /**
   * After forget() revokes a UDP grant, new packets from that peer to the source are dropped
   * until the peer has been silent this long (s resolution), so it cannot revive the flow whose
   * conntrack entry was deleted. 0 turns it off.
   */
  readonly revokeWindowMs: number;
  /** Element timeouts are clamped into [min, max]; never 0 (a 0 timeout never expires). */
  readonly minTimeoutMs: number;
  readonly maxTimeoutMs: number;
  /**
   * Cluster-internal destinations (pod and service CIDRs; a gateway's own VPC ranges), IPv4 and
   * IPv6, canonical CIDR text. Governed sources reach them without learning: that traffic is
   * left to NetworkPolicy (docs/architecture.md). DNS to them is still redirected to the proxy. Part of
   * the config, not of StaticState: it is a property of the node, not of policy or identity;
   * reconcile writes it into the `internal` sets by difference.
   */
  readonly internalCidrs: readonly string[];
  /**
   * The networks workloads live in (Kubernetes: the pod CIDRs; a gateway: the networks whose
   * egress it routes), canonical CIDR text. Every source address inside them is governed by
   * default: a known source keeps what policy gives it (governed, or ungoverned and untouched),
   * any other address (unknown, spoofed, not yet synced) gets no grants: its DNS is redirected
   * to the proxy (which refuses it), its packets to non-internal destinations are dropped and
   * counted (`unknown`). Empty: only the sources StaticState lists are governed (the behaviour
   * before this option existed), and an address no identity knows passes untouched.
   */
  readonly sourceCidrs: readonly string[];
  /**
   * With sourceCidrs: drop a packet whose source is inside them but that arrived on an interface
   * the route back to that source does not use (`fib saddr . iif oif missing`, before
   * conntrack), so a workload cannot send with another workload's address. Counted (`spoofed`).
   * Needs symmetric routing towards the workloads (docs/datapath.md lists the setups that do
   * not have it).
   */
  readonly antiSpoof: boolean;
  /**
   * A per-source packet rate limit on UDP to the DNS proxy's ports, in the kernel (input hook):
   * a flooding source is cut down before its packets reach the proxy's socket, whose receive
   * buffer would otherwise fill and drop every source's queries alike (NODE-06). Set above the
   * proxy's own token bucket, which stays the precise limit. Counted (`dnsflood`). null: off.
   */
  readonly dnsGuard: DnsGuard | null;
}

export interface DnsGuard {
  /** UDP ports the DNS proxy listens on (after any redirect: the ports its sockets have). */
  readonly ports: readonly number[];
  /** Packets per second per source address. */
  readonly rate: number;
  /** Packets a source may send at once above the rate. */
  readonly burst: number;
}

/** At most this many internal CIDRs: the sets are single-field interval sets, which
 * libnftables reads before every element command (see nft-ruleset.ts), so they stay small. */
export const MAX_INTERNAL_CIDRS = 256;
/** At most this many source CIDRs, for the same reason (the `scope` sets). */
export const MAX_SOURCE_CIDRS = 256;

export const DEFAULT_NFT_CONFIG: NftConfig = {
  table: 'namegate',
  dns: { kind: 'redirect', port: 5353 },
  verifyPort: null,
  natPriority: -110,
  filterPriority: 0,
  logDrops: false,
  logAudit: true,
  logRate: '10/second',
  flowEvents: null,
  output: { enabled: false, exemptUids: [] },
  sizes: { sources: 65_536, allow: 262_144, cidr: 65_536, verify: 65_536, revoked: 65_536 },
  revokeWindowMs: 30_000,
  minTimeoutMs: 1_000,
  maxTimeoutMs: 7 * 24 * 3600 * 1000,
  internalCidrs: [],
  sourceCidrs: [],
  antiSpoof: true,
  dnsGuard: null,
};

export type NftConfigInput = Partial<Omit<NftConfig, 'sizes' | 'output'>> & {
  readonly sizes?: Partial<NftConfig['sizes']>;
  readonly output?: Partial<NftConfig['output']>;
};

function fail(message: string): never {
  throw new NamegateError(ErrorCode.ConfigInvalid, `datapath config: ${message}`);
}

function port(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 1 || value > 65535) fail(`${what} ${value} is not a port 1..65535`);
  return value;
}

/** Defaults filled in and every field checked; throws NG_CONFIG_INVALID naming the field. */
export function resolveNftConfig(input: NftConfigInput = {}): NftConfig {
  const c: NftConfig = {
    ...DEFAULT_NFT_CONFIG,
    ...input,
    sizes: { ...DEFAULT_NFT_CONFIG.sizes, ...input.sizes },
    output: { ...DEFAULT_NFT_CONFIG.output, ...input.output },
  };
  if (!/^[a-z][a-z0-9_]{0,30}$/.test(c.table))
    fail(`table ${JSON.stringify(c.table)} is not [a-z][a-z0-9_]*`);
  if (c.dns.kind !== 'none') port(c.dns.port, 'dns.port');
  if (c.dns.kind === 'dnat') {
    if (c.dns.ipv4 !== null && isIP(c.dns.ipv4) !== 4)
      fail(`dns.ipv4 ${JSON.stringify(c.dns.ipv4)} is not IPv4`);
    if (c.dns.ipv6 !== null && isIP(c.dns.ipv6) !== 6)
      fail(`dns.ipv6 ${JSON.stringify(c.dns.ipv6)} is not IPv6`);
    if (c.dns.ipv4 === null && c.dns.ipv6 === null) fail('dns.kind dnat needs ipv4 or ipv6');
  } else if (c.dns.kind !== 'redirect' && c.dns.kind !== 'none') {
    fail(`dns.kind ${JSON.stringify((c.dns as { kind: unknown }).kind)} is not redirect, dnat or none`);
  }
  if (c.verifyPort !== null) port(c.verifyPort, 'verifyPort');
  for (const [name, value] of [
    ['natPriority', c.natPriority],
    ['filterPriority', c.filterPriority],
  ] as const) {
    if (!Number.isInteger(value) || Math.abs(value) > 1000)
      fail(`${name} ${value} is not an integer in -1000..1000`);
  }
  if (!/^[1-9][0-9]{0,5}\/(second|minute|hour)$/.test(c.logRate))
    fail(`logRate ${JSON.stringify(c.logRate)} is not N/second|minute|hour`);
  for (const uid of c.output.exemptUids) {
    if (!Number.isInteger(uid) || uid < 0 || uid > 0xffffffff) fail(`output.exemptUids: ${uid} is not a uid`);
  }
  // The DNS proxy's upstream queries and the agent's API calls must never be governed.
  if (c.output.enabled && c.output.exemptUids.length === 0)
    fail('output.enabled needs output.exemptUids (the uid the agent and DNS proxy run as)');
  for (const [name, value] of Object.entries(c.sizes)) {
    if (!Number.isInteger(value) || value < 1 || value > 16_777_216)
      fail(`sizes.${name} ${value} is not 1..16777216`);
  }
  if (!Number.isInteger(c.revokeWindowMs) || c.revokeWindowMs < 0 || c.revokeWindowMs > 3_600_000)
    fail(`revokeWindowMs ${c.revokeWindowMs} is not 0..3600000`);
  if (!Number.isInteger(c.minTimeoutMs) || c.minTimeoutMs < 1)
    fail(`minTimeoutMs ${c.minTimeoutMs} is not >= 1`);
  if (!Number.isInteger(c.maxTimeoutMs) || c.maxTimeoutMs < c.minTimeoutMs)
    fail(`maxTimeoutMs ${c.maxTimeoutMs} is not >= minTimeoutMs`);
  if (typeof c.antiSpoof !== 'boolean') fail(`antiSpoof ${JSON.stringify(c.antiSpoof)} is not a boolean`);
  if (c.dnsGuard !== null) checkDnsGuard(c.dnsGuard);
  return {
    ...c,
    internalCidrs: cidrList(
      c.internalCidrs,
      'internalCidrs',
      MAX_INTERNAL_CIDRS,
      'would exempt every destination',
    ),
    sourceCidrs: cidrList(
      c.sourceCidrs,
      'sourceCidrs',
      MAX_SOURCE_CIDRS,
      'would govern every source, the internet included; list the workload networks',
    ),
  };
}

function checkDnsGuard(g: DnsGuard): void {
  const ports = g.ports;
  if (!Array.isArray(ports) || ports.length === 0 || ports.length > 16)
    fail('dnsGuard.ports must list 1 to 16 ports');
  for (const [i, p] of ports.entries()) port(p, `dnsGuard.ports[${i}]`);
  for (const [key, v] of [
    ['rate', g.rate],
    ['burst', g.burst],
  ] as const) {
    if (!Number.isInteger(v) || v < 1 || v > 10_000_000) fail(`dnsGuard.${key} ${v} is not in 1..10000000`);
  }
}

/**
 * Canonical CIDRs, in order, duplicates removed. A /0 is refused: as internal CIDRs it would
 * exempt every destination and turn enforcement off without saying so; as source CIDRs it would
 * take every forwarded address for a workload's.
 */
function cidrList(list: readonly string[], name: string, max: number, whyNotZero: string): string[] {
  if (!Array.isArray(list)) fail(`${name} is not a list`);
  if (list.length > max) fail(`${name} has ${list.length} entries; at most ${max}`);
  const out: string[] = [];
  list.forEach((text, i) => {
    const c = typeof text === 'string' ? parseCidr(text) : `${JSON.stringify(text)} is not a string`;
    if (typeof c === 'string') fail(`${name}[${i}]: ${c}`);
    if (c.prefix === 0) fail(`${name}[${i}]: ${c.text} ${whyNotZero}`);
    if (!out.includes(c.text)) out.push(c.text);
  });
  return out;
}
