/**
 * What the sync can resolve (pure). Exact names are resolved; a wildcard (`*.x`, `**.x`, a
 * label glob) names no finite set of names, so it is reported with the advice to use the DNS
 * proxy for it and never turned into anything wider.
 */
import type { CanonicalName } from '../core/names.ts';
import { type Policy, policyRefText } from '../policy/model.ts';

export interface UnresolvablePattern {
  /** The pattern as written (canonicalized). */
  readonly pattern: string;
  /** "namespace/name" of every policy that has it. */
  readonly policies: readonly string[];
}

export interface NamePlan {
  /** Every exact name of every policy, sorted, once. */
  readonly names: readonly CanonicalName[];
  readonly wildcards: readonly UnresolvablePattern[];
}

export const WILDCARD_ADVICE =
  'a wildcard cannot be resolved ahead of time; nothing is written for it: use the DNS proxy (namegate agent) for names it should allow';

export function planNames(policies: readonly Policy[]): NamePlan {
  const names = new Set<CanonicalName>();
  const wildcards = new Map<string, Set<string>>();
  for (const policy of policies) {
    for (const rule of policy.rules) {
      for (const f of rule.fqdns) {
        if (f.pattern.kind === 'exact') {
          names.add(f.pattern.name);
          continue;
        }
        const users = wildcards.get(f.text) ?? new Set<string>();
        users.add(policyRefText(policy.ref));
        wildcards.set(f.text, users);
      }
    }
  }
  return {
    names: [...names].sort(),
    wildcards: [...wildcards]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([pattern, users]) => ({ pattern, policies: [...users].sort() })),
  };
}
