/**
 * Google Cloud firewall policy rules (compute.networkFirewallPolicies addRule / patchRule /
 * removeRule bodies, `FirewallPolicyRule`) from policies, source groups and synced addresses
 * (pure); namegate makes no Google call.
 *
 * Each governed source group gets a block of priorities: one EGRESS allow rule per policy rule,
 * family and chunk of at most 5,000 destinations (`match.destIpRanges`, the API's limit),
 * matched on the group's own ranges (`match.srcIpRanges`) and the rule's ports; a toCIDRs
 * `except` becomes a deny rule placed before the allows; and, last in the block, a deny of every
 * other destination from the group. IPv4 and IPv6 never share a rule.
 */

import type { PortRange } from '../policy/model.ts';
import type { PlannedGroup } from './aws-plan.ts';
import { allowOnlyProblem } from './grants.ts';
import { hostCidr, portText } from './ports.ts';
import type { GcpSettings } from './settings.ts';

export const MAX_DEST_RANGES = 5000;

export interface FirewallPolicyRule {
  readonly priority: number;
  readonly direction: 'EGRESS';
  readonly action: 'allow' | 'deny';
  readonly description: string;
  readonly ruleName: string;
  readonly enableLogging: boolean;
  readonly match: {
    readonly srcIpRanges: readonly string[];
    readonly destIpRanges: readonly string[];
    readonly layer4Configs: ReadonlyArray<{
      readonly ipProtocol: string;
      readonly ports?: readonly string[];
    }>;
  };
}

export interface GcpGroupPlan {
  readonly group: string;
  readonly rules: readonly FirewallPolicyRule[];
}

export interface GcpProblem {
  readonly where: string;
  readonly reason: 'audit_mode' | 'not_governed' | 'priority_block' | 'no_sources';
  readonly message: string;
}

function layer4(ports: readonly PortRange[]): Array<{ ipProtocol: string; ports?: string[] }> {
  const by = new Map<string, string[] | null>();
  for (const p of ports) {
    const proto = p.protocol === 'TCP' ? 'tcp' : 'udp';
    const t = portText(p);
    const prior = by.get(proto);
    if (t === null || prior === null) by.set(proto, null);
    else by.set(proto, [...(prior ?? []), t]);
  }
  return [...by].map(([ipProtocol, list]) => (list === null ? { ipProtocol } : { ipProtocol, ports: list }));
}

function ruleName(text: string): string {
  const n = text
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '');
  return (/^[a-z]/.test(n) ? n : `ng-${n}`).slice(0, 63).replace(/-+$/, '');
}

export function planGcp(
  target: GcpSettings,
  groups: readonly PlannedGroup[],
): { plans: GcpGroupPlan[]; problems: GcpProblem[] } {
  const plans: GcpGroupPlan[] = [];
  const problems: GcpProblem[] = [];
  groups.forEach((g, gi) => {
    const where = `gcp source ${g.name}`;
    const problem = allowOnlyProblem(g.name, g.view.mode, where, 'firewall rules allow or deny');
    if (problem) {
      problems.push(problem);
      return;
    }
    const start = target.priorityStart + gi * target.priorityBlock;
    const rules: Omit<FirewallPolicyRule, 'priority'>[] = [];
    const denies: Omit<FirewallPolicyRule, 'priority'>[] = [];
    for (const family of [4, 6] as const) {
      const src = g.cidrs.filter((c) => c.includes(':') === (family === 6));
      if (src.length === 0) continue;
      for (const grant of g.view.grants) {
        const dests = [
          ...grant.addresses.filter((ip) => ip.includes(':') === (family === 6)).map(hostCidr),
          ...grant.cidrs.filter((c) => c.cidr.family === family).map((c) => c.cidr.text),
        ];
        const excepts = grant.cidrs
          .filter((c) => c.cidr.family === family)
          .flatMap((c) => c.except.map((e) => e.text));
        const l4 = layer4(grant.ports);
        const label = `namegate ${g.name} ${grant.policy} rule ${grant.rule}`;
        if (excepts.length > 0) {
          denies.push({
            direction: 'EGRESS',
            action: 'deny',
            description: `${label}: toCIDRs except`,
            ruleName: ruleName(`ng-${g.name}-except-${grant.rule}-v${family}`),
            enableLogging: false,
            match: { srcIpRanges: src, destIpRanges: excepts, layer4Configs: [{ ipProtocol: 'all' }] },
          });
        }
        for (let i = 0; i < dests.length; i += MAX_DEST_RANGES) {
          rules.push({
            direction: 'EGRESS',
            action: 'allow',
            description: label.slice(0, 2048),
            ruleName: ruleName(`ng-${g.name}-${grant.rule}-v${family}-${i / MAX_DEST_RANGES}`),
            enableLogging: false,
            match: { srcIpRanges: src, destIpRanges: dests.slice(i, i + MAX_DEST_RANGES), layer4Configs: l4 },
          });
        }
      }
      rules.push({
        direction: 'EGRESS',
        action: 'deny',
        description: `namegate ${g.name}: every other destination`,
        ruleName: ruleName(`ng-${g.name}-deny-v${family}`),
        enableLogging: true,
        match: {
          srcIpRanges: src,
          destIpRanges: [family === 4 ? '0.0.0.0/0' : '::/0'],
          layer4Configs: [{ ipProtocol: 'all' }],
        },
      });
    }
    if (rules.length === 0) {
      problems.push({ where, reason: 'no_sources', message: 'the source group has no CIDRs' });
      return;
    }
    const ordered = [...denies, ...rules];
    if (ordered.length > target.priorityBlock) {
      problems.push({
        where,
        reason: 'priority_block',
        message: `${ordered.length} rules do not fit a block of ${target.priorityBlock} priorities; nothing written for the group`,
      });
      return;
    }
    plans.push({ group: g.name, rules: ordered.map((r, i) => ({ priority: start + i, ...r })) });
  });
  return { plans, problems };
}

export interface RuleChange {
  readonly method: 'addRule' | 'patchRule' | 'removeRule';
  readonly priority: number;
  readonly rule?: FirewallPolicyRule;
}

/** The calls that turn the previous rules of a group into the next ones, by priority. */
export function gcpChanges(
  prev: readonly FirewallPolicyRule[],
  next: readonly FirewallPolicyRule[],
): RuleChange[] {
  const before = new Map(prev.map((r) => [r.priority, r]));
  const after = new Map(next.map((r) => [r.priority, r]));
  const out: RuleChange[] = [];
  for (const [priority, rule] of after) {
    const old = before.get(priority);
    if (!old) out.push({ method: 'addRule', priority, rule });
    else if (JSON.stringify(old) !== JSON.stringify(rule)) out.push({ method: 'patchRule', priority, rule });
  }
  for (const priority of before.keys())
    if (!after.has(priority)) out.push({ method: 'removeRule', priority });
  return out.sort((a, b) => a.priority - b.priority);
}
