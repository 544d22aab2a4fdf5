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
 * Where several rules qualify, the decision names the first in policy order, then rule order.
 */
import { addressClass } from '../core/address-class.ts';
import type { CanonicalName } from '../core/names.ts';
import type { CompiledPolicies, IndexedRule, RuleRef, Selection } from './compile.ts';
import { type Decision, Reason } from './decision.ts';
import type { Identity, Mode, PortRange, Protocol, Verify } from './model.ts';

export { type Decision, Reason, ruleDecisions, type Verdict } from './decision.ts';

/** What a name grants a source: the port ranges learned elements carry, and how they are checked. */
export interface Grant {
  readonly ports: readonly PortRange[];
  readonly verify: Verify;
  readonly ref: RuleRef;
}

// Decisions are plain frozen values; the ones that do not depend on the question are shared.
const UNGOVERNED: Decision = Object.freeze({
  verdict: 'allow',
  reason: Reason.Ungoverned,
  policy: null,
  rule: null,
  mode: null,
});
const NO_MATCH: readonly [Decision, Decision] = [
  Object.freeze({
    verdict: 'deny',
    reason: Reason.NoMatchingRule,
    policy: null,
    rule: null,
    mode: 'Enforce',
  }),
  Object.freeze({ verdict: 'audit', reason: Reason.NoMatchingRule, policy: null, rule: null, mode: 'Audit' }),
];

// Reused across calls: decisions are synchronous, so one scratch array is enough and saves an
// allocation per decision on the DNS hot path. It is never truncated (that would free its
// storage): matchingRules returns how many of its entries are this decision's.
const scratch: IndexedRule[] = [];

/** Fill scratch[0..n) with the rules of selected policies that match `name`; returns n. */
function matchingRules(set: CompiledPolicies, selection: Selection, name: CanonicalName): number {
  const n = set.fqdns.matchInto(name, scratch, 0);
  if (n === 0) return 0;
  // The identity's bits in the block it shares with others (CompiledPolicies.#place).
  const bits = selection.bits;
  const base = selection.base;
  let kept = 0;
  for (let i = 0; i < n; i++) {
    const ref = scratch[i] as IndexedRule;
    const p = ref.policy;
    if ((((bits[base + (p >>> 5)] as number) >>> (p & 31)) & 1) === 1) scratch[kept++] = ref;
  }
  return kept;
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

/**
 * Of several matching rules, the decision names the first in policy order (the sorted order of
 * CompiledPolicies), then rule order: the same answer whatever order the index reports matches
 * in, and one people can predict from the policy names.
 */
function earlier(a: RuleRef, b: RuleRef | null): boolean {
  return b === null || a.policy < b.policy || (a.policy === b.policy && a.rule < b.rule);
}

function firstOf<R extends RuleRef>(refs: readonly R[], n = refs.length): R | null {
  let best: R | null = null;
  for (let i = 0; i < n; i++) {
    const ref = refs[i] as R;
    if (earlier(ref, best)) best = ref;
  }
  return best;
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
  const n = matchingRules(set, selection, name);
  const m = mode === 'Enforce' ? 0 : 1;
  if (n === 0) return NO_MATCH[m] as Decision;
  const refs = scratch;
  const table = set.portTable;
  const proto = protocol === 'TCP' ? 0 : 1;
  let best: IndexedRule | null = null;
  for (let i = 0; i < n; i++) {
    const ref = refs[i] as IndexedRule;
    if (!earlier(ref, best)) continue;
    // portAllows(ref.ports, protocol, port), on the compact copy of the ranges
    for (let k = ref.portStart; k < ref.portEnd; k += 3) {
      if (table[k] === proto && port >= (table[k + 1] as number) && port <= (table[k + 2] as number)) {
        best = ref;
        break;
      }
    }
  }
  if (best) return best.decisions[m] as Decision;
  return (firstOf(refs, n) as IndexedRule).decisions[2 + m] as Decision;
}

/** May `identity` resolve `name` at all? True when some rule for the name allows some port. */
export function decideQuery(set: CompiledPolicies, identity: Identity, name: CanonicalName): Decision {
  const selection = set.selection(identity);
  const mode = selection.mode;
  if (mode === null) return UNGOVERNED;
  const first = firstOf(scratch, matchingRules(set, selection, name));
  const m = mode === 'Enforce' ? 0 : 1;
  if (!first) return NO_MATCH[m] as Decision;
  return first.decisions[m] as Decision;
}

/** The port ranges (per rule) that resolving `name` opens for `identity`. */
export function grantsFor(set: CompiledPolicies, identity: Identity, name: CanonicalName): Grant[] {
  const selection = set.selection(identity);
  if (selection.mode === null) return [];
  const n = matchingRules(set, selection, name);
  const out: Grant[] = [];
  for (let i = 0; i < n; i++) {
    const r = scratch[i] as IndexedRule;
    out.push({ ports: r.ports, verify: r.verify, ref: r.ref });
  }
  return out;
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
  if (refs.length === 0) return NO_MATCH[mode === 'Enforce' ? 0 : 1] as Decision;
  let best: RuleRef | null = null;
  for (const ref of refs) {
    if (earlier(ref, best) && portAllows(set.rule(ref).ports, protocol, port)) best = ref;
  }
  if (best) return allow(set, mode, Reason.CidrRule, best);
  return deny(set, mode, Reason.PortNotAllowed, firstOf(refs));
}

/** Does a toCIDRs rule of a selecting policy cover `ip`? Lets answers in denied ranges be learned. */
export function cidrCovers(set: CompiledPolicies, identity: Identity, ip: string): boolean {
  const selection = set.selection(identity);
  return selection.mode !== null && set.cidrRulesFor(selection, ip).length > 0;
}

/**
 * May an address from a DNS answer be opened for this source? Public addresses may; one in a
 * denied range (private, loopback, link-local, CGNAT, multicast, IPv4-embedding IPv6, ...) only
 * when a toCIDRs rule of the source covers it, so an answer never widens access into internal
 * networks (DNS rebinding). One rule for the DNS proxy's learning, the enforcer's resync and the
 * CONNECT proxy's dial.
 */
export function answerAddressAllowed(set: CompiledPolicies, identity: Identity, ip: string): boolean {
  return addressClass(ip) === 'public' || cidrCovers(set, identity, ip);
}
