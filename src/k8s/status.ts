/**
 * The status the controller writes on EgressPolicy and ClusterEgressPolicy objects; pure.
 * Conditions:
 * - Accepted: True when the policy validated; False (reason Invalid) with every problem and its
 *   field path otherwise.
 * - Programmed: True when the policy is part of the compiled set the agents enforce (they read
 *   the same objects and validate them the same way); False while it is invalid.
 * lastTransitionTime moves only when a condition's status changes, as Kubernetes conventions ask.
 * Conditions of other types belong to other writers (`namegate sync` writes NetworkPolicyWritten
 * with server-side apply) and are kept as they are.
 */

import type { Problem } from '../formats/native.ts';
import { problemsText } from './policy-source.ts';

/** The condition types the controller owns; any other type is another writer's. */
const OWN_TYPES: ReadonlySet<string> = new Set(['Accepted', 'Programmed']);

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

export interface PolicyStatus {
  observedGeneration?: number;
  conditions: Condition[];
  rules: number;
  governedPods: number;
}

export interface StatusInput {
  readonly generation: number | undefined;
  readonly errors: readonly Problem[];
  readonly rules: number;
  readonly governedPods: number;
  /** The status on the object now (to keep lastTransitionTime). */
  readonly previous: unknown;
  /** RFC 3339, seconds precision. */
  readonly now: string;
}

export function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function desiredStatus(input: StatusInput): PolicyStatus {
  const valid = input.errors.length === 0;
  const gen = input.generation;
  const previous = previousConditions(input.previous);
  const cond = (c: Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>): Condition => {
    const before = previous.get(c.type);
    return {
      ...c,
      ...(gen !== undefined ? { observedGeneration: gen } : {}),
      lastTransitionTime: before && before.status === c.status ? before.lastTransitionTime : input.now,
    };
  };
  return {
    ...(gen !== undefined ? { observedGeneration: gen } : {}),
    conditions: [
      valid
        ? cond({ type: 'Accepted', status: 'True', reason: 'Valid', message: 'the policy is valid' })
        : cond({ type: 'Accepted', status: 'False', reason: 'Invalid', message: problemsText(input.errors) }),
      valid
        ? cond({
            type: 'Programmed',
            status: 'True',
            reason: 'Compiled',
            message: 'the policy is in the set every agent enforces',
          })
        : cond({
            type: 'Programmed',
            status: 'False',
            reason: 'Invalid',
            message: 'not enforced: the policy is invalid',
          }),
      ...[...previous.values()].filter((c) => !OWN_TYPES.has(c.type)),
    ],
    rules: valid ? input.rules : 0,
    governedPods: valid ? input.governedPods : 0,
  };
}

function previousConditions(status: unknown): Map<string, Condition> {
  const out = new Map<string, Condition>();
  const conditions = (status as { conditions?: unknown } | undefined)?.conditions;
  if (!Array.isArray(conditions)) return out;
  for (const c of conditions) {
    if (c && typeof c === 'object' && typeof (c as Condition).type === 'string')
      out.set((c as Condition).type, c as Condition);
  }
  return out;
}

/** Is the status on the object already what we would write? */
export function statusEqual(current: unknown, desired: PolicyStatus): boolean {
  return JSON.stringify(normalize(current)) === JSON.stringify(normalize(desired));
}

function normalize(status: unknown): unknown {
  if (!status || typeof status !== 'object') return null;
  const s = status as Partial<PolicyStatus>;
  return {
    observedGeneration: s.observedGeneration ?? null,
    rules: s.rules ?? null,
    governedPods: s.governedPods ?? null,
    conditions: (s.conditions ?? [])
      .map((c) => [c.type, c.status, c.reason, c.message, c.observedGeneration ?? null, c.lastTransitionTime])
      .sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
  };
}
