/**
 * Pure: which `conntrack -D` commands end the DNS flows of newly governed sources (K8S-05), as
 * few as possible. Every `conntrack -D` walks the whole connection table (the hash table is
 * shared by all namespaces: 262,144 buckets here), so the cost is the number of commands, not
 * the number of entries: one per address made a first start with 1,000 pods take seconds. From
 * one listing of the port 53 entries, the sources to flush are covered by the fewest prefixes
 * that contain no source whose entries must stay; a first start usually needs one per family.
 */
import { bigIntToIp, ipToBigInt } from './ip-range.ts';

/** One listed conntrack entry to port 53: its family, protocol and original source. */
export interface DnsEntry {
  readonly family: 4 | 6;
  readonly protocol: 'udp' | 'tcp';
  readonly source: string;
}

/** A prefix as its first address and length. */
export interface Prefix {
  readonly start: bigint;
  readonly len: number;
}

function lowerBound(sorted: readonly bigint[], x: bigint, lo: number, hi: number): number {
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((sorted[mid] as bigint) < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * The fewest prefixes (of a `width`-bit family) that together contain every address of `hit`
 * and no address of `keep` (both sorted, unique, disjoint), each inside the smallest prefix that
 * holds all of `hit`. With `masks` false only single addresses are used (a conntrack without
 * `-s ADDR/LEN`).
 */
export function prefixCover(
  hit: readonly bigint[],
  keep: readonly bigint[],
  width: number,
  masks = true,
): Prefix[] {
  if (hit.length === 0) return [];
  if (!masks) return hit.map((start) => ({ start, len: width }));
  const first = hit[0] as bigint;
  const last = hit[hit.length - 1] as bigint;
  // The smallest prefix holding all of hit: its length is the common leading bits.
  let len = width;
  while (len > 0 && first >> BigInt(width - len) !== last >> BigInt(width - len)) len--;
  const start = len === 0 ? 0n : (first >> BigInt(width - len)) << BigInt(width - len);
  const out: Prefix[] = [];
  const walk = (start: bigint, len: number, h0: number, h1: number, k0: number, k1: number): void => {
    if (h0 >= h1) return;
    if (k0 >= k1 || len === width) {
      out.push({ start, len });
      return;
    }
    const mid = start + (1n << BigInt(width - len - 1));
    const hm = lowerBound(hit, mid, h0, h1);
    const km = lowerBound(keep, mid, k0, k1);
    walk(start, len + 1, h0, hm, k0, km);
    walk(mid, len + 1, hm, h1, km, k1);
  };
  const k0 = lowerBound(keep, start, 0, keep.length);
  const k1 = lowerBound(keep, start + (1n << BigInt(width - len)), k0, keep.length);
  walk(start, len, 0, hit.length, k0, k1);
  return out;
}

export function prefixText(p: Prefix, family: 4 | 6): string {
  const width = family === 4 ? 32 : 128;
  const address = bigIntToIp(p.start, family);
  return p.len === width ? address : `${address}/${p.len}`;
}

/**
 * The `conntrack -D` argument lists that end the listed port 53 entries whose source
 * `flush(source)` selects, and no other listed entry: per family and protocol, one per prefix
 * of the cover.
 */
export function dnsFlushCommands(
  entries: readonly DnsEntry[],
  flush: (e: DnsEntry) => boolean,
  masks: boolean,
): string[][] {
  const out: string[][] = [];
  for (const family of [4, 6] as const) {
    for (const protocol of ['udp', 'tcp'] as const) {
      const hit = new Set<bigint>();
      const keep = new Set<bigint>();
      for (const e of entries) {
        if (e.family !== family || e.protocol !== protocol) continue;
        (flush(e) ? hit : keep).add(ipToBigInt(e.source));
      }
      const sorted = (s: Set<bigint>) => [...s].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      for (const p of prefixCover(sorted(hit), sorted(keep), family === 4 ? 32 : 128, masks)) {
        out.push([
          '-D',
          '-f',
          family === 4 ? 'ipv4' : 'ipv6',
          '-s',
          prefixText(p, family),
          '-p',
          protocol,
          '--dport',
          '53',
        ]);
      }
    }
  }
  return out;
}
