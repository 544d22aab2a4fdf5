/**
 * When to resolve a name again (pure). A name is re-resolved before its answer expires: at its
 * TTL, kept between minRefresh and maxRefresh and never past the time the store would keep an
 * address of that TTL (clamp(TTL, minTTL, maxTTL) + grace, src/store/ttl.ts), then brought
 * forward by up to `jitter` of it so that names learned together do not fall due together.
 * A failed resolution is retried sooner, backing off by doubling up to maxRefresh.
 */
import { type TtlPolicy, timeoutMsFor } from '../store/ttl.ts';

export interface RefreshSettings {
  readonly minRefreshMs: number;
  readonly maxRefreshMs: number;
  readonly jitter: number;
  readonly failureRetryMs: number;
  readonly ttl: TtlPolicy;
}

/**
 * @param ttlSeconds the smallest TTL of the answer (null: the answer had no addresses)
 * @param random a number in [0, 1)
 */
export function refreshDelayMs(ttlSeconds: number | null, s: RefreshSettings, random: number): number {
  const ttlMs = ttlSeconds === null ? s.ttl.minTtlSeconds * 1000 : Math.max(0, ttlSeconds) * 1000;
  const storeLife = timeoutMsFor(ttlSeconds ?? 0, s.ttl);
  const base = Math.min(Math.max(ttlMs, s.minRefreshMs), s.maxRefreshMs, storeLife);
  return Math.max(1, Math.round(base * (1 - s.jitter * random)));
}

/** The wait before retry number `failures` (1 for the first failure in a row). */
export function failureDelayMs(failures: number, s: RefreshSettings, random: number): number {
  const exp = Math.min(Math.max(0, failures - 1), 30);
  const base = Math.min(s.failureRetryMs * 2 ** exp, s.maxRefreshMs);
  return Math.max(1, Math.round(base * (1 - s.jitter * random)));
}
