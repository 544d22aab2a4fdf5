/**
 * Unpredictable 16-bit query IDs. Upstream replies are accepted only when their ID matches the
 * one sent, so IDs come from the CSPRNG; a pool of random bytes is refilled in blocks to keep
 * the cost per query to a couple of array reads.
 */
import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 8192;

export class RandomIds {
  readonly #pool = Buffer.allocUnsafe(POOL_BYTES);
  #at = POOL_BYTES;

  next(): number {
    if (this.#at + 2 > POOL_BYTES) {
      randomFillSync(this.#pool);
      this.#at = 0;
    }
    const v = (this.#pool[this.#at]! << 8) | this.#pool[this.#at + 1]!;
    this.#at += 2;
    return v;
  }

  /** A random integer in [0, n) for small n (slight modulo bias is irrelevant here). */
  below(n: number): number {
    return this.next() % n;
  }
}
