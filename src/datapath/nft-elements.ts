/**
 * Element text (pure): what the driver writes into `add/delete element` commands, and the
 * canonical text of elements read back from the kernel, so that wanted and present compare as
 * strings. Static sets (sources, CIDR allows, verify ports) are derived from a StaticState here,
 * made disjoint first: an interval set rejects an element that partly overlaps another.
 * Sources, and the source field of CIDR allows and verify ports, are address ranges.
 */
import { ipFamily, parseCidr } from '../core/ip.ts';
import type { Protocol } from '../core/protocol.ts';
import type { StaticState } from './datapath.ts';
import { type AddrRange, cidrRange, mergeRanges, rangeText, subtractRanges } from './ip-range.ts';
import type { KernelElement, Part } from './nft-json.ts';
import { type Family, SOURCE_ROLES, setName } from './nft-ruleset.ts';
import {
  modeRanges,
  ownedRanges,
  parseSource,
  type SourceClaim,
  type SourcePrefix,
  ungovernedRanges,
} from './source-ranges.ts';

export function protoText(p: Protocol): 'tcp' | 'udp' {
  return p === 'TCP' ? 'tcp' : 'udp';
}

export function portText(from: number, to: number): string {
  return from === to ? String(from) : `${from}-${to}`;
}

export function partText(p: Part): string {
  switch (p.kind) {
    case 'addr':
      return rangeText(p.range);
    case 'proto':
      return String(p.proto);
    case 'port':
      return portText(p.from, p.to);
  }
}

/** Canonical text of an element read from the kernel (without timeout or counter, with its comment). */
export function kernelElementText(e: KernelElement): string {
  return withComment(e.parts.map(partText).join(' . '), e.comment);
}

/** A learned element's key fields with a port range. */
export interface LearnedRange {
  readonly source: string;
  readonly destination: string;
  readonly protocol: Protocol;
  readonly from: number;
  readonly to: number;
}

/** Which learned set holds an element: one port, every port, or a range (see learned-model.ts). */
export type LearnedKind = 'port' | 'all' | 'range';

const LEARNED_SET: Record<LearnedKind, 'allow' | 'allowall' | 'allowrange'> = {
  port: 'allow',
  all: 'allowall',
  range: 'allowrange',
};

export function learnedSetName(kind: LearnedKind, family: Family): string {
  return setName(LEARNED_SET[kind], family);
}

export function learnedText(kind: LearnedKind, e: LearnedRange): string {
  const head = `${e.source} . ${e.destination} . ${protoText(e.protocol)}`;
  return kind === 'all' ? head : `${head} . ${portText(e.from, e.to)}`;
}

/** An integer number of ms, at least 1: `timeout 0` would mean "never expires". */
export function timeoutText(ms: number): string {
  const n = Math.max(1, Math.ceil(ms));
  return `${n}ms`;
}

function elementCommand(
  verb: 'add' | 'delete',
  table: string,
  set: string,
  items: readonly string[],
): string {
  return `${verb} element inet ${table} ${set} { ${items.join(', ')} }`;
}

function bySet<T extends { readonly kind: LearnedKind; readonly e: LearnedRange }>(
  items: readonly T[],
  text: (item: T) => string,
): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const item of items) {
    const set = learnedSetName(item.kind, ipFamily(item.e.source));
    const list = out.get(set) ?? [];
    list.push(text(item));
    out.set(set, list);
  }
  return out;
}

/**
 * An element's life: `timeout` and an explicit `expires` of the same length. Re-adding an
 * element that is present with the same `timeout` leaves its expiry where it was (kernel 6.18:
 * only a changed timeout or an explicit `expires` resets it), so a repeated answer with the
 * same TTL would not extend it; `expires` always restarts the clock.
 */
export function lifeText(ms: number): string {
  const t = timeoutText(ms);
  return `timeout ${t} expires ${t}`;
}

/** Commands that add (or refresh) learned elements, one command per set. */
export function addLearnedCommands(
  table: string,
  items: readonly { readonly kind: LearnedKind; readonly e: LearnedRange; readonly timeoutMs: number }[],
): string[] {
  const sets = bySet(items, (i) => `${learnedText(i.kind, i.e)} ${lifeText(i.timeoutMs)}`);
  return [...sets].map(([set, list]) => elementCommand('add', table, set, list));
}

/**
 * Commands that remove learned elements whether or not the kernel still holds them: `delete`
 * of a missing element fails the whole transaction (nft 1.0.6 has no `destroy`), so each is
 * first added with a short timeout (a no-op refresh when present) and then deleted.
 */
export function removeLearnedCommands(
  table: string,
  items: readonly { readonly kind: LearnedKind; readonly e: LearnedRange }[],
): string[] {
  const out: string[] = [];
  for (const [set, list] of bySet(items, (i) => learnedText(i.kind, i.e))) {
    out.push(
      elementCommand(
        'add',
        table,
        set,
        list.map((t) => `${t} timeout 1s`),
      ),
      elementCommand('delete', table, set, list),
    );
  }
  return out;
}

/** Add or delete static elements (already canonical text). */
export function staticElementCommands(
  verb: 'add' | 'delete',
  table: string,
  set: string,
  items: readonly string[],
): string[] {
  const out: string[] = [];
  // `delete element` takes the key alone; a comment would not match.
  const list = verb === 'delete' ? items.map(elementKeyText) : items;
  // Bounded command size; all commands still go in one transaction.
  for (let i = 0; i < list.length; i += 4096)
    out.push(elementCommand(verb, table, set, list.slice(i, i + 4096)));
  return out;
}

export class StaticStateError extends Error {}

/** The sets a StaticState fills (per family). */
export const STATIC_ROLES = [
  'enforce',
  'audit',
  'drops',
  'enforcenet',
  'auditnet',
  'dropsnet',
  'cidr',
  'verify',
  'ungoverned',
  'ungovernednet',
] as const;

/** Canonical element texts per static set name, derived from the state. */
export type StaticElements = Map<string, Set<string>>;

interface Box {
  readonly dst: AddrRange;
  readonly from: number;
  readonly to: number;
}

/**
 * Disjoint boxes (destination range x port range) covering the union of `boxes`: the port axis
 * is cut at every boundary, each slice takes the merged destinations covering it, and
 * neighbouring slices with the same destinations join again.
 */
export function disjointBoxes(boxes: readonly Box[]): Box[] {
  const cuts = [...new Set(boxes.flatMap((b) => [b.from, b.to + 1]))].sort((a, b) => a - b);
  const slices: { from: number; to: number; dsts: AddrRange[]; sig: string }[] = [];
  for (let i = 0; i + 1 < cuts.length; i++) {
    const from = cuts[i] as number;
    const to = (cuts[i + 1] as number) - 1;
    const dsts = mergeRanges(boxes.filter((b) => b.from <= from && b.to >= to).map((b) => b.dst));
    if (dsts.length === 0) continue;
    const sig = dsts.map((d) => `${d.start}-${d.end}`).join(',');
    const last = slices.at(-1);
    if (last && last.to + 1 === from && last.sig === sig) last.to = to;
    else slices.push({ from, to, dsts, sig });
  }
  return slices.flatMap((s) => s.dsts.map((dst) => ({ dst, from: s.from, to: s.to })));
}

/** Merged port ranges (sorted, disjoint, touching ranges joined). */
export function mergePorts(ranges: readonly { from: number; to: number }[]): { from: number; to: number }[] {
  const sorted = [...ranges].sort((a, b) => a.from - b.from);
  const out: { from: number; to: number }[] = [];
  for (const r of sorted) {
    const last = out.at(-1);
    if (last && r.from <= last.to + 1) last.to = Math.max(last.to, r.to);
    else out.push({ from: r.from, to: r.to });
  }
  return out;
}

function checkPorts(from: number, to: number, what: string): void {
  if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to > 65535 || from > to)
    throw new StaticStateError(`${what}: port range ${from}-${to} is not within 0..65535`);
}

function source(text: string, what: string): SourcePrefix {
  const p = parseSource(text);
  if (typeof p === 'string') throw new StaticStateError(`${what}: ${JSON.stringify(text)}: ${p}`);
  return p;
}

/** Static element text with an element comment (only the drop counters carry one). */
export function withComment(key: string, comment: string | null): string {
  return comment === null ? key : `${key} comment "${comment}"`;
}

/** The key of a static element text (what `delete element` takes): without its comment. */
export function elementKeyText(text: string): string {
  const i = text.indexOf(' comment "');
  return i < 0 ? text : text.slice(0, i);
}

/** The comment of a drop-counter element: the owning source and its mode. */
export function dropComment(mode: 'Enforce' | 'Audit', owner: string): string {
  return `${mode} ${owner}`;
}

export function parseDropComment(
  comment: string | null,
): { mode: 'Enforce' | 'Audit'; owner: string } | null {
  const m = comment === null ? null : /^(Enforce|Audit) (\S{1,64})$/.exec(comment);
  return m ? { mode: m[1] as 'Enforce' | 'Audit', owner: m[2] as string } : null;
}

/** Beyond this many elements a concatenated interval (pipapo) set is logged as large. */
export const PIPAPO_LARGE = 4096;

/**
 * The wanted elements of every static set. Sources are addresses or CIDRs, resolved by longest
 * prefix (source-ranges.ts): `enforce`/`audit` hold the disjoint ranges by mode, `drops` one
 * element per owned range (its comment names the owner and mode, so the counters can be told
 * apart after a restart), and a source's CIDR allows and verify ports are written for the
 * ranges that source owns only. Single addresses and wider ranges go to different sets
 * (`enforce` / `enforcenet`, ...: see nft-ruleset.ts). A prefix listed as both Enforce and Audit is Enforce (fail
 * closed). Throws StaticStateError for malformed input.
 */
export function staticElements(state: StaticState): StaticElements {
  const out: StaticElements = new Map();
  type StaticRole =
    | 'enforce'
    | 'audit'
    | 'drops'
    | 'enforcenet'
    | 'auditnet'
    | 'dropsnet'
    | 'cidr'
    | 'verify'
    | 'ungoverned'
    | 'ungovernednet';
  const add = (role: StaticRole, f: Family, text: string) => {
    const name = setName(role, f);
    const set = out.get(name) ?? new Set<string>();
    set.add(text);
    out.set(name, set);
  };
  for (const f of [4, 6] as const) {
    for (const role of STATIC_ROLES) out.set(setName(role, f), new Set());
  }
  const claims: SourceClaim[] = [];
  for (const s of state.sources) {
    const p = source(s.ip, 'source');
    if (s.mode !== 'Enforce' && s.mode !== 'Audit')
      throw new StaticStateError(`source ${p.text}: mode ${s.mode}`);
    claims.push({ prefix: p, mode: s.mode });
  }
  for (const u of state.ungoverned ?? []) claims.push({ prefix: source(u, 'ungoverned source'), mode: null });
  const owned = ownedRanges(claims);
  const ownedBy = new Map<string, AddrRange[]>();
  for (const o of owned) {
    const list = ownedBy.get(o.owner) ?? [];
    list.push(o.range);
    ownedBy.set(o.owner, list);
    const role = o.range.start === o.range.end ? 'drops' : 'dropsnet';
    add(role, o.range.family, withComment(rangeText(o.range), dropComment(o.mode, o.owner)));
  }
  // A single address goes to the hash set, a wider range to the interval set (nft-ruleset.ts).
  for (const mode of ['Enforce', 'Audit'] as const) {
    const [single, net] = SOURCE_ROLES[mode];
    for (const r of modeRanges(owned, mode)) add(r.start === r.end ? single : net, r.family, rangeText(r));
  }
  // Known sources no policy selects: untouched even where source CIDRs govern unknown ones.
  for (const r of ungovernedRanges(claims))
    add(r.start === r.end ? 'ungoverned' : 'ungovernednet', r.family, rangeText(r));

  // CIDR allows: per (source, protocol), made disjoint, then written for each owned range.
  const cidrGroups = new Map<string, { source: string; family: Family; proto: Protocol; boxes: Box[] }>();
  for (const c of state.cidrs) {
    const src = source(c.source, 'cidr source');
    const what = `cidr ${c.cidr.text} for ${src.text}`;
    if (c.cidr.family !== src.range.family)
      throw new StaticStateError(`${what}: family differs from the source`);
    if (c.protocol !== 'TCP' && c.protocol !== 'UDP')
      throw new StaticStateError(`${what}: protocol ${c.protocol}`);
    checkPorts(c.portFrom, c.portTo, what);
    const key = `${src.text}|${c.protocol}`;
    const g = cidrGroups.get(key) ?? {
      source: src.text,
      family: src.range.family,
      proto: c.protocol,
      boxes: [],
    };
    for (const dst of subtractRanges(cidrRange(c.cidr), c.except.map(cidrRange))) {
      g.boxes.push({ dst, from: c.portFrom, to: c.portTo });
    }
    cidrGroups.set(key, g);
  }
  for (const g of cidrGroups.values()) {
    const ranges = ownedBy.get(g.source) ?? [];
    for (const b of disjointBoxes(g.boxes)) {
      for (const r of ranges) {
        add(
          'cidr',
          g.family,
          `${rangeText(r)} . ${rangeText(b.dst)} . ${protoText(g.proto)} . ${portText(b.from, b.to)}`,
        );
      }
    }
  }

  const verifyGroups = new Map<string, { family: Family; ports: { from: number; to: number }[] }>();
  for (const v of state.verify) {
    const src = source(v.source, 'verify source');
    if (v.protocol !== 'TCP')
      throw new StaticStateError(`verify for ${src.text}: protocol ${v.protocol} is not TCP`);
    checkPorts(v.portFrom, v.portTo, `verify for ${src.text}`);
    const g = verifyGroups.get(src.text) ?? { family: src.range.family, ports: [] };
    g.ports.push({ from: v.portFrom, to: v.portTo });
    verifyGroups.set(src.text, g);
  }
  for (const [src, g] of verifyGroups) {
    for (const r of ownedBy.get(src) ?? []) {
      for (const p of mergePorts(g.ports))
        add('verify', g.family, `${rangeText(r)} . ${portText(p.from, p.to)}`);
    }
  }
  return out;
}

/**
 * The wanted elements of the `internal` sets from the configured CIDRs (canonical, validated by
 * resolveNftConfig): merged per family, since an interval set rejects overlapping elements.
 */
export function internalElements(cidrs: readonly string[]): StaticElements {
  return prefixElements('internal', cidrs);
}

/** The wanted elements of the `scope` sets from config.sourceCidrs, as internalElements. */
export function scopeElements(cidrs: readonly string[]): StaticElements {
  return prefixElements('scope', cidrs);
}

function prefixElements(role: 'internal' | 'scope', cidrs: readonly string[]): StaticElements {
  const out: StaticElements = new Map();
  for (const f of [4, 6] as const) {
    const ranges: AddrRange[] = [];
    for (const text of cidrs) {
      const c = parseCidr(text);
      if (typeof c === 'string') throw new StaticStateError(`${role} ${JSON.stringify(text)}: ${c}`);
      if (c.family === f) ranges.push(cidrRange(c));
    }
    out.set(setName(role, f), new Set(mergeRanges(ranges).map(rangeText)));
  }
  return out;
}

/** Set difference both ways. */
export function diffTexts(
  wanted: ReadonlySet<string>,
  present: ReadonlySet<string>,
): { add: string[]; remove: string[] } {
  const add: string[] = [];
  const remove: string[] = [];
  for (const w of wanted) if (!present.has(w)) add.push(w);
  for (const p of present) if (!wanted.has(p)) remove.push(p);
  return { add: add.sort(), remove: remove.sort() };
}

/** The single address of a source-set element text, for counters and conntrack. */
export function singleAddress(range: AddrRange): string | null {
  return range.start === range.end ? rangeText(range) : null;
}
