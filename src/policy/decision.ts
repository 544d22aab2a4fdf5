/**
 * A decision as a plain value: verdict, reason code, the policy and rule that decided, and the
 * mode. The compiler builds the decisions that name a rule once (compile.ts), decide.ts hands
 * them out; tests and logs read the same fields.
 */
import type { Mode, PolicyRef } from './model.ts';

export type Verdict = 'allow' | 'deny' | 'audit';

export const Reason = {
  /** A toFQDNs rule allows the name (and port). */
  FqdnRule: 'fqdn_rule',
  /** A toCIDRs rule allows the address (and port). */
  CidrRule: 'cidr_rule',
  /** No policy selects the source. */
  Ungoverned: 'ungoverned',
  /** No rule of the selecting policies matches the name. */
  NoMatchingRule: 'no_matching_rule',
  /** A rule matches the name but not this protocol and port. */
  PortNotAllowed: 'port_not_allowed',
} as const;
export type Reason = (typeof Reason)[keyof typeof Reason];

export interface Decision {
  readonly verdict: Verdict;
  readonly reason: Reason;
  /** The policy whose rule decided, or that came closest (port_not_allowed); else null. */
  readonly policy: PolicyRef | null;
  /** Index of that rule in the policy's spec.egress. */
  readonly rule: number | null;
  /** The mode the source is governed in; null when ungoverned. */
  readonly mode: Mode | null;
}

/** The four decisions that name a rule (IndexedRule.decisions), built once at compile time. */
export function ruleDecisions(policy: PolicyRef, rule: number): [Decision, Decision, Decision, Decision] {
  const make = (verdict: Verdict, reason: Reason, mode: Mode): Decision =>
    Object.freeze({ verdict, reason, policy, rule, mode });
  return [
    make('allow', Reason.FqdnRule, 'Enforce'),
    make('allow', Reason.FqdnRule, 'Audit'),
    make('deny', Reason.PortNotAllowed, 'Enforce'),
    make('audit', Reason.PortNotAllowed, 'Audit'),
  ];
}
