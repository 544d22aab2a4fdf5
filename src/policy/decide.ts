/**
 * Decisions as plain values. Every component that needs to know "may this source reach this
 * name" asks here, so the DNS proxy, the proxies, the CLI and the tests cannot disagree.
 *
 * Rule order for decide():
 *   1. No policy selects the source: allow, reason `ungoverned` (namegate does not touch it).
 *   2. The source is governed in Enforce mode if any Enforce policy selects it, else in Audit
 *      mode; only the policies of that mode count.
 *   3. A rule of one of those policies matches the name and lists the port: allow.
 *   4. Otherwise deny (Enforce) or audit (Audit: would deny, passes), with the reason
 *      `no_matching_rule` or `port_not_allowed`.
 */
import type { CanonicalName } from '../core/names.ts';
import type { CompiledPolicies, RuleRef, Selection } from './compile.ts';
import type { Identity, Mode, PolicyRef, PortRange, Protocol, Verify } from './model.ts';

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

/** What a name grants a source: the port ranges learned elements carry, and how they are checked. */
export interface Grant {
  readonly ports: readonly PortRange[];
  readonly verify: Verify;
  readonly ref: RuleRef;
}

const UNGOVERNED: Decision = {
  verdict: 'allow',
  reason: Reason.Ungoverned,
  policy: null,
  rule: null,
  mode: null,
};

// Reused across calls: decisions are synchronous, so one scratch array is enough and saves an
// allocation per decision on the DNS hot path.
const scratch: RuleRef[] = [];

function matchingRules(set: CompiledPolicies, selection: Selection, name: CanonicalName): RuleRef[] {
  scratch.length = 0;
  set.fqdns.match(name, scratch);
  let kept = 0;
  for (let i = 0; i < scratch.length; i++) {
    const ref = scratch[i] as RuleRef;
    if (selection.selected[ref.policy] === 1) scratch[kept++] = ref;
  }
  scratch.length = kept;
  return scratch;
}

function deny(set: CompiledPolicies, mode: Mode, reason: Reason, ref: RuleRef | null): Decision {
  return {
    verdict: mode === 'Audit' ? 'audit' : 'deny',
    reason,
    policy: ref ? (set.policies[ref.policy]?.ref ?? null) : null,
    rule: ref ? ref.rule : null,
    mode,
  };
}

function allow(set: CompiledPolicies, mode: Mode, reason: Reason, ref: RuleRef): Decision {
  return { verdict: 'allow', reason, policy: set.policies[ref.policy]?.ref ?? null, rule: ref.rule, mode };
}

export function portAllows(ranges: readonly PortRange[], protocol: Protocol, port: number): boolean {
  for (const r of ranges) {
    if (r.protocol === protocol && port >= r.from && port <= r.to) return true;
  }
  return false;
}

/** May `identity` connect to `name` on `protocol`/`port`? */
export function decide(
  set: CompiledPolicies,
  identity: Identity,
  name: CanonicalName,
  protocol: Protocol,
  port: number,
): Decision {
  const selection = set.selection(identity);
  const mode = selection.mode;
  if (mode === null) return UNGOVERNED;
  const refs = matchingRules(set, selection, name);
  if (refs.length === 0) return deny(set, mode, Reason.NoMatchingRule, null);
  for (const ref of refs) {
    if (portAllows(set.rule(ref).ports, protocol, port)) return allow(set, mode, Reason.FqdnRule, ref);
  }
  return deny(set, mode, Reason.PortNotAllowed, refs[0] ?? null);
}

/** May `identity` resolve `name` at all? True when some rule for the name allows some port. */
export function decideQuery(set: CompiledPolicies, identity: Identity, name: CanonicalName): Decision {
  const selection = set.selection(identity);
  const mode = selection.mode;
  if (mode === null) return UNGOVERNED;
  const refs = matchingRules(set, selection, name);
  const first = refs[0];
  if (!first) return deny(set, mode, Reason.NoMatchingRule, null);
  return allow(set, mode, Reason.FqdnRule, first);
}

/** The port ranges (per rule) that resolving `name` opens for `identity`. */
export function grantsFor(set: CompiledPolicies, identity: Identity, name: CanonicalName): Grant[] {
  const selection = set.selection(identity);
  if (selection.mode === null) return [];
  return matchingRules(set, selection, name).map((ref) => {
    const rule = set.rule(ref);
    return { ports: rule.ports, verify: rule.verify, ref };
  });
}

/** May `identity` connect to the address `ip` by a toCIDRs rule? */
export function decideAddress(
  set: CompiledPolicies,
  identity: Identity,
  ip: string,
  protocol: Protocol,
  port: number,
): Decision {
  const selection = set.selection(identity);
  const mode = selection.mode;
  if (mode === null) return UNGOVERNED;
  const refs = set.cidrRulesFor(selection, ip);
  if (refs.length === 0) return deny(set, mode, Reason.NoMatchingRule, null);
  for (const ref of refs) {
    if (portAllows(set.rule(ref).ports, protocol, port)) return allow(set, mode, Reason.CidrRule, ref);
  }
  return deny(set, mode, Reason.PortNotAllowed, refs[0] ?? null);
}

/** Does a toCIDRs rule of a selecting policy cover `ip`? Lets answers in denied ranges be learned. */
export function cidrCovers(set: CompiledPolicies, identity: Identity, ip: string): boolean {
  const selection = set.selection(identity);
  return selection.mode !== null && set.cidrRulesFor(selection, ip).length > 0;
}
