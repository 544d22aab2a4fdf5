/**
 * Bounds on what one source, and everyone together, can make the proxy hold: a token bucket
 * per source IP and counters of queries waiting for an upstream. Both maps are bounded: the
 * rate limiter forgets the least recently added source when full (a flood of spoofed sources
 * then only resets buckets; the total pending bound still holds), and sources whose pending
 * count is zero are dropped once they outnumber the active ones.
 */

export class RateLimiter {
  readonly #rate: number;
  readonly #burst: number;
  readonly #maxTracked: number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  /** `rate` tokens per second, at most `burst` saved; time in ms from the injected clock. */
  constructor(rate: number, burst: number, maxTracked = 65_536) {
    this.#rate = rate;
    this.#burst = burst;
    this.#maxTracked = maxTracked;
  }

  allow(source: string, now: number): boolean {
    let b = this.#buckets.get(source);
    if (!b) {
      if (this.#buckets.size >= this.#maxTracked) {
        const oldest = this.#buckets.keys().next();
        if (!oldest.done) this.#buckets.delete(oldest.value);
      }
      b = { tokens: this.#burst, at: now };
      this.#buckets.set(source, b);
    } else if (now > b.at) {
      b.tokens = Math.min(this.#burst, b.tokens + ((now - b.at) * this.#rate) / 1000);
      b.at = now;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  get tracked(): number {
    return this.#buckets.size;
  }
}

export class PendingLimiter {
  readonly #maxTotal: number;
  readonly #maxPerSource: number;
  /**
   * Pending count per source. A source whose count returns to zero keeps its entry until the
   * map grows past twice the active sources (and 4,096): deleting and re-adding the key on
   * every query made the Map rebuild its table every few queries.
   */
  readonly #perSource = new Map<string, number>();
  #total = 0;
  #active = 0;

  constructor(maxTotal: number, maxPerSource: number) {
    this.#maxTotal = maxTotal;
    this.#maxPerSource = maxPerSource;
  }

  /** Take a slot; false when the source or everyone is at the limit. */
  acquire(source: string): boolean {
    if (this.#total >= this.#maxTotal) return false;
    let n = this.#perSource.get(source);
    if (n === undefined) {
      if (this.#perSource.size >= Math.max(IDLE_KEPT, 2 * this.#active)) this.#dropIdle();
      n = 0;
    }
    if (n >= this.#maxPerSource) return false;
    if (n === 0) this.#active++;
    this.#perSource.set(source, n + 1);
    this.#total++;
    return true;
  }

  release(source: string): void {
    const n = this.#perSource.get(source);
    if (n === undefined || n === 0) return;
    this.#perSource.set(source, n - 1);
    if (n === 1) this.#active--;
    this.#total--;
  }

  #dropIdle(): void {
    for (const [source, n] of this.#perSource) if (n === 0) this.#perSource.delete(source);
  }

  get total(): number {
    return this.#total;
  }

  /** Sources with at least one query pending. */
  get sources(): number {
    return this.#active;
  }
}

const IDLE_KEPT = 4096;
