/**
 * What each source learned: (source IP, queried name) -> IPs, each with an expiry on the
 * monotonic clock. Learning is per source (a lookup by one pod never lets another pod reach
 * the answer) and per queried name (the SNI proxy later asks "did this source learn this IP for
 * this very name").
 *
 * Invariants:
 * - An entry's expiry is now + timeoutMsFor(ttl) when learned, and a repeated answer only ever
 *   moves it later (a shorter TTL never cuts an element the kernel already holds).
 * - A refresh that would move the expiry by less than half the grace is skipped: the entry
 *   still outlives the answer the client holds (the grace covers the difference), and a name
 *   asked for thousands of times a second does not cost a datapath update each time.
 * - Caps per (source, name), per source and in total. When a cap is reached, expired entries go
 *   first, then the least recently answered entry that is not in use (the injected predicate,
 *   e.g. a conntrack check); an entry in use is never evicted, so the new address is rejected
 *   instead (its connections then drop: fail closed).
 * - Time is always passed in; nothing here reads a clock.
 */
import { type TtlPolicy, timeoutMsFor } from './ttl.ts';

export interface StoreLimits {
  /** Addresses one source may hold for one name. */
  readonly maxIpsPerName: number;
  /** Addresses one source may hold over all its names. */
  readonly maxIpsPerSource: number;
  /** Entries over all sources. */
  readonly maxEntries: number;
}

export const DEFAULT_STORE_LIMITS: StoreLimits = {
  maxIpsPerName: 64,
  maxIpsPerSource: 4096,
  maxEntries: 500_000,
};

/** Is there live traffic from `source` to `ip`? Such an entry is never evicted. */
export type InUse = (source: string, ip: string) => boolean;

export const NONE_IN_USE: InUse = () => false;

/**
 * Where "in use" comes from when it must be read ahead (the agent: conntrack): `prepare` before
 * an answer that has to make room (see `wouldEvict`), then `inUse` answers synchronously.
 */
export interface InUseSource {
  /** Read what `source` has in use now (bounded in time, cached); never rejects. */
  prepare(source: string): Promise<void>;
  readonly inUse: InUse;
}

export type EvictionScope = 'name' | 'source';
export type RejectReason = 'name_full' | 'source_full' | 'store_full';

export interface StoreEvents {
  evicted?(scope: EvictionScope): void;
  rejected?(reason: RejectReason): void;
}

export interface StoreOptions {
  readonly ttl: TtlPolicy;
  readonly limits?: StoreLimits;
  readonly inUse?: InUse;
  readonly events?: StoreEvents;
}

export interface AddressInput {
  readonly ip: string;
  readonly ttl: number;
}

export type Change = 'new' | 'refreshed' | 'unchanged';

export interface LearnedAddress {
  readonly ip: string;
  readonly change: Change;
  /** The entry's expiry after this answer (monotonic ms). */
  readonly expiresAt: number;
}

export interface Eviction {
  readonly name: string;
  readonly ip: string;
  /** The source holds this IP under no other name any more. */
  readonly orphaned: boolean;
}

export interface LearnResult {
  readonly learned: LearnedAddress[];
  readonly rejected: Array<{ ip: string; reason: RejectReason }>;
  readonly evicted: Eviction[];
}

export interface StoreEntry {
  readonly source: string;
  readonly name: string;
  readonly ip: string;
  readonly expiresAt: number;
  readonly lastSeen: number;
}

interface IpEntry {
  expiresAt: number;
  lastSeen: number;
}

interface NameEntry {
  readonly name: string;
  readonly ips: Map<string, IpEntry>;
}

interface SourceState {
  readonly names: Map<string, NameEntry>;
  /** Which of this source's names hold an IP; for element timeouts and orphan detection. */
  readonly byIp: Map<string, NameEntry[]>;
  count: number;
}

/** A LearnResult while it is being filled: rejected and evicted start as the shared empty list. */
interface Result {
  readonly learned: LearnedAddress[];
  rejected: Array<{ ip: string; reason: RejectReason }>;
  evicted: Eviction[];
}

// Shared by every result that rejects and evicts nothing (nearly all); never written to.
const NONE: never[] = Object.freeze([]) as never[];

function newResult(): Result {
  return { learned: [], rejected: NONE, evicted: NONE };
}

/** The addresses of the answer being learned, as a set only when an eviction asks. */
class Protect {
  readonly #addresses: readonly AddressInput[];
  #set: Set<string> | null = null;

  constructor(addresses: readonly AddressInput[]) {
    this.#addresses = addresses;
  }

  set(): ReadonlySet<string> {
    if (this.#set === null) {
      this.#set = new Set();
      for (const a of this.#addresses) this.#set.add(a.ip);
    }
    return this.#set;
  }
}

export class LearnedStore {
  readonly ttl: TtlPolicy;
  readonly limits: StoreLimits;
  readonly #inUse: InUse;
  readonly #events: StoreEvents;
  readonly #sources = new Map<string, SourceState>();
  readonly #slackMs: number;
  readonly #onLearned = new Set<(entry: StoreEntry) => void>();
  #size = 0;
  #lastFullGc = Number.NEGATIVE_INFINITY;
  /** Where gcStep resumes: iterators over the sources and over the current source's names. */
  #gcCursor: {
    readonly sources: MapIterator<[string, SourceState]>;
    source: string;
    src: SourceState | null;
    names: MapIterator<NameEntry> | null;
  } | null = null;

  constructor(options: StoreOptions) {
    this.ttl = options.ttl;
    this.limits = options.limits ?? DEFAULT_STORE_LIMITS;
    this.#inUse = options.inUse ?? NONE_IN_USE;
    this.#events = options.events ?? {};
    this.#slackMs = (options.ttl.graceSeconds * 1000) / 2;
  }

  /** Entries over all sources. */
  get size(): number {
    return this.#size;
  }

  get sourceCount(): number {
    return this.#sources.size;
  }

  /**
   * Record that `source` got `addresses` for `name` now. Addresses beyond the per-name cap
   * should be cut by the caller first (answer order decides which ones a client uses).
   */
  learn(source: string, name: string, addresses: readonly AddressInput[], now: number): LearnResult {
    const result = newResult();
    if (addresses.length === 0) return result;
    // The answer's own addresses are never evicted for each other; the set of them is built
    // only if a cap makes an eviction necessary (most answers fit).
    const protect = new Protect(addresses);
    for (const a of addresses) {
      const expiresAt = now + timeoutMsFor(a.ttl, this.ttl);
      this.#put(source, name, a.ip, expiresAt, now, protect, result);
    }
    if (this.#onLearned.size > 0) {
      for (const l of result.learned) {
        if (l.change === 'unchanged') continue;
        for (const f of this.#onLearned) f({ source, name, ip: l.ip, expiresAt: l.expiresAt, lastSeen: now });
      }
    }
    return result;
  }

  /**
   * Be told of every new or extended entry an answer makes (the peer feed, REL-11), synchronously
   * inside learn(), before the answer goes out. Returns the unsubscribe function.
   */
  onLearned(listener: (entry: StoreEntry) => void): () => void {
    this.#onLearned.add(listener);
    return () => this.#onLearned.delete(listener);
  }

  /**
   * Would learning these addresses for (source, name) have to evict a live entry (the per-name
   * or per-source cap reached; expired entries are not counted as room, so it may say yes
   * needlessly, never no wrongly)? Lets a caller read "in use" ahead only when it matters.
   */
  wouldEvict(source: string, name: string, addresses: readonly AddressInput[]): boolean {
    const src = this.#sources.get(source);
    if (!src) return false;
    const ips = src.names.get(name)?.ips;
    let fresh = 0;
    // An entry already there (even expired, not yet collected) is taken over in place.
    for (const a of addresses) if (ips?.get(a.ip) === undefined) fresh++;
    if (fresh === 0) return false;
    return (
      (ips?.size ?? 0) + fresh > this.limits.maxIpsPerName || src.count + fresh > this.limits.maxIpsPerSource
    );
  }

  /**
   * Put back an entry from a checkpoint with its remaining lifetime. Caps apply, but nothing
   * is evicted for it. Returns false when it was not taken.
   */
  restore(entry: StoreEntry, now: number): boolean {
    if (!(entry.expiresAt > now)) return false;
    const result = newResult();
    this.#put(entry.source, entry.name, entry.ip, entry.expiresAt, now, null, result, entry.lastSeen);
    return result.learned.length > 0;
  }

  #put(
    source: string,
    name: string,
    ip: string,
    expiresAt: number,
    now: number,
    protect: Protect | null,
    result: Result,
    lastSeen = now,
  ): void {
    let src = this.#sources.get(source);
    let ne = src?.names.get(name);
    const existing = ne?.ips.get(ip);
    if (existing && existing.expiresAt > now) {
      existing.lastSeen = Math.max(existing.lastSeen, lastSeen);
      if (expiresAt > existing.expiresAt + this.#slackMs) {
        existing.expiresAt = expiresAt;
        result.learned.push({ ip, change: 'refreshed', expiresAt });
      } else {
        result.learned.push({ ip, change: 'unchanged', expiresAt: existing.expiresAt });
      }
      return;
    }
    if (existing) {
      // Expired but not collected yet: it comes back as new (the kernel dropped it).
      existing.expiresAt = expiresAt;
      existing.lastSeen = lastSeen;
      result.learned.push({ ip, change: 'new', expiresAt });
      return;
    }
    if (!src) {
      src = { names: new Map(), byIp: new Map(), count: 0 };
      this.#sources.set(source, src);
    }
    if (!ne) {
      ne = { name, ips: new Map() };
      src.names.set(name, ne);
    }
    const reason = this.#makeRoom(source, src, ne, now, protect, result);
    if (reason !== null) {
      if (result.rejected === NONE) result.rejected = [];
      result.rejected.push({ ip, reason });
      this.#events.rejected?.(reason);
      this.#dropIfEmpty(source, src, ne);
      return;
    }
    // Eviction may have removed the (then empty) name or source; put them back.
    if (!this.#sources.has(source)) this.#sources.set(source, src);
    if (!src.names.has(name)) src.names.set(name, ne);
    ne.ips.set(ip, { expiresAt, lastSeen });
    const holders = src.byIp.get(ip);
    if (holders) holders.push(ne);
    else src.byIp.set(ip, [ne]);
    src.count++;
    this.#size++;
    result.learned.push({ ip, change: 'new', expiresAt });
  }

  #makeRoom(
    source: string,
    src: SourceState,
    ne: NameEntry,
    now: number,
    protect: Protect | null,
    result: Result,
  ): RejectReason | null {
    if (ne.ips.size >= this.limits.maxIpsPerName) {
      if (protect === null || !this.#evictOne(source, src, [ne], now, protect, 'name', result)) {
        return 'name_full';
      }
    }
    if (src.count >= this.limits.maxIpsPerSource) {
      if (
        protect === null ||
        !this.#evictOne(source, src, src.names.values(), now, protect, 'source', result)
      ) {
        return 'source_full';
      }
    }
    if (this.#size >= this.limits.maxEntries && now - this.#lastFullGc >= 1000) {
      // Collect expired entries at most once a second when full; a full store of live
      // entries rejects new ones rather than spending every query on a scan.
      this.#lastFullGc = now;
      this.gc(now);
    }
    if (this.#size >= this.limits.maxEntries) return 'store_full';
    return null;
  }

  /** Remove one entry from `scope`: an expired one if any, else the oldest not in use. */
  #evictOne(
    source: string,
    src: SourceState,
    scope: Iterable<NameEntry>,
    now: number,
    protectList: Protect,
    kind: EvictionScope,
    result: Result,
  ): boolean {
    let victim: { ne: NameEntry; ip: string } | null = null;
    let oldest = Number.POSITIVE_INFINITY;
    const protect = protectList.set();
    for (const ne of scope) {
      for (const [ip, e] of ne.ips) {
        if (e.expiresAt <= now) {
          this.#remove(source, src, ne, ip);
          return true;
        }
        if (e.lastSeen < oldest && !protect.has(ip) && !this.#inUse(source, ip)) {
          oldest = e.lastSeen;
          victim = { ne, ip };
        }
      }
    }
    if (!victim) return false;
    const orphaned = this.#remove(source, src, victim.ne, victim.ip);
    if (result.evicted === NONE) result.evicted = [];
    result.evicted.push({ name: victim.ne.name, ip: victim.ip, orphaned });
    this.#events.evicted?.(kind);
    return true;
  }

  /** Remove one entry; returns whether the source now holds the IP under no name. */
  #remove(source: string, src: SourceState, ne: NameEntry, ip: string): boolean {
    if (!ne.ips.delete(ip)) return false;
    src.count--;
    this.#size--;
    let orphaned = true;
    const holders = src.byIp.get(ip);
    if (holders) {
      const i = holders.indexOf(ne);
      if (i >= 0) holders.splice(i, 1);
      if (holders.length === 0) src.byIp.delete(ip);
      else orphaned = false;
    }
    this.#dropIfEmpty(source, src, ne);
    return orphaned;
  }

  #dropIfEmpty(source: string, src: SourceState, ne: NameEntry): void {
    if (ne.ips.size === 0 && src.names.get(ne.name) === ne) src.names.delete(ne.name);
    if (src.names.size === 0 && this.#sources.get(source) === src) this.#sources.delete(source);
  }

  /** The unexpired IPs `source` learned for `name`. */
  lookup(source: string, name: string, now: number): string[] {
    const ne = this.#sources.get(source)?.names.get(name);
    if (!ne) return [];
    const out: string[] = [];
    for (const [ip, e] of ne.ips) if (e.expiresAt > now) out.push(ip);
    return out;
  }

  /** Did `source` learn `ip` for `name`, and is it still valid? */
  holds(source: string, name: string, ip: string, now: number): boolean {
    const e = this.#sources.get(source)?.names.get(name)?.ips.get(ip);
    return e !== undefined && e.expiresAt > now;
  }

  /**
   * The latest expiry of `ip` over all names of `source` (0 when none). A datapath element for
   * (source, ip) is given this lifetime so that learning one name never shortens what another
   * name of the same source already opened.
   */
  expiryFor(source: string, ip: string): number {
    const holders = this.#sources.get(source)?.byIp.get(ip);
    let max = 0;
    if (!holders) return max;
    for (const ne of holders) {
      const e = ne.ips.get(ip);
      if (e && e.expiresAt > max) max = e.expiresAt;
    }
    return max;
  }

  /** Names under which `source` holds `ip` (expired or not). */
  namesHolding(source: string, ip: string): string[] {
    return (this.#sources.get(source)?.byIp.get(ip) ?? []).map((ne) => ne.name);
  }

  /** Remove one entry (e.g. its datapath commit failed). Returns whether it existed. */
  forget(source: string, name: string, ip: string): boolean {
    const src = this.#sources.get(source);
    const ne = src?.names.get(name);
    if (!src || !ne?.ips.has(ip)) return false;
    this.#remove(source, src, ne, ip);
    return true;
  }

  /** Remove everything `source` learned (e.g. it stopped being governed). */
  forgetSource(source: string): number {
    const src = this.#sources.get(source);
    if (!src) return 0;
    this.#sources.delete(source);
    this.#size -= src.count;
    return src.count;
  }

  /** Drop every expired entry now; returns how many. O(entries): see gcStep for the timer. */
  gc(now: number): number {
    let removed = 0;
    for (const [source, src] of this.#sources) {
      // Deleting from a Map while iterating it is safe: removed keys are skipped.
      for (const ne of src.names.values()) removed += this.#collectName(source, src, ne, now);
    }
    return removed;
  }

  /**
   * Collect expired entries a slice at a time: visit at most about `budget` entries, resuming
   * where the previous call stopped, so a timer can sweep a store of any size without blocking
   * the event loop for longer than one slice. `done` is true when a pass over every source has
   * just completed (the next call starts a new pass).
   */
  gcStep(now: number, budget: number): { removed: number; done: boolean } {
    let removed = 0;
    let visited = 0;
    let c = this.#gcCursor;
    if (c === null) {
      c = { sources: this.#sources.entries(), source: '', src: null, names: null };
      this.#gcCursor = c;
    }
    while (visited < budget) {
      if (c.names === null || c.src === null) {
        const next = c.sources.next();
        if (next.done) {
          this.#gcCursor = null;
          return { removed, done: true };
        }
        c.source = next.value[0];
        c.src = next.value[1];
        c.names = c.src.names.values();
      }
      // A source forgotten (or replaced) since the last slice is not ours to touch any more.
      if (this.#sources.get(c.source) !== c.src) {
        c.names = null;
        continue;
      }
      const ne = c.names.next();
      if (ne.done) {
        c.names = null;
        continue;
      }
      if (c.src.names.get(ne.value.name) !== ne.value) continue;
      visited += Math.max(1, ne.value.ips.size);
      removed += this.#collectName(c.source, c.src, ne.value, now);
    }
    return { removed, done: false };
  }

  /** Remove the expired IPs of one name entry; returns how many. */
  #collectName(source: string, src: SourceState, ne: NameEntry, now: number): number {
    let removed = 0;
    for (const [ip, e] of ne.ips) {
      if (e.expiresAt <= now) {
        this.#remove(source, src, ne, ip);
        removed++;
      }
    }
    return removed;
  }

  /** Every entry, expired or not (checkpoints filter on their own clock). */
  *entries(): IterableIterator<StoreEntry> {
    for (const [source, src] of this.#sources) {
      for (const ne of src.names.values()) {
        for (const [ip, e] of ne.ips) {
          yield { source, name: ne.name, ip, expiresAt: e.expiresAt, lastSeen: e.lastSeen };
        }
      }
    }
  }

  /** Number of names `source` holds entries for. */
  namesOf(source: string): number {
    return this.#sources.get(source)?.names.size ?? 0;
  }

  /** Entries `source` holds over all names. */
  countOf(source: string): number {
    return this.#sources.get(source)?.count ?? 0;
  }
}
