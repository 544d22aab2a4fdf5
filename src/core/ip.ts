/**
 * IP addresses and CIDRs: parsing to canonical text, containment, and the classification of
 * addresses that DNS answers may never open on their own (docs/architecture.md "Answers never widen access
 * beyond the internet").
 */
import { BlockList, isIP, SocketAddress } from 'node:net';

export type IpFamily = 4 | 6;

export interface Cidr {
  /** Canonical text, e.g. "203.0.113.0/24" or "2001:db8::/32". */
  readonly text: string;
  readonly address: string;
  readonly prefix: number;
  readonly family: IpFamily;
}

/** Canonical text of an IP address (compressed lowercase IPv6), or null when it is not one. */
export function canonicalIp(text: string): string | null {
  const family = isIP(text);
  if (family === 0) return null;
  if (family === 4) return text;
  const parsed = SocketAddress.parse(`[${text}]:0`);
  return parsed ? parsed.address : null;
}

export function ipFamily(ip: string): IpFamily {
  return isIP(ip) === 6 ? 6 : 4;
}

/** Parse "a.b.c.d/n" or "x::/n"; a bare address means a host route. Host bits must be zero. */
export function parseCidr(text: string): Cidr | string {
  const slash = text.indexOf('/');
  const addrText = slash >= 0 ? text.slice(0, slash) : text;
  const address = canonicalIp(addrText);
  if (!address) return `${JSON.stringify(addrText)} is not an IP address`;
  const family = ipFamily(address);
  const max = family === 4 ? 32 : 128;
  const prefixText = slash >= 0 ? text.slice(slash + 1) : String(max);
  if (!/^[0-9]{1,3}$/.test(prefixText)) return `prefix length ${JSON.stringify(prefixText)} is not a number`;
  const prefix = Number(prefixText);
  if (prefix > max) return `prefix length ${prefix} is longer than ${max}`;
  const network = maskAddress(address, family, prefix);
  if (network !== address) {
    return `${JSON.stringify(text)} has host bits set; write ${network}/${prefix}`;
  }
  return { text: `${address}/${prefix}`, address, prefix, family };
}

function maskAddress(address: string, family: IpFamily, prefix: number): string {
  const bytes = ipToBytes(address);
  for (let i = 0; i < bytes.length; i++) {
    const bits = Math.max(0, Math.min(8, prefix - i * 8));
    bytes[i] = (bytes[i] ?? 0) & (0xff << (8 - bits)) & 0xff;
  }
  return bytesToIp(bytes, family);
}

export function ipToBytes(ip: string): number[] {
  if (isIP(ip) === 4) return ip.split('.').map(Number);
  const sa = SocketAddress.parse(`[${ip}]:0`);
  const full = expandIpv6(sa ? sa.address : ip);
  const out: number[] = [];
  for (const group of full) {
    out.push((group >> 8) & 0xff, group & 0xff);
  }
  return out;
}

function expandIpv6(ip: string): number[] {
  let text = ip;
  let embedded: number[] = [];
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    const b = text
      .slice(lastColon + 1)
      .split('.')
      .map(Number);
    embedded = [((b[0] ?? 0) << 8) | (b[1] ?? 0), ((b[2] ?? 0) << 8) | (b[3] ?? 0)];
    text = text.slice(0, lastColon + 1);
    if (!text.endsWith('::')) text = text.slice(0, -1);
  }
  const hex = (g: string) => Number.parseInt(g, 16);
  const gap = text.indexOf('::');
  const head = (gap >= 0 ? text.slice(0, gap) : text).split(':').filter((g) => g !== '');
  const tail =
    gap >= 0
      ? text
          .slice(gap + 2)
          .split(':')
          .filter((g) => g !== '')
      : [];
  const fill = gap >= 0 ? 8 - embedded.length - head.length - tail.length : 0;
  return [...head.map(hex), ...new Array<number>(Math.max(0, fill)).fill(0), ...tail.map(hex), ...embedded];
}

function bytesToIp(bytes: number[], family: IpFamily): string {
  if (family === 4) return bytes.join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  return canonicalIp(groups.join(':')) ?? groups.join(':');
}

/**
 * A set of CIDRs with fast containment. Each family has its own BlockList: node's BlockList
 * otherwise lets an IPv6 rule such as ::/96 match IPv4 addresses and the reverse.
 */
export class CidrSet {
  readonly #v4 = new BlockList();
  readonly #v6 = new BlockList();
  readonly cidrs: readonly Cidr[];

  constructor(cidrs: readonly Cidr[]) {
    this.cidrs = cidrs;
    for (const c of cidrs) {
      if (c.family === 4) this.#v4.addSubnet(c.address, c.prefix, 'ipv4');
      else this.#v6.addSubnet(c.address, c.prefix, 'ipv6');
    }
  }

  has(ip: string): boolean {
    if (this.cidrs.length === 0) return false;
    return ipFamily(ip) === 4 ? this.#v4.check(ip, 'ipv4') : this.#v6.check(ip, 'ipv6');
  }
}

/** Why an address may not be learned from a DNS answer; 'public' means it may. */
export type AddressClass =
  | 'public'
  | 'unspecified'
  | 'loopback'
  | 'private'
  | 'cgnat'
  | 'link-local'
  | 'multicast'
  | 'reserved'
  | 'ipv4-embedded';

const CLASS_RANGES: ReadonlyArray<readonly [AddressClass, string]> = [
  ['unspecified', '0.0.0.0/8'],
  ['private', '10.0.0.0/8'],
  ['cgnat', '100.64.0.0/10'],
  ['loopback', '127.0.0.0/8'],
  ['link-local', '169.254.0.0/16'],
  ['private', '172.16.0.0/12'],
  ['reserved', '192.0.0.0/24'],
  ['private', '192.168.0.0/16'],
  ['reserved', '198.18.0.0/15'],
  ['multicast', '224.0.0.0/4'],
  ['reserved', '240.0.0.0/4'],
  ['unspecified', '::/128'],
  ['loopback', '::1/128'],
  // IPv4-compatible, IPv4-mapped, NAT64 (well-known and local-use), Teredo and 6to4 addresses
  // carry an IPv4 address that a host or translator may reach; never learned from answers.
  ['ipv4-embedded', '::/96'],
  ['ipv4-embedded', '::ffff:0:0/96'],
  ['ipv4-embedded', '64:ff9b::/96'],
  ['ipv4-embedded', '64:ff9b:1::/48'],
  ['ipv4-embedded', '2001::/32'],
  ['ipv4-embedded', '2002::/16'],
  ['reserved', '100::/64'],
  ['private', 'fc00::/7'],
  ['link-local', 'fe80::/10'],
  ['multicast', 'ff00::/8'],
];

// Most specific classes first: loopback and unspecified sit inside ::/96 (ipv4-embedded).
const CLASS_ORDER: readonly AddressClass[] = [
  'unspecified',
  'loopback',
  'link-local',
  'multicast',
  'private',
  'cgnat',
  'reserved',
  'ipv4-embedded',
];

const CLASS_SETS: ReadonlyArray<readonly [AddressClass, CidrSet]> = CLASS_ORDER.map((cls) => {
  const cidrs = CLASS_RANGES.filter(([c]) => c === cls).map(([, text]) => {
    const cidr = parseCidr(text);
    if (typeof cidr === 'string') throw new Error(`bad built-in range ${text}: ${cidr}`);
    return cidr;
  });
  return [cls, new CidrSet(cidrs)] as const;
});

export function classifyAddress(ip: string): AddressClass {
  const family = isIP(ip);
  if (family === 0) return 'reserved';
  if (ip === '255.255.255.255') return 'reserved';
  for (const [cls, set] of CLASS_SETS) {
    if (set.has(ip)) return cls;
  }
  return 'public';
}

/** Dotted IPv4 text of 4 bytes. */
export function ipv4Text(buf: Uint8Array, at: number): string {
  return `${buf[at]}.${buf[at + 1]}.${buf[at + 2]}.${buf[at + 3]}`;
}

/** Canonical (RFC 5952) IPv6 text of 16 bytes: lowercase, longest zero run compressed. */
export function ipv6Text(buf: Uint8Array, at: number): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((buf[at + i]! << 8) | buf[at + i + 1]!);
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (g: number[]) => g.map((x) => x.toString(16)).join(':');
  // Embedded IPv4 forms print as Node's inet_ntop does, so texts compare equal to canonicalIp.
  if (bestStart === 0 && (bestLen === 6 || (bestLen === 5 && groups[5] === 0xffff))) {
    const v4 = ipv4Text(buf, at + 12);
    return bestLen === 6 ? `::${v4}` : `::ffff:${v4}`;
  }
  if (bestLen < 2) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}
