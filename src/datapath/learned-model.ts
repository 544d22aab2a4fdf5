/**
 * What the learned-allow sets hold, kept in memory so that every commit is a small difference.
 *
 * Learned elements go to three sets by shape (see nft-ruleset.ts): a single port -> `allow`
 * (hash), every port -> `allowall` (hash), any other range -> `allowrange` (interval). The
 * interval set rejects an element that partly overlaps another (EEXIST) - e.g. 400-500 after
 * 450-600 for the same source, destination and protocol, which two rules may well produce. So
 * per key (source, destination, protocol) the model keeps the grants callers asked for (shape,
 * port range, expiry) and derives the kernel's elements: single-port and all-port grants map
 * one to one; range grants are cut into disjoint segments at every boundary, each living as
 * long as the longest range covering it. The kernel holds exactly the derived elements.
 *
 * Time: expiries are monotonic ms from the Clock, stamped when the batch is prepared (slightly
 * before the kernel stamps its own), so the model never believes an element lives longer than it
 * does. A segment that may still linger in the kernel (until `ghostMs` after its expiry) is
 * removed with add-then-delete before anything overlapping is added.
 *
 * Refresh never shortens: a grant's expiry only grows, and an element is re-sent only when its
 * expiry grows. forget() removes grants and reports the port ranges no longer allowed at all,
 * for the conntrack deletion.
 */
import type { Protocol } from '../core/protocol.ts';
import type { LearnedRange } from './nft-elements.ts';

/** Which learned set an element lives in. */
export type ElementKind = 'port' | 'all' | 'range';

export function kindOf(from: number, to: number): ElementKind {
  if (from === to) return 'port';
  return from === 0 && to === 65535 ? 'all' : 'range';
}

interface Grant {
  kind: ElementKind;
  from: number;
  to: number;
  expiresAt: number;
  /** Read back from the kernel after a restart: a segment, not necessarily a caller's range. */
  restored: boolean;
}

export interface Segment {
  readonly kind: ElementKind;
  readonly from: number;
  readonly to: number;
  readonly expiresAt: number;
}

interface KeyState {
  /** Set to the store's own map keys when stored (one string per source, not per element). */
  source: string;
  destination: string;
  readonly protocol: Protocol;
  grants: Grant[];
  /** What the kernel holds (or may still hold) for this key. */
  segments: Segment[];
}

export interface TimedRange {
  readonly e: LearnedRange;
  readonly timeoutMs: number;
}

/** An element of one of the learned sets. */
export interface KindedRange {
  readonly kind: ElementKind;
  readonly e: LearnedRange;
}

export interface TimedKindedRange extends KindedRange {
  readonly timeoutMs: number;
}

export interface ModelChanges {
  /** Elements to add or refresh, with the timeout to send. */
  readonly adds: readonly TimedKindedRange[];
  /** Elements that may be present and must go (add-then-delete). */
  readonly removes: readonly KindedRange[];
  /** Port ranges no longer allowed by any grant (from forget): their flows must end. */
  readonly revoked: readonly LearnedRange[];
}

function keyOf(source: string, destination: string, protocol: Protocol): string {
  return `${source}|${destination}|${protocol}`;
}

/**
 * Key states by protocol, source and destination. Nested maps rather than one map keyed by a
 * joined string: the model holds an entry per learned element for its whole life, and a key
 * string per element (plus its concatenation pieces) was most of the ~650 bytes an element
 * cost; at 10,000 elements/s those survivors set the young-generation GC pauses.
 */
class KeyStore {
  readonly #tables = {
    TCP: new Map<string, Map<string, KeyState>>(),
    UDP: new Map<string, Map<string, KeyState>>(),
  };

  get(source: string, destination: string, protocol: Protocol): KeyState | undefined {
    return this.#tables[protocol].get(source)?.get(destination);
  }

  set(s: KeyState): void {
    const table = this.#tables[s.protocol];
    let inner = table.get(s.source);
    if (!inner) {
      inner = new Map();
      table.set(s.source, inner);
    } else {
      // One source string for all of its elements (callers pass a new string each time).
      const first = inner.values().next().value;
      if (first) s.source = first.source;
    }
    inner.set(s.destination, s);
  }

  delete(source: string, destination: string, protocol: Protocol): void {
    const table = this.#tables[protocol];
    const inner = table.get(source);
    if (!inner) return;
    inner.delete(destination);
    if (inner.size === 0) table.delete(source);
  }

  /** Visit every state; `keep` false removes it (deleting from a Map while iterating is safe). */
  sweep(keep: (s: KeyState) => boolean): number {
    let removed = 0;
    for (const table of [this.#tables.TCP, this.#tables.UDP]) {
      for (const [source, inner] of table) {
        for (const [destination, s] of inner) {
          if (keep(s)) continue;
          inner.delete(destination);
          removed++;
        }
        if (inner.size === 0) table.delete(source);
      }
    }
    return removed;
  }

  *values(): IterableIterator<KeyState> {
    for (const table of [this.#tables.TCP, this.#tables.UDP]) {
      for (const inner of table.values()) yield* inner.values();
    }
  }

  clear(): void {
    this.#tables.TCP.clear();
    this.#tables.UDP.clear();
  }
}

/**
 * Keep the items of `list` that expire after `cutoff`, in place (states are never shared: a
 * transaction works on a clone); returns how many went.
 */
function keepLive(list: { readonly expiresAt: number }[], cutoff: number): number {
  let kept = 0;
  for (let i = 0; i < list.length; i++) {
    const item = list[i] as { readonly expiresAt: number };
    if (item.expiresAt > cutoff) list[kept++] = item;
  }
  const removed = list.length - kept;
  list.length = kept;
  return removed;
}

function cloneState(s: KeyState): KeyState {
  return { ...s, grants: s.grants.map((g) => ({ ...g })), segments: s.segments.slice() };
}

/**
 * The kernel elements of the live grants: single-port and all-port grants as they are; range
 * grants as disjoint pieces, each with the longest covering expiry.
 */
export function deriveSegments(
  grants: readonly { kind: ElementKind; from: number; to: number; expiresAt: number }[],
  now: number,
): Segment[] {
  const live = grants.filter((g) => g.expiresAt > now);
  const out: Segment[] = [];
  for (const g of live) {
    if (g.kind !== 'range') out.push({ kind: g.kind, from: g.from, to: g.to, expiresAt: g.expiresAt });
  }
  const ranges = live.filter((g) => g.kind === 'range');
  const cuts = [...new Set(ranges.flatMap((g) => [g.from, g.to + 1]))].sort((a, b) => a - b);
  for (let i = 0; i + 1 < cuts.length; i++) {
    const from = cuts[i] as number;
    const to = (cuts[i + 1] as number) - 1;
    let expiresAt = Number.NEGATIVE_INFINITY;
    for (const g of ranges) {
      if (g.from <= from && g.to >= to && g.expiresAt > expiresAt) expiresAt = g.expiresAt;
    }
    if (expiresAt > now) out.push({ kind: 'range', from, to, expiresAt });
  }
  // An array grown by push keeps spare capacity (17 slots for one element); the model holds one
  // of these per key for the element's whole life, so keep it exact (GC pauses, memory).
  return out.slice();
}

type Shape = { readonly kind: ElementKind; readonly from: number; readonly to: number };

function same(a: Shape, b: Shape): boolean {
  return a.kind === b.kind && a.from === b.from && a.to === b.to;
}

/** Port ranges of [from, to] not covered by any of `cover`. */
export function uncovered(
  from: number,
  to: number,
  cover: readonly { from: number; to: number }[],
): { from: number; to: number }[] {
  let pieces = [{ from, to }];
  for (const c of cover) {
    const next: { from: number; to: number }[] = [];
    for (const p of pieces) {
      if (c.to < p.from || c.from > p.to) next.push(p);
      else {
        if (c.from > p.from) next.push({ from: p.from, to: c.from - 1 });
        if (c.to < p.to) next.push({ from: c.to + 1, to: p.to });
      }
    }
    pieces = next;
  }
  return pieces;
}

export class LearnedModel {
  readonly #keys = new KeyStore();
  readonly #ghostMs: number;
  #segments = 0;

  constructor(ghostMs = 2_000) {
    this.#ghostMs = ghostMs;
  }

  /** Segments the kernel may hold (including ones that expired within the ghost window). */
  get size(): number {
    return this.#segments;
  }

  clear(): void {
    this.#keys.clear();
    this.#segments = 0;
  }

  /** Forget everything of one family (its set was recreated). */
  clearFamily(family: 4 | 6): void {
    for (const s of [...this.#keys.values()]) {
      if (s.source.includes(':') === (family === 6)) {
        this.#segments -= s.segments.length;
        this.#keys.delete(s.source, s.destination, s.protocol);
      }
    }
  }

  /** Elements read from the kernel after a restart; `remainingMs` from nft's `expires`. */
  load(
    elements: readonly (LearnedRange & { readonly kind: ElementKind; readonly remainingMs: number })[],
    now: number,
  ): void {
    for (const e of elements) {
      const s = this.#keys.get(e.source, e.destination, e.protocol) ?? {
        source: e.source,
        destination: e.destination,
        protocol: e.protocol,
        grants: [],
        segments: [],
      };
      const expiresAt = now + e.remainingMs;
      s.grants.push({ kind: e.kind, from: e.from, to: e.to, expiresAt, restored: true });
      s.segments.push({ kind: e.kind, from: e.from, to: e.to, expiresAt });
      this.#segments++;
      this.#keys.set(s);
    }
  }

  /** Drop keys whose every segment is past the ghost window; returns how many went. */
  prune(now: number): number {
    // In place, allocating nothing: with 100,000s of keys, copying every key and both arrays of
    // each (as this once did) took about a second of the event loop and fed the GC.
    const ghostCutoff = now - this.#ghostMs;
    return this.#keys.sweep((s) => {
      this.#segments -= keepLive(s.segments, ghostCutoff);
      keepLive(s.grants, now);
      return s.segments.length > 0 || s.grants.length > 0;
    });
  }

  /**
   * Live grants as callers gave them to learn() (after a restart: the restored kernel
   * elements), so a caller can diff what it wants against what it asked for.
   */
  grants(now: number): (LearnedRange & { readonly remainingMs: number })[] {
    const out: (LearnedRange & { remainingMs: number })[] = [];
    for (const s of this.#keys.values()) {
      for (const g of s.grants) {
        if (g.expiresAt > now) {
          out.push({
            source: s.source,
            destination: s.destination,
            protocol: s.protocol,
            from: g.from,
            to: g.to,
            remainingMs: g.expiresAt - now,
          });
        }
      }
    }
    return out;
  }

  /** Live segments as elements (for tests and status). */
  elements(now: number): (LearnedRange & { readonly kind: ElementKind; readonly remainingMs: number })[] {
    const out: (LearnedRange & { kind: ElementKind; remainingMs: number })[] = [];
    for (const s of this.#keys.values()) {
      for (const g of s.segments) {
        if (g.expiresAt > now) {
          out.push({
            source: s.source,
            destination: s.destination,
            protocol: s.protocol,
            kind: g.kind,
            from: g.from,
            to: g.to,
            remainingMs: g.expiresAt - now,
          });
        }
      }
    }
    return out;
  }

  begin(now: number): ModelTxn {
    return new ModelTxn(this, now);
  }

  /** @internal used by ModelTxn */
  _get(source: string, destination: string, protocol: Protocol): KeyState | undefined {
    return this.#keys.get(source, destination, protocol);
  }

  /** @internal `s` replaces the key's state; `keep` false removes the key. */
  _set(s: KeyState, keep: boolean): void {
    const old = this.#keys.get(s.source, s.destination, s.protocol);
    this.#segments -= old ? old.segments.length : 0;
    if (!keep) this.#keys.delete(s.source, s.destination, s.protocol);
    else {
      this.#keys.set(s);
      this.#segments += s.segments.length;
    }
  }

  get ghostMs(): number {
    return this.#ghostMs;
  }
}

/**
 * Changes to the model for one transaction; `changes()` gives the commands' content, then
 * `commit()` keeps the new state or `rollback()` restores the old one.
 */
export class ModelTxn {
  readonly #model: LearnedModel;
  readonly #now: number;
  readonly #working = new Map<string, KeyState>();
  readonly #revoked: LearnedRange[] = [];
  #done = false;

  constructor(model: LearnedModel, now: number) {
    this.#model = model;
    this.#now = now;
  }

  #state(source: string, destination: string, protocol: Protocol): KeyState {
    const k = keyOf(source, destination, protocol);
    let s = this.#working.get(k);
    if (!s) {
      // Work on a copy: the model itself changes only on commit, so rollback is a no-op.
      const orig = this.#model._get(source, destination, protocol);
      s = orig ? cloneState(orig) : { source, destination, protocol, grants: [], segments: [] };
      this.#working.set(k, s);
    }
    return s;
  }

  /** Grant a port range until now + timeoutMs (timeout already clamped by the caller). */
  learn(e: LearnedRange, timeoutMs: number): void {
    const s = this.#state(e.source, e.destination, e.protocol);
    const expiresAt = this.#now + timeoutMs;
    const kind = kindOf(e.from, e.to);
    const g = s.grants.find((x) => same(x, { kind, from: e.from, to: e.to }));
    if (g) {
      g.expiresAt = Math.max(g.expiresAt, expiresAt);
      g.restored = false;
    } else {
      s.grants = s.grants.concat({ kind, from: e.from, to: e.to, expiresAt, restored: false });
    }
  }

  /**
   * Withdraw the grant of exactly this range; after a restart (restored segments) every
   * restored piece inside the range goes too.
   */
  forget(e: LearnedRange): void {
    const s = this.#state(e.source, e.destination, e.protocol);
    const kind = kindOf(e.from, e.to);
    s.grants = s.grants.filter(
      (g) => !(same(g, { kind, from: e.from, to: e.to }) || (g.restored && g.from >= e.from && g.to <= e.to)),
    );
    const live = s.grants.filter((g) => g.expiresAt > this.#now);
    for (const r of uncovered(e.from, e.to, live)) {
      this.#revoked.push({ source: e.source, destination: e.destination, protocol: e.protocol, ...r });
    }
  }

  changes(): ModelChanges {
    const adds: TimedKindedRange[] = [];
    const removes: KindedRange[] = [];
    const now = this.#now;
    for (const s of this.#working.values()) {
      const wanted = deriveSegments(s.grants, now);
      const old = s.segments.filter((g) => g.expiresAt > now - this.#model.ghostMs);
      const base = { source: s.source, destination: s.destination, protocol: s.protocol };
      // Removals first in the transaction (the caller keeps this order): an interval element
      // must be gone before an overlapping one is added.
      for (const o of old) {
        if (!wanted.some((w) => same(w, o)))
          removes.push({ kind: o.kind, e: { ...base, from: o.from, to: o.to } });
      }
      for (const w of wanted) {
        const o = old.find((x) => same(x, w));
        if (!o || w.expiresAt > o.expiresAt) {
          adds.push({ kind: w.kind, e: { ...base, from: w.from, to: w.to }, timeoutMs: w.expiresAt - now });
        }
      }
      s.segments = wanted;
    }
    return { adds, removes, revoked: this.#revoked };
  }

  commit(): void {
    if (this.#done) return;
    this.#done = true;
    for (const s of this.#working.values()) {
      this.#model._set(s, s.grants.length > 0 || s.segments.length > 0);
    }
  }

  rollback(): void {
    this.#done = true;
  }
}
