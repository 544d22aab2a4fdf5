/**
 * Address ranges as bigints: what the CIDR set needs, since nftables takes `a-b` intervals and
 * a toCIDRs rule with `except` entries is a CIDR with holes, i.e. several ranges.
 */
import { type Cidr, canonicalIp, type IpFamily, ipFamily, ipToBytes } from '../core/ip.ts';

export interface AddrRange {
  readonly family: IpFamily;
  /** Inclusive bounds. */
  readonly start: bigint;
  readonly end: bigint;
}

export function ipToBigInt(ip: string): bigint {
  let n = 0n;
  for (const b of ipToBytes(ip)) n = (n << 8n) | BigInt(b);
  return n;
}

export function bigIntToIp(n: bigint, family: IpFamily): string {
  if (family === 4) {
    return [24n, 16n, 8n, 0n].map((s) => String((n >> s) & 0xffn)).join('.');
  }
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((n >> BigInt(i * 16)) & 0xffffn).toString(16));
  const text = groups.join(':');
  return canonicalIp(text) ?? text;
}

function bits(family: IpFamily): bigint {
  return family === 4 ? 32n : 128n;
}

export function cidrRange(cidr: Cidr): AddrRange {
  const start = ipToBigInt(cidr.address);
  const hostBits = bits(cidr.family) - BigInt(cidr.prefix);
  return { family: cidr.family, start, end: start + (1n << hostBits) - 1n };
}

export function addressRange(ip: string): AddrRange {
  const n = ipToBigInt(ip);
  return { family: ipFamily(ip), start: n, end: n };
}

/** `base` minus every hole (holes of another family are ignored); sorted, disjoint. */
export function subtractRanges(base: AddrRange, holes: readonly AddrRange[]): AddrRange[] {
  let pieces: AddrRange[] = [base];
  for (const h of holes) {
    if (h.family !== base.family) continue;
    const next: AddrRange[] = [];
    for (const p of pieces) {
      if (h.end < p.start || h.start > p.end) {
        next.push(p);
        continue;
      }
      if (h.start > p.start) next.push({ family: p.family, start: p.start, end: h.start - 1n });
      if (h.end < p.end) next.push({ family: p.family, start: h.end + 1n, end: p.end });
    }
    pieces = next;
  }
  return pieces.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
}

/** Sorted, disjoint union; touching ranges merge. */
export function mergeRanges(ranges: readonly AddrRange[]): AddrRange[] {
  const sorted = [...ranges].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const out: AddrRange[] = [];
  for (const r of sorted) {
    const last = out.at(-1);
    if (last && last.family === r.family && r.start <= last.end + 1n) {
      if (r.end > last.end) out[out.length - 1] = { ...last, end: r.end };
    } else {
      out.push(r);
    }
  }
  return out;
}

/** nft text: a single address, or `first-last`. */
export function rangeText(r: AddrRange): string {
  const a = bigIntToIp(r.start, r.family);
  return r.start === r.end ? a : `${a}-${bigIntToIp(r.end, r.family)}`;
}

/** The range of a prefix given as address and length (as nft's JSON prints it). */
export function prefixRange(address: string, len: number): AddrRange | null {
  const ip = canonicalIp(address);
  if (ip === null) return null;
  const family = ipFamily(ip);
  if (!Number.isInteger(len) || len < 0 || BigInt(len) > bits(family)) return null;
  const start = ipToBigInt(ip);
  const hostBits = bits(family) - BigInt(len);
  const mask = (1n << hostBits) - 1n;
  return { family, start: start & ~mask, end: (start & ~mask) + mask };
}

export function compareRanges(a: AddrRange, b: AddrRange): number {
  if (a.family !== b.family) return a.family - b.family;
  return a.start < b.start ? -1 : a.start > b.start ? 1 : a.end < b.end ? -1 : a.end > b.end ? 1 : 0;
}

export function rangeContains(outer: AddrRange, inner: AddrRange): boolean {
  return outer.family === inner.family && outer.start <= inner.start && inner.end <= outer.end;
}

/** The range `rangeText` printed ("a" or "a-b"), or null when it is not one. */
export function parseRangeText(text: string): AddrRange | null {
  const dash = text.indexOf('-');
  const a = canonicalIp(dash < 0 ? text : text.slice(0, dash));
  const b = dash < 0 ? a : canonicalIp(text.slice(dash + 1));
  if (a === null || b === null || ipFamily(a) !== ipFamily(b)) return null;
  const start = ipToBigInt(a);
  const end = ipToBigInt(b);
  return start <= end ? { family: ipFamily(a), start, end } : null;
}

/**
 * The fewest prefixes whose union is exactly `r`, in order (at most 2 x address bits of them),
 * as [network address, prefix length].
 */
export function rangePrefixes(r: AddrRange): [string, number][] {
  const width = bits(r.family);
  const out: [string, number][] = [];
  let start = r.start;
  while (start <= r.end) {
    // The largest block that starts at `start` (alignment) and does not pass the end.
    let host = 0n;
    while (
      host < width &&
      (start & ((1n << (host + 1n)) - 1n)) === 0n &&
      start + (1n << (host + 1n)) - 1n <= r.end
    )
      host++;
    out.push([bigIntToIp(start, r.family), Number(width - host)]);
    start += 1n << host;
  }
  return out;
}
