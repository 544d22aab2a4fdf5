/**
 * Governed sources as address ranges (pure). A source is a single address (Kubernetes: one per
 * pod) or a CIDR (gateway: the groups of the config file). Groups may nest, and identity resolves
 * an address to the group with the longest prefix containing it (src/identity/static-groups.ts),
 * so the datapath resolves the same way: the prefixes are cut into disjoint ranges, and each range
 * belongs to the most specific prefix covering it and takes that prefix's mode. A /24 Enforce
 * group with a /32 Audit host inside becomes two Enforce ranges around one Audit address, and the
 * /24's CIDR allows and verify ports are written for the /24's two ranges only.
 *
 * A prefix that identity knows but no policy governs still owns its range (it is carved out of a
 * governed prefix around it) but yields no governed range: its addresses are not governed at all.
 * Its ranges are the known ungoverned ones (`ungovernedRanges`), which pass untouched when the
 * datapath governs unknown addresses of the source CIDRs.
 */
import { parseCidr } from '../core/ip.ts';
import type { Mode } from '../core/mode.ts';
import { type AddrRange, addressRange, cidrRange, mergeRanges, rangeContains } from './ip-range.ts';

export interface SourcePrefix {
  /** Canonical text: the bare address for a host prefix (/32, /128), else the CIDR text. */
  readonly text: string;
  readonly range: AddrRange;
  readonly prefix: number;
}

/** An address or a CIDR (host bits zero); a string is the reason it is neither. */
export function parseSource(text: string): SourcePrefix | string {
  if (typeof text !== 'string' || text.length > 64) return 'not an address or CIDR';
  const c = parseCidr(text);
  if (typeof c === 'string') return c;
  const host = c.prefix === (c.family === 4 ? 32 : 128);
  return {
    text: host ? c.address : c.text,
    range: host ? addressRange(c.address) : cidrRange(c),
    prefix: c.prefix,
  };
}

/** Does `source` (an address or CIDR text) contain the address `ip`? False for malformed input. */
export function sourceCovers(source: string, ip: string): boolean {
  const s = parseSource(source);
  const a = parseSource(ip);
  return typeof s !== 'string' && typeof a !== 'string' && rangeContains(s.range, a.range);
}

/** A prefix and what it is: governed in a mode, or known but ungoverned (null). */
export interface SourceClaim {
  readonly prefix: SourcePrefix;
  readonly mode: Mode | null;
}

/** A maximal range owned by one governed prefix. */
export interface OwnedRange {
  readonly range: AddrRange;
  /** The owning prefix's canonical text. */
  readonly owner: string;
  readonly mode: Mode;
}

const RANK: Record<string, number> = { Enforce: 2, Audit: 1 };

function rank(m: Mode | null): number {
  return m === null ? 0 : (RANK[m] ?? 0);
}

/**
 * Longest-prefix resolution: the governed prefixes' addresses as disjoint ranges, each with the
 * prefix that owns it (the most specific one covering it). The same prefix claimed twice keeps the
 * stricter claim: Enforce over Audit over ungoverned (fail closed). Sorted by family and address.
 */
export function ownedRanges(claims: readonly SourceClaim[]): OwnedRange[] {
  return resolveRanges(claims).filter((o): o is OwnedRange => o.mode !== null);
}

/** The addresses owned by known prefixes that no policy governs, touching ranges joined. */
export function ungovernedRanges(claims: readonly SourceClaim[]): AddrRange[] {
  const pick = resolveRanges(claims)
    .filter((o) => o.mode === null)
    .map((o) => o.range);
  return [
    ...mergeRanges(pick.filter((r) => r.family === 4)),
    ...mergeRanges(pick.filter((r) => r.family === 6)),
  ];
}

/**
 * Every claimed address as disjoint ranges with the owning prefix and its claim (null: known,
 * ungoverned). O(n log n): prefixes either nest or are disjoint, so one pass over them sorted by
 * start (outer first) with a stack of the enclosing prefixes finds every gap between children.
 */
function resolveRanges(
  claims: readonly SourceClaim[],
): { range: AddrRange; owner: string; mode: Mode | null }[] {
  const byText = new Map<string, SourceClaim>();
  for (const c of claims) {
    const prior = byText.get(c.prefix.text);
    if (!prior || rank(c.mode) > rank(prior.mode)) byText.set(c.prefix.text, c);
  }
  const sorted = [...byText.values()].sort((a, b) => {
    const x = a.prefix.range;
    const y = b.prefix.range;
    if (x.family !== y.family) return x.family - y.family;
    if (x.start !== y.start) return x.start < y.start ? -1 : 1;
    return x.end > y.end ? -1 : x.end < y.end ? 1 : 0;
  });
  const out: { range: AddrRange; owner: string; mode: Mode | null }[] = [];
  const emit = (c: SourceClaim, start: bigint, end: bigint) => {
    if (start <= end)
      out.push({ range: { family: c.prefix.range.family, start, end }, owner: c.prefix.text, mode: c.mode });
  };
  const stack: { claim: SourceClaim; cursor: bigint }[] = [];
  const close = () => {
    const top = stack.pop();
    if (top) emit(top.claim, top.cursor, top.claim.prefix.range.end);
  };
  for (const c of sorted) {
    const r = c.prefix.range;
    for (;;) {
      const top = stack.at(-1);
      if (!top || (top.claim.prefix.range.family === r.family && top.claim.prefix.range.end >= r.start))
        break;
      close();
    }
    const parent = stack.at(-1);
    if (parent) {
      emit(parent.claim, parent.cursor, r.start - 1n);
      parent.cursor = r.end + 1n;
    }
    stack.push({ claim: c, cursor: r.start });
  }
  while (stack.length > 0) close();
  return out.sort((a, b) =>
    a.range.family !== b.range.family
      ? a.range.family - b.range.family
      : a.range.start < b.range.start
        ? -1
        : a.range.start > b.range.start
          ? 1
          : 0,
  );
}

/** The owned ranges of one mode, touching ranges joined (fewest set elements). */
export function modeRanges(owned: readonly OwnedRange[], mode: Mode): AddrRange[] {
  const pick = owned.filter((o) => o.mode === mode).map((o) => o.range);
  return [
    ...mergeRanges(pick.filter((r) => r.family === 4)),
    ...mergeRanges(pick.filter((r) => r.family === 6)),
  ];
}
