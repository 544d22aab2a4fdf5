/**
 * How long a learned address lives: clamp(TTL, minTTL, maxTTL) + grace (docs/architecture.md, "Time").
 * Never 0: an nftables element with timeout 0 never expires, so a TTL of 0 must become minTTL,
 * and minTTL + grace is validated to be at least one second.
 */

export interface TtlPolicy {
  readonly minTtlSeconds: number;
  readonly maxTtlSeconds: number;
  readonly graceSeconds: number;
}

export const DEFAULT_TTL_POLICY: TtlPolicy = { minTtlSeconds: 30, maxTtlSeconds: 86_400, graceSeconds: 30 };

/** Problems with a TTL policy, as messages; empty when it is usable. */
export function ttlPolicyProblems(p: TtlPolicy): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(p)) {
    if (!Number.isInteger(v) || v < 0) out.push(`${k} must be a whole number of seconds >= 0`);
  }
  if (p.minTtlSeconds > p.maxTtlSeconds) out.push('minTTL must not be larger than maxTTL');
  if (p.minTtlSeconds + p.graceSeconds < 1) out.push('minTTL + grace must be at least 1 second');
  return out;
}

/** The element timeout in ms for an answer TTL in seconds; always >= 1000. */
export function timeoutMsFor(ttlSeconds: number, p: TtlPolicy): number {
  const ttl = Number.isFinite(ttlSeconds) && ttlSeconds > 0 ? ttlSeconds : 0;
  const clamped = Math.min(Math.max(ttl, p.minTtlSeconds), p.maxTtlSeconds);
  return Math.max(1000, Math.round((clamped + p.graceSeconds) * 1000));
}

/** The longest timeout any answer can produce; restored entries are capped at it. */
export function maxTimeoutMs(p: TtlPolicy): number {
  return timeoutMsFor(p.maxTtlSeconds, p);
}
