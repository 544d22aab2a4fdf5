/**
 * What the other agent on this node learned (REL-11), and the view the SNI/Host proxy checks:
 * own store OR peer entries, each with its expiry. Peer entries are knowledge only: they never
 * open kernel elements (the peer committed those into the shared table), never enter this
 * agent's checkpoint, and never make room in the own store. Bounded: past `maxEntries` a new
 * entry is refused (after one sweep of expired entries, at most once a second).
 */

/** What the proxies ask (the same shape as src/proxy/verdict.ts LearnedView). */
export interface LearnedView {
  holds(source: string, name: string, ip: string, now: number): boolean;
}

const SWEEP_EVERY_MS = 1000;

export class PeerEntries implements LearnedView {
  readonly #maxEntries: number;
  /** source -> "name ip" -> expiry (monotonic ms, this process's clock). */
  readonly #bySource = new Map<string, Map<string, number>>();
  #size = 0;
  #lastSweep = -Infinity;

  constructor(maxEntries: number) {
    this.#maxEntries = maxEntries;
  }

  get maxEntries(): number {
    return this.#maxEntries;
  }

  get size(): number {
    return this.#size;
  }

  /** Record (or extend: an expiry never moves back) an entry. False when full. */
  add(source: string, name: string, ip: string, expiresAt: number, now: number): boolean {
    const key = `${name} ${ip}`;
    let names = this.#bySource.get(source);
    const known = names?.get(key);
    if (known !== undefined) {
      if (expiresAt > known) names!.set(key, expiresAt);
      return true;
    }
    if (this.#size >= this.#maxEntries && !this.#sweep(now)) return false;
    if (!names) {
      names = new Map();
      this.#bySource.set(source, names);
    }
    names.set(key, expiresAt);
    this.#size++;
    return true;
  }

  holds(source: string, name: string, ip: string, now: number): boolean {
    const e = this.#bySource.get(source)?.get(`${name} ${ip}`);
    return e !== undefined && e > now;
  }

  /** The addresses' holders went away (a reused IP must not inherit what the peer learned). */
  forgetSources(sources: Iterable<string>): void {
    for (const s of sources) {
      const names = this.#bySource.get(s);
      if (!names) continue;
      this.#size -= names.size;
      this.#bySource.delete(s);
    }
  }

  /** Drop expired entries when full, at most once a second; true when room was made. */
  #sweep(now: number): boolean {
    if (now - this.#lastSweep < SWEEP_EVERY_MS) return false;
    this.#lastSweep = now;
    for (const [source, names] of this.#bySource) {
      for (const [key, e] of names) {
        if (e > now) continue;
        names.delete(key);
        this.#size--;
      }
      if (names.size === 0) this.#bySource.delete(source);
    }
    return this.#size < this.#maxEntries;
  }
}

/** The own store first, then what the peer learned; either one holding is enough. */
export function combinedView(own: LearnedView, peer: LearnedView): LearnedView {
  return { holds: (s, n, ip, now) => own.holds(s, n, ip, now) || peer.holds(s, n, ip, now) };
}
