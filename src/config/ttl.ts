/** The `ttl` section: how long a learned address lives (clamp(TTL, minTTL, maxTTL) + grace). */
import { z } from 'zod';
import { type TtlPolicy, ttlPolicyProblems } from '../store/ttl.ts';
import type { ConfigProblem } from './problem.ts';
import { seconds } from './units.ts';

export const TtlSectionSchema = z.strictObject({
  minTTL: seconds(0, 86_400, 30).describe('Seconds; shorter answer TTLs (0 included) are raised to this.'),
  maxTTL: seconds(1, 7 * 86_400, 86_400).describe('Seconds; longer answer TTLs are cut to this.'),
  grace: seconds(0, 3600, 30).describe('Seconds added to every learned element.'),
});

export type TtlSection = z.output<typeof TtlSectionSchema>;

export function ttlPolicyFrom(ttl: TtlSection): TtlPolicy {
  return { minTtlSeconds: ttl.minTTL, maxTtlSeconds: ttl.maxTTL, graceSeconds: ttl.grace };
}

/** The TTL policy can never produce a 0 timeout, and minTTL <= maxTTL. */
export function ttlSectionProblems(ttl: TtlSection): ConfigProblem[] {
  return ttlPolicyProblems(ttlPolicyFrom(ttl)).map((message) => ({ path: 'ttl', message }));
}
