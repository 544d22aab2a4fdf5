/**
 * The agent's memory of which names its sources learned for which addresses, kept after the
 * TTL ran out (and after the learned store forgot them): it lets a kernel drop say "api.x.com,
 * expired 3 min ago" instead of a bare address, and tells a DNS bypass from an expired answer
 * or an address another pod learned.
 *
 * Bounded: at most `maxEntries` (source, address) pairs, least recently learned forgotten
 * first, and a few sources per address. Wall-clock milliseconds are passed in (these times are
 * shown to people); nothing here reads a clock.
 */

export interface LearnedName {
  readonly source: string;
  readonly name: string;
  /** When the source last got this address for the name (wall ms). */
  readonly learnedAt: number;
  /** When the kernel element for it expires or expired (wall ms). */
  readonly expiresAt: number;
  /**
   * False when the answer passed without being learned (an Audit source asking for a name its
   * policies do not allow): the address was never in the kernel for it.
   */
  readonly learned: boolean;
}

/** What explainDrop reads; AddressHistory implements it. */
export interface AddressHistoryView {
  /** What `source` learned for `ip` (its latest name), if anything. */
  lookup(source: string, ip: string): LearnedName | undefined;
  /** Other sources that learned `ip`, most recent first. */
  learners(ip: string): readonly LearnedName[];
}

export const DEFAULT_HISTORY_ENTRIES = 200_000;
/** Sources remembered per address: enough to say "learned by another pod only". */
const LEARNERS_PER_ADDRESS = 4;

export class AddressHistory implements AddressHistoryView {
  readonly #max: number;
  /** `${source} ${ip}` -> entry; Map order is learning order (oldest first). */
  readonly #entries = new Map<string, LearnedName>();
  /** ip -> the last few sources that learned it (most recent last). */
  readonly #byIp = new Map<string, string[]>();

  constructor(maxEntries = DEFAULT_HISTORY_ENTRIES) {
    this.#max = Math.max(1, maxEntries);
  }

  get size(): number {
    return this.#entries.size;
  }

  /** `source` got `ips` for `name`; each element lives until `expiresAt` (wall ms). */
  learn(
    source: string,
    name: string,
    ips: readonly string[],
    learnedAt: number,
    expiresAt: number,
    learned = true,
  ): void {
    for (const ip of ips) {
      const key = `${source} ${ip}`;
      const old = this.#entries.get(key);
      // Refreshes move the entry to the young end; a shorter answer never cuts the expiry.
      if (old) this.#entries.delete(key);
      this.#entries.set(key, {
        source,
        name,
        learnedAt,
        expiresAt: old && old.name === name ? Math.max(old.expiresAt, expiresAt) : expiresAt,
        learned,
      });
      let learners = this.#byIp.get(ip);
      if (!learners) {
        learners = [];
        this.#byIp.set(ip, learners);
      }
      const at = learners.indexOf(source);
      if (at >= 0) learners.splice(at, 1);
      learners.push(source);
      if (learners.length > LEARNERS_PER_ADDRESS) learners.shift();
    }
    while (this.#entries.size > this.#max) this.#evictOldest();
  }

  #evictOldest(): void {
    const first = this.#entries.entries().next();
    if (first.done) return;
    const [key, entry] = first.value;
    this.#entries.delete(key);
    const ip = key.slice(key.indexOf(' ') + 1);
    const learners = this.#byIp.get(ip);
    if (!learners) return;
    const at = learners.indexOf(entry.source);
    if (at >= 0) learners.splice(at, 1);
    if (learners.length === 0) this.#byIp.delete(ip);
  }

  lookup(source: string, ip: string): LearnedName | undefined {
    return this.#entries.get(`${source} ${ip}`);
  }

  learners(ip: string): LearnedName[] {
    const out: LearnedName[] = [];
    const learners = this.#byIp.get(ip) ?? [];
    for (let i = learners.length - 1; i >= 0; i--) {
      const e = this.#entries.get(`${learners[i]} ${ip}`);
      if (e) out.push(e);
    }
    return out;
  }
}
