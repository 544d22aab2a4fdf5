/**
 * From policies and the synced addresses to what each rule allows (pure): the shared first step
 * of every planner. A rule's exact names contribute the addresses the window holds for them;
 * its wildcards contribute nothing (they are reported); its toCIDRs stay CIDRs.
 */
import type { CompiledPolicies } from '../policy/compile.ts';
import type { CidrRule, Identity, Mode, Policy, PortRange } from '../policy/model.ts';
import { compareIps } from './window.ts';

export type AddressesOf = (name: string) => readonly string[];

export interface RuleGrant {
  /** Index of the rule in its policy. */
  readonly rule: number;
  readonly ports: readonly PortRange[];
  /** Synced addresses of the rule's exact names, sorted, once. */
  readonly addresses: readonly string[];
  readonly cidrs: readonly CidrRule[];
  /** Exact names of the rule that have no address yet (not resolved, failed, or none). */
  readonly unresolved: readonly string[];
  /** Wildcard patterns of the rule: nothing is written for them. */
  readonly wildcards: readonly string[];
}

export function ruleGrants(policy: Policy, addressesOf: AddressesOf): RuleGrant[] {
  return policy.rules.map((rule, i) => {
    const addresses = new Set<string>();
    const unresolved: string[] = [];
    const wildcards: string[] = [];
    for (const f of rule.fqdns) {
      if (f.pattern.kind !== 'exact') {
        wildcards.push(f.text);
        continue;
      }
      const ips = addressesOf(f.pattern.name);
      if (ips.length === 0) unresolved.push(f.pattern.name);
      for (const ip of ips) addresses.add(ip);
    }
    return {
      rule: i,
      ports: rule.ports,
      addresses: [...addresses].sort(compareIps),
      cidrs: rule.cidrs,
      unresolved,
      wildcards,
    };
  });
}

/** One destination grant of a source group: these addresses (or CIDRs) on these ports. */
export interface GroupGrant {
  /** "namespace/name" of the policy and the rule index, for descriptions. */
  readonly policy: string;
  readonly rule: number;
  readonly ports: readonly PortRange[];
  readonly addresses: readonly string[];
  readonly cidrs: readonly CidrRule[];
}

export interface GroupView {
  /** Enforce or Audit; null: no policy selects the group. */
  readonly mode: Mode | null;
  readonly grants: readonly GroupGrant[];
}

/** What the policies that select `identity` allow it, with the synced addresses. */
export function groupGrants(set: CompiledPolicies, identity: Identity, addressesOf: AddressesOf): GroupView {
  const selection = set.selection(identity);
  const grants: GroupGrant[] = [];
  for (const p of selection.policies) {
    const policy = set.policies[p] as Policy;
    const ref =
      policy.ref.namespace === null ? policy.ref.name : `${policy.ref.namespace}/${policy.ref.name}`;
    for (const g of ruleGrants(policy, addressesOf)) {
      if (g.addresses.length === 0 && g.cidrs.length === 0) continue;
      grants.push({ policy: ref, rule: g.rule, ports: g.ports, addresses: g.addresses, cidrs: g.cidrs });
    }
  }
  return { mode: selection.mode, grants };
}

/** The groups of a StaticGroups-like provider: one identity each, with every CIDR it owns. */
export function groupsOf(
  entries: Iterable<readonly [string, Identity]>,
): Array<{ readonly name: string; readonly identity: Identity; readonly cidrs: readonly string[] }> {
  const byIdentity = new Map<Identity, string[]>();
  for (const [cidr, identity] of entries) {
    const list = byIdentity.get(identity) ?? [];
    list.push(cidr);
    byIdentity.set(identity, list);
  }
  return [...byIdentity].map(([identity, cidrs]) => ({
    name: identity.key.startsWith('group:') ? identity.key.slice('group:'.length) : identity.key,
    identity,
    cidrs,
  }));
}

/** Why a source group gets nothing written by a target that only allows (the clouds). */
export interface GroupProblem {
  readonly where: string;
  readonly reason: 'not_governed' | 'audit_mode';
  readonly message: string;
}

/**
 * Null when the group can be written by an allow-only target; otherwise the reason: no policy
 * selects it, or only Audit policies do (the target has no audit mode; `why` says so).
 */
export function allowOnlyProblem(
  name: string,
  mode: Mode | null,
  where: string,
  why: string,
): GroupProblem | null {
  if (mode === null)
    return { where, reason: 'not_governed', message: `no policy selects source group "${name}"` };
  if (mode === 'Audit')
    return { where, reason: 'audit_mode', message: `Audit policies are not written (${why})` };
  return null;
}
