/**
 * The fast matcher: a hash of suffixes. Every pattern is filed under its fixed part (the whole
 * name for an exact pattern, `example.com` for `*.example.com` and `**.example.com`), and a
 * lookup reads the name once from right to left, hashing as it goes: at each dot the hash of the
 * suffix behind it is complete and is looked up. The cost is linear in the name's length and
 * does not grow with the number of patterns. A fixed part keeps the values of the patterns
 * filed under it:
 *
 *   exact   the name is the fixed part         (api.example.com)
 *   one     exactly one more label in front    (*.example.com)
 *   any     one or more labels in front        (**.example.com)
 *   globs   Cilium-style label globs, checked label by label against what is in front
 *
 * Sealed, the index is two hash tables in typed arrays: one of exact names (asked once, with
 * the whole name) and one of the fixed parts of wildcards (asked at every dot). A slot carries
 * a fingerprint of its key's hash, so most absent suffixes are ruled out by one small read, and
 * keys and value ids live in one record per key, so a lookup reads a few compact arrays instead
 * of chasing objects across the heap: at 100,000 patterns that is what keeps a decision within
 * a few cache misses. A hash match is always confirmed by comparing the bytes, so a collision
 * can cost a comparison but never a wrong answer. No regular expression is involved, so no
 * input can make matching backtrack.
 */
import type { CanonicalName } from '../core/names.ts';
import { type FqdnPattern, globMatchesLabel } from './pattern.ts';

interface GlobTail<T> {
  readonly globs: readonly string[];
  readonly anyDepthPrefix: boolean;
  readonly value: T;
}

/**
 * Patterns filed under one fixed part, while the index is being built. Lists start as the
 * shared empty list and get their own array on the first value: most fixed parts use one kind.
 */
interface Bucket<T> {
  readonly key: string;
  exact: readonly T[];
  one: readonly T[];
  any: readonly T[];
  globs: readonly GlobTail<T>[];
}

const NONE: readonly never[] = Object.freeze([]);

function appended<V>(list: readonly V[], value: V): readonly V[] {
  if (list === NONE) return [value];
  (list as V[]).push(value);
  return list;
}

/**
 * One hash table. `records` holds a record per key: [key length, a, b, c, d, key bytes (ASCII,
 * padded to 4), value ids]; a..d are offsets into `records` (exact: ids from a to b; proper:
 * one from a to b, any from b to c, d = glob list + 1 or 0). `bytes` views the same buffer.
 */
interface Table {
  /**
   * Slot i: 0 when empty, else (fingerprint << 24) | (record offset + 1), the fingerprint being
   * 8 more bits of the key's hash. Reading a slot rules out almost every absent key without
   * touching its record, and at 4 bytes a slot the table stays small enough for the cache.
   */
  readonly slots: Int32Array;
  readonly mask: number;
  /**
   * Records beyond what 24 bits address (over 64 MB, far past any real policy set): slots then
   * hold the plain offset + 1 and every candidate is compared by its bytes.
   */
  readonly wide: boolean;
  readonly records: Int32Array;
  readonly bytes: Uint8Array;
  /**
   * The fewest and most labels of any key: a suffix (or name) with a label count outside them
   * cannot be a key, so it is not looked up (for most policy sets: the TLD, and the front labels
   * of deep names).
   */
  readonly minLabels: number;
  readonly maxLabels: number;
}

interface Sealed<T> {
  readonly exact: Table;
  readonly proper: Table;
  /** The distinct values; records hold indices into it. */
  readonly values: readonly T[];
  readonly globs: ReadonlyArray<readonly GlobTail<T>[]>;
  /** The bucket of the empty fixed part (`*`, `**`, globs with nothing behind them), if any. */
  readonly root: Bucket<T> | null;
}

const HEADER = 5;
const FNV_PRIME = 0x01000193;
const DOT = 46;

/**
 * Step of the suffix hash: FNV-1a over the characters read right to left, so extending a suffix
 * by one character to the left costs one step.
 */
function step(h: number, c: number): number {
  return Math.imul(h ^ c, FNV_PRIME);
}

/** Spread the bits before using them (murmur3's finalizer), so similar keys land far apart. */
function spread(h: number): number {
  let x = h ^ (h >>> 16);
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  return x ^ (x >>> 16);
}

export interface FqdnIndexOptions {
  /** Record words above which slots carry no fingerprint (default 2^24 - 2; tests lower it). */
  readonly narrowRecordWords?: number;
}

export class FqdnIndex<T> {
  readonly #buckets = new Map<string, Bucket<T>>();
  readonly #narrowWords: number;
  /** Per index, so nobody can plan collisions against a known function. */
  readonly #seed = (Math.random() * 0x100000000) | 0;
  #sealed: Sealed<T> | null = null;
  #size = 0;

  constructor(options: FqdnIndexOptions = {}) {
    this.#narrowWords = options.narrowRecordWords ?? MAX_RECORD_WORDS;
  }

  get size(): number {
    return this.#size;
  }

  add(pattern: FqdnPattern, value: T): void {
    this.#size++;
    this.#sealed = null;
    switch (pattern.kind) {
      case 'exact': {
        const b = this.#bucket(pattern.name);
        b.exact = appended(b.exact, value);
        return;
      }
      case 'one-label': {
        const b = this.#bucket(pattern.suffix);
        b.one = appended(b.one, value);
        return;
      }
      case 'any-depth': {
        const b = this.#bucket(pattern.suffix);
        b.any = appended(b.any, value);
        return;
      }
      case 'label-glob': {
        const b = this.#bucket(pattern.suffix);
        b.globs = appended(b.globs, { globs: pattern.globs, anyDepthPrefix: pattern.anyDepthPrefix, value });
        return;
      }
    }
  }

  #bucket(key: string): Bucket<T> {
    let b = this.#buckets.get(key);
    if (!b) {
      b = { key, exact: NONE, one: NONE, any: NONE, globs: NONE };
      this.#buckets.set(key, b);
    }
    return b;
  }

  /** Build the lookup tables now (at compile time) rather than on the first match. */
  seal(): void {
    this.#sealed ??= this.#build();
  }

  #build(): Sealed<T> {
    const ids = new Map<T, number>();
    const values: T[] = [];
    const idsOf = (list: readonly T[]): number[] =>
      list.map((v) => {
        let id = ids.get(v);
        if (id === undefined) {
          id = values.length;
          ids.set(v, id);
          values.push(v);
        }
        return id;
      });
    const globs: (readonly GlobTail<T>[])[] = [];
    const exact: Row[] = [];
    const proper: Row[] = [];
    for (const b of this.#buckets.values()) {
      if (b.key === '') continue;
      if (b.exact.length > 0) exact.push({ key: b.key, lists: [idsOf(b.exact)], glob: 0 });
      if (b.one.length + b.any.length + b.globs.length > 0) {
        if (b.globs.length > 0) globs.push(b.globs);
        proper.push({
          key: b.key,
          lists: [idsOf(b.one), idsOf(b.any)],
          glob: b.globs.length > 0 ? globs.length : 0,
        });
      }
    }
    return {
      exact: buildTable(exact, this.#seed, this.#narrowWords),
      proper: buildTable(proper, this.#seed, this.#narrowWords),
      values,
      globs,
      root: this.#buckets.get('') ?? null,
    };
  }

  /** Append the value of every pattern that matches `name` to `out`; returns `out`. */
  match(name: CanonicalName, out: T[] = []): T[] {
    out.length = this.matchInto(name, out, out.length);
    return out;
  }

  /**
   * Write the value of every pattern that matches `name` into out[n], out[n + 1], ...; returns
   * the index after the last one written. Entries at and past the returned index are left as
   * they were: a caller that reuses one array keeps its capacity (truncating an array to zero
   * frees its storage, and the next match would allocate it again).
   */
  matchInto(name: CanonicalName, out: T[], n: number): number {
    this.#sealed ??= this.#build();
    const s = this.#sealed;
    const root = s.root;
    let at = n;
    if (root !== null) {
      if (root.one.length > 0 && name.indexOf('.') < 0) for (const v of root.one) out[at++] = v;
      for (const v of root.any) out[at++] = v;
      if (root.globs.length > 0) at = matchGlobs(root.globs, name, name.length, out, at);
    }
    const values = s.values;
    const len = name.length;
    const proper = s.proper;
    const minLabels = proper.minLabels;
    const maxLabels = proper.maxLabels;
    let labels = 0;
    let h = this.#seed;
    for (let i = len - 1; i >= 0; i--) {
      const c = name.charCodeAt(i);
      if (c === DOT) {
        // name[i+1..] is a complete suffix of `labels` labels with name[0..i) in front of it
        labels++;
        const r = labels < minLabels || labels > maxLabels ? -1 : find(proper, name, h, i + 1, len);
        if (r >= 0) {
          const records = proper.records;
          const oneStart = records[r + 1] as number;
          const anyStart = records[r + 2] as number;
          const anyEnd = records[r + 3] as number;
          // `*.`: only when the part in front is a single label
          if (oneStart < anyStart && name.lastIndexOf('.', i - 1) < 0) {
            for (let k = oneStart; k < anyStart; k++) out[at++] = values[records[k] as number] as T;
          }
          for (let k = anyStart; k < anyEnd; k++) out[at++] = values[records[k] as number] as T;
          const g = records[r + 4] as number;
          if (g !== 0) at = matchGlobs(s.globs[g - 1] as GlobTail<T>[], name, i, out, at);
        }
      }
      h = step(h, c);
    }
    const exact = s.exact;
    labels++;
    const r = labels < exact.minLabels || labels > exact.maxLabels ? -1 : find(exact, name, h, 0, len);
    if (r >= 0) {
      const records = exact.records;
      for (let k = records[r + 1] as number, end = records[r + 2] as number; k < end; k++) {
        out[at++] = values[records[k] as number] as T;
      }
    }
    return at;
  }
}

/** A key and its value id lists, before it is laid out in a table. */
interface Row {
  readonly key: string;
  readonly lists: readonly (readonly number[])[];
  readonly glob: number;
}

/** Record offsets that fit in the 24 bits a slot leaves them (otherwise the table is wide). */
const MAX_RECORD_WORDS = (1 << 24) - 2;

function buildTable(rows: readonly Row[], seed: number, narrowWords: number): Table {
  // Load factor at most 3/4: short probe runs, and a table small enough to stay in cache.
  let capacity = 16;
  while (capacity * 3 < rows.length * 4) capacity *= 2;
  const mask = capacity - 1;
  const slots = new Int32Array(capacity);
  let words = 0;
  for (const row of rows)
    words += HEADER + ((row.key.length + 3) >> 2) + row.lists.reduce((n, l) => n + l.length, 0);
  const wide = words > Math.min(narrowWords, MAX_RECORD_WORDS);
  const records = new Int32Array(Math.max(1, words));
  const bytes = new Uint8Array(records.buffer);
  let at = 0;
  for (const row of rows) {
    const record = at;
    records[record] = row.key.length;
    // Canonical names and suffixes are ASCII, so one byte per character.
    const keyByte = (record + HEADER) * 4;
    for (let i = 0; i < row.key.length; i++) bytes[keyByte + i] = row.key.charCodeAt(i);
    at = record + HEADER + ((row.key.length + 3) >> 2);
    records[record + 1] = at;
    row.lists.forEach((list, j) => {
      for (const id of list) records[at++] = id;
      records[record + 2 + j] = at;
    });
    if (row.glob !== 0) records[record + 4] = row.glob;
    let h = seed;
    for (let i = row.key.length - 1; i >= 0; i--) h = step(h, row.key.charCodeAt(i));
    const x = spread(h);
    let slot = x & mask;
    while (slots[slot] !== 0) slot = (slot + 1) & mask;
    slots[slot] = wide ? record + 1 : ((x >>> 24) << 24) | (record + 1);
  }
  let minLabels = Number.POSITIVE_INFINITY;
  let maxLabels = 0;
  for (const row of rows) {
    let labels = 1;
    for (let i = 0; i < row.key.length; i++) if (row.key.charCodeAt(i) === DOT) labels++;
    minLabels = Math.min(minLabels, labels);
    maxLabels = Math.max(maxLabels, labels);
  }
  return { slots, mask, wide, records, bytes, minLabels, maxLabels };
}

/** The record whose key is name[start..len) (suffix hash h), or -1. */
function find(t: Table, name: string, h: number, start: number, len: number): number {
  const x = spread(h);
  const fingerprint = x >>> 24;
  const slots = t.slots;
  const mask = t.mask;
  let slot = x & mask;
  for (;;) {
    const v = slots[slot] as number;
    if (v === 0) return -1;
    if (t.wide) {
      if (keyEquals(t, v - 1, name, start, len)) return v - 1;
    } else if (v >>> 24 === fingerprint) {
      const r = (v & 0xffffff) - 1;
      if (keyEquals(t, r, name, start, len)) return r;
    }
    slot = (slot + 1) & mask;
  }
}

function keyEquals(t: Table, r: number, name: string, start: number, len: number): boolean {
  if (t.records[r] !== len - start) return false;
  const bytes = t.bytes;
  const offset = (r + HEADER) * 4 - start;
  for (let i = start; i < len; i++) {
    if (bytes[offset + i] !== name.charCodeAt(i)) return false;
  }
  return true;
}

/** `end` is the length of name[0..end), the labels in front of the bucket's key; returns out's next index. */
function matchGlobs<T>(
  tails: readonly GlobTail<T>[],
  name: string,
  end: number,
  out: T[],
  at: number,
): number {
  const front = name.slice(0, end).split('.');
  for (const tail of tails) {
    const extra = front.length - tail.globs.length;
    if (tail.anyDepthPrefix ? extra < 1 : extra !== 0) continue;
    let ok = true;
    for (let i = 0; i < tail.globs.length && ok; i++) {
      ok = globMatchesLabel(tail.globs[i] ?? '', front[extra + i] ?? '');
    }
    if (ok) out[at++] = tail.value;
  }
  return at;
}
