/**
 * The union window (pure, clock passed in): every address seen for a name within the last
 * `windowMs` stays in its set, so a name that rotates among many addresses (CDNs, S3, load
 * balancers) keeps the ones clients may still hold from an earlier answer. An address leaves
 * only when it has not been seen for the whole window, never because one answer left it out,
 * and never because a resolution failed (a failure observes nothing; the last good set ages out
 * at the window's pace).
 *
 * A window of 0 is the naive loop: each successful answer replaces the name's addresses of that
 * family, and nothing ages out by time.
 *
 * Per name at most `maxPerName` addresses: past it the least recently seen leave first, and the
 * caller counts and logs each time that happens.
 */

export interface WindowOptions {
  readonly windowMs: number;
  readonly maxPerName: number;
}

export interface Observed {
  /** Addresses that were not in the name's set before. */
  readonly added: readonly string[];
  /** Addresses pushed out: by the cap, or (window 0) by a newer answer. */
  readonly evicted: readonly string[];
  /** True when the cap pushed something out. */
  readonly capped: boolean;
}

export interface Removed {
  readonly name: string;
  readonly ip: string;
}

interface Entry {
  /** ip -> when it was last seen (monotonic ms). */
  readonly seen: Map<string, number>;
}

function familyOf(ip: string): 4 | 6 {
  return ip.includes(':') ? 6 : 4;
}

export class UnionWindow {
  readonly #o: WindowOptions;
  readonly #names = new Map<string, Entry>();

  constructor(options: WindowOptions) {
    this.#o = options;
  }

  get windowMs(): number {
    return this.#o.windowMs;
  }

  /** A successful answer of one family for `name` at `now`: its addresses are seen now. */
  observe(name: string, family: 4 | 6, ips: readonly string[], now: number): Observed {
    let entry = this.#names.get(name);
    if (!entry) {
      entry = { seen: new Map() };
      this.#names.set(name, entry);
    }
    const added: string[] = [];
    const evicted: string[] = [];
    if (this.#o.windowMs === 0) {
      const keep = new Set(ips);
      for (const ip of [...entry.seen.keys()]) {
        if (familyOf(ip) === family && !keep.has(ip)) {
          entry.seen.delete(ip);
          evicted.push(ip);
        }
      }
    }
    for (const ip of ips) {
      if (!entry.seen.has(ip)) added.push(ip);
      // Delete first so the map's order is "least recently seen first" (what the cap evicts).
      entry.seen.delete(ip);
      entry.seen.set(ip, now);
    }
    let capped = false;
    while (entry.seen.size > this.#o.maxPerName) {
      const oldest = entry.seen.keys().next().value as string;
      entry.seen.delete(oldest);
      capped = true;
      const i = added.indexOf(oldest);
      if (i >= 0) added.splice(i, 1);
      else evicted.push(oldest);
    }
    return { added, evicted, capped };
  }

  /** Remove addresses not seen for the whole window; returns them. */
  prune(now: number): Removed[] {
    if (this.#o.windowMs === 0) return [];
    const out: Removed[] = [];
    const oldest = now - this.#o.windowMs;
    for (const [name, entry] of this.#names) {
      // Least recently seen first: stop at the first one still inside the window.
      for (const [ip, at] of entry.seen) {
        if (at > oldest) break;
        entry.seen.delete(ip);
        out.push({ name, ip });
      }
    }
    return out;
  }

  /** When the next address leaves by age (monotonic ms), or null when none will. */
  nextExpiry(): number | null {
    if (this.#o.windowMs === 0) return null;
    let next: number | null = null;
    for (const entry of this.#names.values()) {
      const first = entry.seen.values().next();
      if (!first.done && (next === null || first.value < next)) next = first.value;
    }
    return next === null ? null : next + this.#o.windowMs;
  }

  /** The name's addresses, sorted (IPv4 before IPv6). */
  addresses(name: string): string[] {
    const entry = this.#names.get(name);
    if (!entry) return [];
    return [...entry.seen.keys()].sort(compareIps);
  }

  /** When each of the name's addresses was last seen. */
  sightings(name: string): ReadonlyMap<string, number> {
    return this.#names.get(name)?.seen ?? new Map();
  }

  /** Drop a name no policy names any more. */
  forget(name: string): void {
    this.#names.delete(name);
  }

  get size(): number {
    let n = 0;
    for (const e of this.#names.values()) n += e.seen.size;
    return n;
  }
}

/** IPv4 before IPv6, then numerically (so written sets are stable and readable). */
export function compareIps(a: string, b: string): number {
  const fa = familyOf(a);
  const fb = familyOf(b);
  if (fa !== fb) return fa - fb;
  if (fa === 4) {
    const na = a.split('.').map(Number);
    const nb = b.split('.').map(Number);
    for (let i = 0; i < 4; i++) if (na[i] !== nb[i]) return (na[i] as number) - (nb[i] as number);
    return 0;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}
