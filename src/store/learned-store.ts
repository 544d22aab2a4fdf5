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

export class LearnedStore {
  readonly ttl: TtlPolicy;
  readonly limits: StoreLimits;
  readonly #inUse: InUse;
  readonly #events: StoreEvents;
  readonly #sources = new Map<string, SourceState>();
  readonly #slackMs: number;
  #size = 0;
  #lastFullGc = Number.NEGATIVE_INFINITY;

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
    const result: LearnResult = { learned: [], rejected: [], evicted: [] };
    if (addresses.length === 0) return result;
    const protect = new Set<string>();
    for (const a of addresses) protect.add(a.ip);
    for (const a of addresses) {
      const expiresAt = now + timeoutMsFor(a.ttl, this.ttl);
      this.#put(source, name, a.ip, expiresAt, now, protect, result);
    }
    return result;
  }

  /**
   * Put back an entry from a checkpoint with its remaining lifetime. Caps apply, but nothing
   * is evicted for it. Returns false when it was not taken.
   */
  restore(entry: StoreEntry, now: number): boolean {
    if (!(entry.expiresAt > now)) return false;
    const result: LearnResult = { learned: [], rejected: [], evicted: [] };
    this.#put(entry.source, entry.name, entry.ip, entry.expiresAt, now, null, result, entry.lastSeen);
    return result.learned.length > 0;
  }

  #put(
    source: string,
    name: string,
    ip: string,
    expiresAt: number,
    now: number,
    protect: ReadonlySet<string> | null,
    result: LearnResult,
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
    protect: ReadonlySet<string> | null,
    result: LearnResult,
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
    protect: ReadonlySet<string>,
    kind: EvictionScope,
    result: LearnResult,
  ): boolean {
    let victim: { ne: NameEntry; ip: string } | null = null;
    let oldest = Number.POSITIVE_INFINITY;
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

  /** Drop expired entries; returns how many. */
  gc(now: number): number {
    let removed = 0;
    for (const [source, src] of this.#sources) {
      for (const ne of [...src.names.values()]) {
        for (const [ip, e] of ne.ips) {
          if (e.expiresAt <= now) {
            this.#remove(source, src, ne, ip);
            removed++;
          }
        }
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
