/**
 * The AWS and Google Cloud targets: security group permissions, their difference, quotas, the
 * Network Firewall rule group and the firewall policy rules; every request file namegate writes
 * is validated against the request models the clouds publish (botocore, the Compute discovery
 * document). No cloud is called.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { AwsTargetSchema, GcpTargetSchema } from '../../../src/config/sync.ts';
import { StaticGroups } from '../../../src/identity/static-groups.ts';
import { CompiledPolicies } from '../../../src/policy/compile.ts';
import {
  ipPermissions,
  type PlannedGroup,
  permissionDelta,
  planSecurityGroups,
} from '../../../src/sync/aws-plan.ts';
import { writeAws, writeGcp } from '../../../src/sync/cloud-writer.ts';
import { gcpChanges, planGcp } from '../../../src/sync/gcp-plan.ts';
import { groupGrants, groupsOf } from '../../../src/sync/grants.ts';
import {
  botocoreModel,
  computeDiscovery,
  validateMethodRequest,
  validateOperationInput,
} from './cloud-models.ts';
import { STRIPE } from './helpers.ts';

const groups = new StaticGroups([
  { name: 'api', namespace: 'payments', labels: { app: 'api' }, cidrs: ['10.0.1.0/24', 'fd00:1::/64'] },
]);
const set = new CompiledPolicies([STRIPE]);

function planned(addresses: string[]): Map<string, PlannedGroup> {
  const out = new Map<string, PlannedGroup>();
  for (const g of groupsOf(groups.entries()))
    out.set(g.name, {
      name: g.name,
      cidrs: g.cidrs,
      view: groupGrants(set, g.identity, (n) => (n === 'api.stripe.com' ? addresses : [])),
    });
  return out;
}

const AWS = AwsTargetSchema.parse({
  directory: 'x',
  securityGroups: [{ groupId: 'sg-0123456789abcdef0', source: 'api' }],
  networkFirewall: { ruleGroupName: 'namegate-egress' },
});

test('security group: one permission per protocol and ports; /32 and /128; CIDRs with except are left out', () => {
  const perms = ipPermissions(planned(['203.0.113.10', '2001:db8::10']).get('api')?.view.grants ?? []);
  assert.deepEqual(
    perms.map((p) => [
      p.IpProtocol,
      p.FromPort,
      p.ToPort,
      p.IpRanges?.map((r) => r.CidrIp),
      p.Ipv6Ranges?.map((r) => r.CidrIpv6),
    ]),
    [['tcp', 443, 443, ['203.0.113.10/32'], ['2001:db8::10/128']]],
  );
});

test('security group delta: what to authorize and revoke between two passes', () => {
  const before = ipPermissions(planned(['203.0.113.10', '203.0.113.11']).get('api')?.view.grants ?? []);
  const after = ipPermissions(planned(['203.0.113.11', '203.0.113.12']).get('api')?.view.grants ?? []);
  const d = permissionDelta(before, after);
  assert.deepEqual(
    d.authorize[0]?.IpRanges?.map((r) => r.CidrIp),
    ['203.0.113.12/32'],
  );
  assert.deepEqual(
    d.revoke[0]?.IpRanges?.map((r) => r.CidrIp),
    ['203.0.113.10/32'],
  );
});

test('the security group quota is checked and reported', () => {
  const many = Array.from({ length: 70 }, (_, i) => `203.0.113.${i + 1}`);
  const r = planSecurityGroups(AWS, planned(many));
  assert.equal(r.plans[0]?.rules, 70);
  assert.equal(r.problems[0]?.reason, 'quota');
});

test('AWS request files validate against botocore: EC2 egress authorize/revoke, Network Firewall create/update', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'namegate-aws-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const target = { ...AWS, directory: dir };
  await writeAws(target, planned(['203.0.113.10', '2001:db8::10']));
  const second = await writeAws(target, planned(['203.0.113.11', '2001:db8::10']));
  assert.equal(second.problems.length, 0);
  const ec2 = botocoreModel('ec2');
  const nfw = botocoreModel('network-firewall');
  const read = async (rel: string) => JSON.parse(await readFile(path.join(dir, rel), 'utf8'));
  const sg = 'security-groups/sg-0123456789abcdef0';
  for (const [file, op] of [
    [`${sg}.json`, 'AuthorizeSecurityGroupEgress'],
    [`${sg}.authorize.json`, 'AuthorizeSecurityGroupEgress'],
    [`${sg}.revoke.json`, 'RevokeSecurityGroupEgress'],
  ] as const) {
    assert.deepEqual(validateOperationInput(ec2, op, await read(file)), [], file);
  }
  assert.deepEqual((await read(`${sg}.revoke.json`)).IpPermissions[0].IpRanges, [
    { CidrIp: '203.0.113.10/32', Description: 'namegate payments/stripe rule 0' },
  ]);
  const update = await read('network-firewall/namegate-egress.update.json');
  // The update token comes from the command line (--update-token); the model requires it.
  const withToken = { ...update, UpdateToken: '01234567-89ab-cdef-0123-456789abcdef' };
  assert.deepEqual(validateOperationInput(nfw, 'UpdateRuleGroup', withToken), []);
  assert.deepEqual(
    validateOperationInput(
      nfw,
      'CreateRuleGroup',
      await read('network-firewall/namegate-egress.create.json'),
    ),
    [],
  );
  const rules = update.RuleGroup.RulesSource.StatefulRules as Array<{
    Action: string;
    Header: { Destination: string };
  }>;
  assert.deepEqual(
    rules.map((r) => `${r.Action} ${r.Header.Destination}`),
    // The toCIDRs rule has an `except`, which a flat IP set cannot say: it is left out (fail closed).
    ['PASS $NG_S0_R0', 'DROP ANY'],
  );
  assert.deepEqual(update.RuleGroup.RuleVariables.IPSets.NG_S0_R0.Definition, [
    '203.0.113.11/32',
    '2001:db8::10/128',
  ]);
  // A model check that can fail: a wrong enum is caught.
  assert.notDeepEqual(
    validateOperationInput(nfw, 'CreateRuleGroup', { ...withToken, Type: 'STATEFULL' }),
    [],
  );
});

test('Google firewall policy rules validate against the Compute discovery document', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'namegate-gcp-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const target = GcpTargetSchema.parse({ directory: dir, project: 'my-project-1', firewallPolicy: 'egress' });
  await writeGcp(target, planned(['203.0.113.10', '2001:db8::10']));
  await writeGcp(target, planned(['203.0.113.11', '2001:db8::10']));
  assert.deepEqual((await readdir(dir)).sort(), [
    '.namegate-files.json',
    'api.changes.json',
    'api.rules.json',
  ]);
  const doc = computeDiscovery();
  const rules = JSON.parse(await readFile(path.join(dir, 'api.rules.json'), 'utf8'));
  const params = { project: rules.project, firewallPolicy: rules.firewallPolicy };
  for (const rule of rules.rules) {
    assert.deepEqual(validateMethodRequest(doc, 'networkFirewallPolicies', 'addRule', params, rule), []);
  }
  const actions = rules.rules.map(
    (r: { action: string; match: { destIpRanges: string[] } }) =>
      `${r.action} ${r.match.destIpRanges.join(',')}`,
  );
  assert.deepEqual(actions, [
    'deny 192.0.2.128/25',
    'allow 203.0.113.11/32',
    'allow 192.0.2.0/24',
    'deny 0.0.0.0/0',
    'allow 2001:db8::10/128',
    'deny ::/0',
  ]);
  const changes = JSON.parse(await readFile(path.join(dir, 'api.changes.json'), 'utf8'));
  assert.deepEqual(
    changes.changes.map((c: { method: string; priority: number }) => `${c.method} ${c.priority}`),
    ['patchRule 10001'],
  );
  assert.notDeepEqual(
    validateMethodRequest(doc, 'networkFirewallPolicies', 'addRule', params, {
      ...rules.rules[0],
      direction: 'OUT',
    }),
    [],
  );
  assert.notDeepEqual(
    validateMethodRequest(
      doc,
      'networkFirewallPolicies',
      'addRule',
      { ...params, firewallPolicy: 'Bad_Name' },
      rules.rules[0],
    ),
    [],
  );
});

test("gcp: the rules fill the group's priority block; a block too small is reported", () => {
  const target = GcpTargetSchema.parse({
    directory: 'x',
    project: 'my-project-1',
    firewallPolicy: 'egress',
    priorityBlock: 10,
  });
  const many = Array.from({ length: 3 }, (_, i) => `203.0.113.${i + 1}`);
  const g = [...planned(many).values()];
  assert.equal(planGcp(target, g).plans[0]?.rules.length, 5);
  assert.equal(planGcp({ ...target, priorityBlock: 4 }, g).problems[0]?.reason, 'priority_block');
  assert.deepEqual(gcpChanges([], []), []);
});
