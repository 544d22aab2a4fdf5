/**
 * Does a connection get inspected, and under which rules? Asked by the SNI proxy once per
 * connection it has allowed (decide: name and port; the proxy: the learned address).
 *
 * A connection is inspected only when every rule of the source's policies that allows its name
 * and port asks for it (`verify: Inspect`, the name not in that rule's `passThrough`). Allow
 * rules add up: one rule that allows the name without inspection already lets every request
 * through, so terminating TLS would add nothing but a certificate a pinned client refuses.
 * The rules come in decision order (policy order, then rule order) for decideRequest.
 */
import type { CanonicalName } from '../core/names.ts';
import type { CompiledPolicies } from './compile.ts';
import { grantsFor, portAllows } from './decide.ts';
import type { GrantedRule } from './decide-request.ts';
import type { Identity } from './model.ts';
import { policyRefText } from './model.ts';
import { patternMatches } from './pattern.ts';

export interface Inspection {
  readonly inspect: boolean;
  /** Every rule allowing the name and port; with inspect, each carries its HTTP rules. */
  readonly rules: readonly GrantedRule[];
}

const NONE: Inspection = Object.freeze({ inspect: false, rules: [] });

export function inspectionFor(
  set: CompiledPolicies,
  identity: Identity,
  name: CanonicalName,
  port: number,
): Inspection {
  const grants = grantsFor(set, identity, name)
    .filter((g) => portAllows(g.ports, 'TCP', port))
    .sort((a, b) => a.ref.policy - b.ref.policy || a.ref.rule - b.ref.rule);
  if (grants.length === 0) return NONE;
  let inspect = true;
  const rules = grants.map((g): GrantedRule => {
    const rule = set.rule(g.ref);
    const policy = policyRefText(set.policies[g.ref.policy]!.ref);
    const passed = rule.passThrough.some((f) => patternMatches(f.pattern, name));
    if (rule.verify !== 'Inspect' || passed) {
      inspect = false;
      return { policy, rule: g.ref.rule, http: null };
    }
    return { policy, rule: g.ref.rule, http: rule.http };
  });
  return { inspect, rules };
}
