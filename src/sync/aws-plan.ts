/**
 * AWS request shapes from policies, source groups and synced addresses (pure), as JSON files a
 * user applies with the AWS CLI (`--cli-input-json`); namegate makes no AWS call.
 *
 * - Security group egress (EC2 AuthorizeSecurityGroupEgress / RevokeSecurityGroupEgress): for
 *   each configured group, one IpPermission per (protocol, port range) with the synced /32 and
 *   /128 addresses and the toCIDRs of the policies that select its source group. The full set
 *   and the difference to the previous pass (what to authorize, what to revoke) are written;
 *   AWS counts one rule per (protocol, ports, CIDR) against the group's quota, which is checked.
 * - Network Firewall (UpdateRuleGroup / CreateRuleGroup): one stateful rule group, strict order:
 *   per source group and rule, an IP set variable of its destinations and a PASS rule per port
 *   range, then a DROP of everything else from the group's sources. The update token is not
 *   known here: pass it on the command line (`--update-token`).
 *
 * Audit policies have no counterpart (a security group only allows), so Audit groups are
 * reported and not written.
 */

import type { PortRange } from '../policy/model.ts';
import { allowOnlyProblem, type GroupGrant, type GroupView } from './grants.ts';
import { firstPort, hostCidr, isAnyPort } from './ports.ts';
import type { AwsSettings } from './settings.ts';

export interface IpPermission {
  readonly IpProtocol: 'tcp' | 'udp';
  readonly FromPort: number;
  readonly ToPort: number;
  readonly IpRanges?: ReadonlyArray<{ readonly CidrIp: string; readonly Description: string }>;
  readonly Ipv6Ranges?: ReadonlyArray<{ readonly CidrIpv6: string; readonly Description: string }>;
}

export interface SecurityGroupRequest {
  readonly GroupId: string;
  readonly IpPermissions: readonly IpPermission[];
}

export interface PlannedGroup {
  readonly name: string;
  readonly cidrs: readonly string[];
  readonly view: GroupView;
}

export interface AwsProblem {
  readonly where: string;
  readonly reason: 'audit_mode' | 'not_governed' | 'quota' | 'capacity' | 'no_sources';
  readonly message: string;
}

export interface SecurityGroupPlan {
  readonly groupId: string;
  readonly source: string;
  /** Everything the group should allow, as one AuthorizeSecurityGroupEgress request. */
  readonly desired: SecurityGroupRequest;
  /** AWS rules it counts as (one per protocol, ports and CIDR). */
  readonly rules: number;
}

/** AWS descriptions: up to 255 characters of a restricted set. */
function description(text: string): string {
  return text.replace(/[^a-zA-Z0-9 ._\-:/()#,@[\]+=&;{}!$*]/g, '_').slice(0, 255);
}

function fromTo(p: PortRange): [number, number] {
  return isAnyPort(p) ? [0, 65535] : [firstPort(p), p.to];
}

/** One IpPermission per (protocol, from, to), its CIDRs sorted and once. */
export function ipPermissions(grants: readonly GroupGrant[]): IpPermission[] {
  const byKey = new Map<string, { p: PortRange; v4: Map<string, string>; v6: Map<string, string> }>();
  for (const g of grants) {
    const why = description(`namegate ${g.policy} rule ${g.rule}`);
    const dests = [
      ...g.addresses.map(hostCidr),
      ...g.cidrs.filter((c) => c.except.length === 0).map((c) => c.cidr.text),
    ];
    for (const p of g.ports) {
      const [from, to] = fromTo(p);
      const key = `${p.protocol}|${from}|${to}`;
      const entry = byKey.get(key) ?? { p, v4: new Map(), v6: new Map() };
      for (const d of dests) (d.includes(':') ? entry.v6 : entry.v4).set(d, entry.v4.get(d) ?? why);
      byKey.set(key, entry);
    }
  }
  const out: IpPermission[] = [];
  for (const [key, e] of [...byKey].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const [proto, from, to] = key.split('|');
    const v4 = [...e.v4].sort(([a], [b]) => (a < b ? -1 : 1));
    const v6 = [...e.v6].sort(([a], [b]) => (a < b ? -1 : 1));
    if (v4.length === 0 && v6.length === 0) continue;
    out.push({
      IpProtocol: proto === 'TCP' ? 'tcp' : 'udp',
      FromPort: Number(from),
      ToPort: Number(to),
      ...(v4.length > 0 ? { IpRanges: v4.map(([CidrIp, Description]) => ({ CidrIp, Description })) } : {}),
      ...(v6.length > 0
        ? { Ipv6Ranges: v6.map(([CidrIpv6, Description]) => ({ CidrIpv6, Description })) }
        : {}),
    });
  }
  return out;
}

export function ruleCount(perms: readonly IpPermission[]): number {
  return perms.reduce((n, p) => n + (p.IpRanges?.length ?? 0) + (p.Ipv6Ranges?.length ?? 0), 0);
}

/** What `next` adds to `prev` and what it takes away, per (protocol, ports, CIDR). */
export function permissionDelta(
  prev: readonly IpPermission[],
  next: readonly IpPermission[],
): { authorize: IpPermission[]; revoke: IpPermission[] } {
  const flat = (perms: readonly IpPermission[]) => {
    const m = new Map<string, { perm: IpPermission; cidr: string; why: string }>();
    for (const p of perms) {
      for (const r of p.IpRanges ?? [])
        m.set(`${p.IpProtocol}|${p.FromPort}|${p.ToPort}|${r.CidrIp}`, {
          perm: p,
          cidr: r.CidrIp,
          why: r.Description,
        });
      for (const r of p.Ipv6Ranges ?? [])
        m.set(`${p.IpProtocol}|${p.FromPort}|${p.ToPort}|${r.CidrIpv6}`, {
          perm: p,
          cidr: r.CidrIpv6,
          why: r.Description,
        });
    }
    return m;
  };
  const a = flat(prev);
  const b = flat(next);
  const regroup = (items: Array<{ perm: IpPermission; cidr: string; why: string }>): IpPermission[] => {
    const groups = new Map<
      string,
      { perm: IpPermission; v4: Array<[string, string]>; v6: Array<[string, string]> }
    >();
    for (const i of items) {
      const key = `${i.perm.IpProtocol}|${i.perm.FromPort}|${i.perm.ToPort}`;
      const g = groups.get(key) ?? { perm: i.perm, v4: [], v6: [] };
      (i.cidr.includes(':') ? g.v6 : g.v4).push([i.cidr, i.why]);
      groups.set(key, g);
    }
    return [...groups.values()].map((g) => ({
      IpProtocol: g.perm.IpProtocol,
      FromPort: g.perm.FromPort,
      ToPort: g.perm.ToPort,
      ...(g.v4.length > 0
        ? { IpRanges: g.v4.map(([CidrIp, Description]) => ({ CidrIp, Description })) }
        : {}),
      ...(g.v6.length > 0
        ? { Ipv6Ranges: g.v6.map(([CidrIpv6, Description]) => ({ CidrIpv6, Description })) }
        : {}),
    }));
  };
  return {
    authorize: regroup([...b].filter(([k]) => !a.has(k)).map(([, v]) => v)),
    revoke: regroup([...a].filter(([k]) => !b.has(k)).map(([, v]) => v)),
  };
}

export function planSecurityGroups(
  target: AwsSettings,
  groups: ReadonlyMap<string, PlannedGroup>,
): { plans: SecurityGroupPlan[]; problems: AwsProblem[] } {
  const plans: SecurityGroupPlan[] = [];
  const problems: AwsProblem[] = [];
  for (const sg of target.securityGroups) {
    const g = groups.get(sg.source);
    const where = `securityGroups ${sg.groupId}`;
    const problem = allowOnlyProblem(sg.source, g?.view.mode ?? null, where, 'a security group cannot audit');
    if (problem || !g) {
      if (problem) problems.push(problem);
      continue;
    }
    const perms = ipPermissions(g.view.grants);
    const rules = ruleCount(perms);
    if (rules > target.maxRulesPerSecurityGroup) {
      problems.push({
        where,
        reason: 'quota',
        message: `${rules} egress rules; the group may hold ${target.maxRulesPerSecurityGroup} (AWS rejects the rest: raise the quota, or use the Network Firewall target)`,
      });
    }
    plans.push({
      groupId: sg.groupId,
      source: sg.source,
      desired: { GroupId: sg.groupId, IpPermissions: perms },
      rules,
    });
  }
  return { plans, problems };
}

export interface StatefulRule {
  readonly Action: 'PASS' | 'DROP';
  readonly Header: {
    readonly Protocol: 'TCP' | 'UDP' | 'IP';
    readonly Source: string;
    readonly SourcePort: 'ANY';
    readonly Direction: 'FORWARD';
    readonly Destination: string;
    readonly DestinationPort: string;
  };
  readonly RuleOptions: ReadonlyArray<{ readonly Keyword: string; readonly Settings?: readonly string[] }>;
}

export interface RuleGroupBody {
  readonly RuleVariables: { readonly IPSets: Record<string, { readonly Definition: readonly string[] }> };
  readonly RulesSource: { readonly StatefulRules: readonly StatefulRule[] };
  readonly StatefulRuleOptions: { readonly RuleOrder: 'STRICT_ORDER' };
}

export interface RuleGroupPlan {
  /** UpdateRuleGroup input, without UpdateToken (pass it with --update-token). */
  readonly update: { RuleGroupName: string; Type: 'STATEFUL'; Description: string; RuleGroup: RuleGroupBody };
  /** CreateRuleGroup input, for the first time. */
  readonly create: {
    RuleGroupName: string;
    Type: 'STATEFUL';
    Capacity: number;
    Description: string;
    RuleGroup: RuleGroupBody;
  };
  readonly rules: number;
}

function nfwPort(p: PortRange): string {
  if (isAnyPort(p)) return 'ANY';
  const from = firstPort(p);
  return from === p.to ? String(from) : `${from}:${p.to}`;
}

export function planRuleGroup(
  target: NonNullable<AwsSettings['networkFirewall']>,
  groups: readonly PlannedGroup[],
): { plan: RuleGroupPlan | null; problems: AwsProblem[] } {
  const problems: AwsProblem[] = [];
  const ipSets: Record<string, { Definition: string[] }> = {};
  const rules: StatefulRule[] = [];
  let sid = 1_000_000;
  const rule = (
    action: 'PASS' | 'DROP',
    protocol: 'TCP' | 'UDP' | 'IP',
    src: string,
    dst: string,
    port: string,
    msg: string,
  ) =>
    rules.push({
      Action: action,
      Header: {
        Protocol: protocol,
        Source: src,
        SourcePort: 'ANY',
        Direction: 'FORWARD',
        Destination: dst,
        DestinationPort: port,
      },
      RuleOptions: [
        { Keyword: 'msg', Settings: [JSON.stringify(msg.replace(/["\\;]/g, '_'))] },
        { Keyword: 'sid', Settings: [String(++sid)] },
      ],
    });
  groups.forEach((g, gi) => {
    const where = `networkFirewall source ${g.name}`;
    const problem = allowOnlyProblem(g.name, g.view.mode, where, 'the rule group only passes and drops');
    if (problem) {
      problems.push(problem);
      return;
    }
    if (g.cidrs.length === 0) {
      problems.push({ where, reason: 'no_sources', message: 'the source group has no CIDRs' });
      return;
    }
    const src = `NG_S${gi}`;
    ipSets[src] = { Definition: [...g.cidrs] };
    g.view.grants.forEach((grant, ri) => {
      const dests = [
        ...grant.addresses.map(hostCidr),
        ...grant.cidrs.filter((c) => c.except.length === 0).map((c) => c.cidr.text),
      ];
      if (dests.length === 0) return;
      const dst = `NG_S${gi}_R${ri}`;
      ipSets[dst] = { Definition: dests };
      for (const p of grant.ports)
        rule(
          'PASS',
          p.protocol,
          `$${src}`,
          `$${dst}`,
          nfwPort(p),
          `namegate ${g.name} ${grant.policy} rule ${grant.rule}`,
        );
    });
    rule('DROP', 'IP', `$${src}`, 'ANY', 'ANY', `namegate ${g.name}: not allowed`);
  });
  if (rules.length === 0) return { plan: null, problems };
  if (rules.length > target.capacity) {
    problems.push({
      where: `networkFirewall ${target.ruleGroupName}`,
      reason: 'capacity',
      message: `${rules.length} stateful rules; the rule group's capacity is ${target.capacity}`,
    });
  }
  const body: RuleGroupBody = {
    RuleVariables: { IPSets: ipSets },
    RulesSource: { StatefulRules: rules },
    StatefulRuleOptions: { RuleOrder: 'STRICT_ORDER' },
  };
  const desc = 'namegate sync: FQDN allowlists following DNS';
  return {
    plan: {
      update: { RuleGroupName: target.ruleGroupName, Type: 'STATEFUL', Description: desc, RuleGroup: body },
      create: {
        RuleGroupName: target.ruleGroupName,
        Type: 'STATEFUL',
        Capacity: target.capacity,
        Description: desc,
        RuleGroup: body,
      },
      rules: rules.length,
    },
    problems,
  };
}
