/**
 * Bounds on what one source, and everyone together, can make the proxy hold: a token bucket
 * per source IP and counters of queries waiting for an upstream. Both maps are bounded: the
 * rate limiter forgets the least recently added source when full (a flood of spoofed sources
 * then only resets buckets; the total pending bound still holds), and pending counts are
 * deleted when they return to zero.
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
  readonly #perSource = new Map<string, number>();
  #total = 0;

  constructor(maxTotal: number, maxPerSource: number) {
    this.#maxTotal = maxTotal;
    this.#maxPerSource = maxPerSource;
  }

  /** Take a slot; false when the source or everyone is at the limit. */
  acquire(source: string): boolean {
    if (this.#total >= this.#maxTotal) return false;
    const n = this.#perSource.get(source) ?? 0;
    if (n >= this.#maxPerSource) return false;
    this.#perSource.set(source, n + 1);
    this.#total++;
    return true;
  }

  release(source: string): void {
    const n = this.#perSource.get(source);
    if (n === undefined) return;
    if (n <= 1) this.#perSource.delete(source);
    else this.#perSource.set(source, n - 1);
    this.#total--;
  }

  get total(): number {
    return this.#total;
  }

  get sources(): number {
    return this.#perSource.size;
  }
}
