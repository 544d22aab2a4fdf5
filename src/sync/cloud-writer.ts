/**
 * The AWS and Google Cloud targets: plans (aws-plan.ts, gcp-plan.ts) written as request files.
 *
 * aws/security-groups/<id>.json            the whole allowlist (AuthorizeSecurityGroupEgress input)
 * aws/security-groups/<id>.authorize.json  what the last change added (apply after the revoke)
 * aws/security-groups/<id>.revoke.json     what the last change removed (RevokeSecurityGroupEgress input)
 * aws/network-firewall/<name>.update.json  UpdateRuleGroup input (add --update-token)
 * aws/network-firewall/<name>.create.json  CreateRuleGroup input (the first time)
 * gcp/<group>.rules.json                   every FirewallPolicyRule of the group's block
 * gcp/<group>.changes.json                 addRule / patchRule / removeRule calls for the last change
 */
import path from 'node:path';
import {
  type AwsProblem,
  type IpPermission,
  type PlannedGroup,
  permissionDelta,
  planRuleGroup,
  planSecurityGroups,
} from './aws-plan.ts';
import { jsonText, readJson, syncFolder } from './files.ts';
import { type FirewallPolicyRule, type GcpProblem, gcpChanges, planGcp } from './gcp-plan.ts';
import type { AwsSettings, GcpSettings } from './settings.ts';

export interface FileTargetResult {
  readonly changed: number;
  readonly files: readonly string[];
  readonly problems: ReadonlyArray<AwsProblem | GcpProblem>;
}

export async function writeAws(
  target: AwsSettings,
  groups: ReadonlyMap<string, PlannedGroup>,
): Promise<FileTargetResult> {
  const files = new Map<string, string>();
  const sg = planSecurityGroups(target, groups);
  const problems: Array<AwsProblem | GcpProblem> = [...sg.problems];
  for (const plan of sg.plans) {
    const rel = `security-groups/${plan.groupId}`;
    const prev = await readJson<{ IpPermissions?: IpPermission[] }>(
      path.join(target.directory, `${rel}.json`),
    );
    const delta = permissionDelta(prev?.IpPermissions ?? [], plan.desired.IpPermissions);
    const unchanged = delta.authorize.length === 0 && delta.revoke.length === 0;
    files.set(`${rel}.json`, jsonText(plan.desired));
    // An unchanged pass keeps the last change's files, so they still say what that change was.
    const keep = async (suffix: string, value: IpPermission[]) => {
      const old = await readJson<unknown>(path.join(target.directory, `${rel}.${suffix}.json`));
      files.set(
        `${rel}.${suffix}.json`,
        jsonText(unchanged && old !== null ? old : { GroupId: plan.groupId, IpPermissions: value }),
      );
    };
    await keep('authorize', delta.authorize);
    await keep('revoke', delta.revoke);
  }
  if (target.networkFirewall) {
    const nf = target.networkFirewall;
    const wanted = nf.sources.length > 0 ? nf.sources : [...groups.keys()].sort();
    const list = wanted.map((n) => groups.get(n)).filter((g): g is PlannedGroup => g !== undefined);
    const rg = planRuleGroup(nf, list);
    problems.push(...rg.problems);
    if (rg.plan) {
      files.set(`network-firewall/${nf.ruleGroupName}.update.json`, jsonText(rg.plan.update));
      files.set(`network-firewall/${nf.ruleGroupName}.create.json`, jsonText(rg.plan.create));
    }
  }
  const changed = await syncFolder(target.directory, files);
  return { changed, files: [...files.keys()], problems };
}

export async function writeGcp(
  target: GcpSettings,
  groups: ReadonlyMap<string, PlannedGroup>,
): Promise<FileTargetResult> {
  const wanted = target.sources.length > 0 ? target.sources : [...groups.keys()].sort();
  const list = wanted.map((n) => groups.get(n)).filter((g): g is PlannedGroup => g !== undefined);
  const { plans, problems } = planGcp(target, list);
  const files = new Map<string, string>();
  for (const plan of plans) {
    const rel = plan.group.replace(/[^a-zA-Z0-9_.-]/g, '_');
    const doc = { project: target.project, firewallPolicy: target.firewallPolicy, rules: plan.rules };
    const prev = await readJson<{ rules?: FirewallPolicyRule[] }>(
      path.join(target.directory, `${rel}.rules.json`),
    );
    const changes = gcpChanges(prev?.rules ?? [], plan.rules);
    files.set(`${rel}.rules.json`, jsonText(doc));
    const old = await readJson<unknown>(path.join(target.directory, `${rel}.changes.json`));
    files.set(
      `${rel}.changes.json`,
      jsonText(
        changes.length === 0 && old !== null
          ? old
          : { project: target.project, firewallPolicy: target.firewallPolicy, changes },
      ),
    );
  }
  const changed = await syncFolder(target.directory, files);
  return { changed, files: [...files.keys()], problems };
}
