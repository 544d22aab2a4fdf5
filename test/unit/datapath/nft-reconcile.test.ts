import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { resolveNftConfig } from '../../../src/datapath/nft-config.ts';
import { kernelElementText, staticElements } from '../../../src/datapath/nft-elements.ts';
import { parseElement, parseSet } from '../../../src/datapath/nft-json.ts';
import { PIPAPO_MAX_DELETES, planReconcile } from '../../../src/datapath/nft-reconcile.ts';
import { chainDefs, renderRuleset } from '../../../src/datapath/nft-ruleset.ts';
import { kernelOf } from './kernel-table.ts';

const config = resolveNftConfig();
const wanted = staticElements({
  sources: [
    { ip: '10.0.0.1', mode: 'Enforce' },
    { ip: '10.0.0.2', mode: 'Audit' },
  ],
  cidrs: [],
  verify: [],
});

function neverDestructive(commands: readonly string[]): void {
  for (const c of commands) {
    assert.doesNotMatch(c, /^(flush set|flush table|delete table|flush ruleset)/, c);
    assert.doesNotMatch(c, /^delete set inet namegate allow(all|range)?[46]$/, c);
  }
}

test('empty kernel: table, every set and chain, rules and elements in one plan', () => {
  const p = planReconcile(config, null, new Map(), wanted);
  assert.equal(p.createdTable, true);
  assert.equal(p.commands[0], 'add table inet namegate');
  assert.ok(
    p.commands.includes(
      'add set inet namegate allow4 { type ipv4_addr . ipv4_addr . inet_proto . inet_service; flags timeout; size 262144; }',
    ),
  );
  assert.ok(
    p.commands.includes(
      'add set inet namegate allowall6 { type ipv6_addr . ipv6_addr . inet_proto; flags timeout; size 262144; }',
    ),
  );
  assert.ok(
    p.commands.includes(
      'add set inet namegate allowrange4 { type ipv4_addr . ipv4_addr . inet_proto . inet_service; flags interval,timeout; size 262144; }',
    ),
  );
  assert.ok(
    p.commands.some((c) =>
      c.startsWith('add chain inet namegate nat_prerouting { type nat hook prerouting priority -110;'),
    ),
  );
  assert.ok(p.commands.includes('add element inet namegate enforce4 { 10.0.0.1 }'));
  assert.deepEqual([...p.newlyGoverned].sort(), ['10.0.0.1', '10.0.0.2']);
  neverDestructive(p.commands);
});

test('REL-04: restart with the same config: chains flushed and refilled, sets and elements kept', () => {
  const present = new Map([
    ['enforce4', new Set(['10.0.0.1'])],
    ['audit4', new Set(['10.0.0.2'])],
    ['drops4', new Set(['10.0.0.1 comment "Enforce 10.0.0.1"', '10.0.0.2 comment "Audit 10.0.0.2"'])],
  ]);
  const p = planReconcile(config, kernelOf(config), present, wanted);
  assert.equal(p.createdTable, false);
  assert.deepEqual(p.recreatedSets, []);
  assert.deepEqual(p.elementChanges, []);
  assert.deepEqual(p.newlyGoverned, []);
  assert.ok(!p.commands.some((c) => c.startsWith('add set') || c.startsWith('delete')));
  assert.ok(p.commands.includes('flush chain inet namegate filter_forward'));
  assert.ok(!p.commands.some((c) => c.startsWith('add chain')), 'existing chains are kept, not re-added');
  // Flushes come before any rule.
  const lastFlush = p.commands.findLastIndex((c) => c.startsWith('flush chain'));
  const firstRule = p.commands.findIndex((c) => c.startsWith('add rule'));
  assert.ok(lastFlush < firstRule);
});

test('a changed set definition recreates only that set; a changed hook recreates the chain', () => {
  const k = kernelOf(config);
  const sets = new Map(k.sets);
  const allow4 = sets.get('allow4');
  assert.ok(allow4);
  sets.set('allow4', { ...allow4, size: 10 });
  sets.set('legacy', {
    name: 'legacy',
    type: ['ipv4_addr'],
    flags: [],
    size: null,
    counter: false,
    elements: [],
  });
  const chains = new Map(k.chains);
  chains.set('filter_forward', {
    name: 'filter_forward',
    base: { type: 'filter', hook: 'forward', priority: 5, policy: 'accept' },
  });
  chains.set('old_chain', { name: 'old_chain', base: null });
  const p = planReconcile(config, { sets, chains }, new Map(), wanted);
  assert.deepEqual(p.recreatedSets, ['allow4']);
  assert.deepEqual([...p.removedUnknown].sort(), ['chain old_chain', 'set legacy']);
  const del = p.commands.indexOf('delete set inet namegate allow4');
  const add = p.commands.findIndex((c) => c.startsWith('add set inet namegate allow4 '));
  assert.ok(del >= 0 && add > del);
  assert.ok(p.commands.includes('delete chain inet namegate filter_forward'));
  assert.ok(
    p.commands.some((c) =>
      c.startsWith('add chain inet namegate filter_forward { type filter hook forward priority 0;'),
    ),
  );
  // Every chain is flushed before anything is deleted.
  const firstDelete = p.commands.findIndex((c) => c.startsWith('delete'));
  const lastFlush = p.commands.findLastIndex((c) => c.startsWith('flush chain'));
  assert.ok(lastFlush < firstDelete);
});

test('static sets change by difference', () => {
  const present = new Map([
    ['enforce4', new Set(['10.0.0.1', '10.0.0.9'])],
    ['drops4', new Set(['10.0.0.1', '10.0.0.9'])],
  ]);
  const p = planReconcile(config, kernelOf(config), present, wanted);
  assert.ok(p.commands.includes('delete element inet namegate enforce4 { 10.0.0.9 }'));
  assert.ok(p.commands.includes('add element inet namegate audit4 { 10.0.0.2 }'));
  assert.deepEqual(p.newlyGoverned, ['10.0.0.2']);
});

test('REL-04: no config ever yields a destructive command (property)', () => {
  fc.assert(
    fc.property(
      fc.record({
        logDrops: fc.boolean(),
        logAudit: fc.boolean(),
        natPriority: fc.integer({ min: -300, max: 300 }),
        verifyPort: fc.option(fc.integer({ min: 1, max: 65535 }), { nil: null }),
        output: fc.boolean(),
      }),
      (o) => {
        const c = resolveNftConfig({
          logDrops: o.logDrops,
          logAudit: o.logAudit,
          natPriority: o.natPriority,
          verifyPort: o.verifyPort,
          output: { enabled: o.output, exemptUids: [1000] },
        });
        const p = planReconcile(c, kernelOf(config), new Map(), wanted);
        neverDestructive(p.commands);
        return true;
      },
    ),
    { numRuns: 50 },
  );
});

test('the ruleset text names every chain and the redirect', () => {
  const text = renderRuleset(
    resolveNftConfig({ dns: { kind: 'dnat', port: 53, ipv4: '10.0.0.10', ipv6: null } }),
  );
  assert.match(text, /type nat hook prerouting priority -110; policy accept;/);
  assert.match(text, /meta nfproto ipv4 udp dport 53 dnat ip to 10\.0\.0\.10:53/);
  assert.doesNotMatch(text, /dnat ip6/);
  assert.match(text, /ct state established,related accept/);
  assert.doesNotMatch(text, /filter_output/);
});

/** A static set as nft 1.0.6 prints it (`nft -j list set`): prefixes where aligned, else ranges. */
function kernelSet(name: string, type: string | string[], elem: unknown[], counter = false): string {
  return JSON.stringify({
    nftables: [
      { metainfo: { version: '1.0.6', json_schema_version: 1 } },
      {
        set: {
          family: 'inet',
          name,
          table: 'namegate',
          type,
          handle: 3,
          size: 65536,
          flags: ['interval'],
          elem,
          ...(counter ? { stmt: [{ counter: null }] } : {}),
        },
      },
    ],
  });
}

test('CIDR sources read back as nft prints them: a second reconcile changes nothing', () => {
  const state = {
    sources: [
      { ip: '10.0.1.0/24', mode: 'Enforce' as const },
      { ip: '10.0.1.2/32', mode: 'Audit' as const },
    ],
    cidrs: [
      {
        source: '10.0.1.0/24',
        cidr: { text: '203.0.113.0/24', address: '203.0.113.0', prefix: 24, family: 4 as const },
        except: [{ text: '203.0.113.128/25', address: '203.0.113.128', prefix: 25, family: 4 as const }],
        protocol: 'TCP' as const,
        portFrom: 443,
        portTo: 443,
      },
    ],
    verify: [{ source: '10.0.1.0/24', protocol: 'TCP' as const, portFrom: 8000, portTo: 8100 }],
  };
  const low = { prefix: { addr: '10.0.1.0', len: 31 } };
  const high = { range: ['10.0.1.3', '10.0.1.255'] };
  const dst = { prefix: { addr: '203.0.113.0', len: 25 } };
  const counter = { packets: 7, bytes: 420 };
  const listings = [
    kernelSet('enforcenet4', 'ipv4_addr', [low, high]),
    kernelSet('audit4', 'ipv4_addr', ['10.0.1.2']),
    kernelSet(
      'drops4',
      'ipv4_addr',
      [{ elem: { val: '10.0.1.2', comment: 'Audit 10.0.1.2', counter } }],
      true,
    ),
    kernelSet(
      'dropsnet4',
      'ipv4_addr',
      [
        { elem: { val: low, comment: 'Enforce 10.0.1.0/24', counter } },
        { elem: { val: high, comment: 'Enforce 10.0.1.0/24', counter } },
      ],
      true,
    ),
    kernelSet(
      'cidr4',
      ['ipv4_addr', 'ipv4_addr', 'inet_proto', 'inet_service'],
      [{ concat: [low, dst, 'tcp', 443] }, { concat: [high, dst, 'tcp', 443] }],
    ),
    kernelSet(
      'verify4',
      ['ipv4_addr', 'inet_service'],
      [{ concat: [low, { range: [8000, 8100] }] }, { concat: [high, { range: [8000, 8100] }] }],
    ),
  ];
  const present = new Map<string, Set<string>>();
  for (const text of listings) {
    const s = parseSet(text);
    present.set(s.name, new Set(s.elements.map((e) => kernelElementText(parseElement(s.type, e)))));
  }
  const p = planReconcile(config, kernelOf(config), present, staticElements(state));
  assert.deepEqual(p.elementChanges, []);
  assert.deepEqual(p.newlyGoverned, []);
  assert.deepEqual(p.rebuiltSets, []);
  assert.ok(!p.commands.some((c) => /element/.test(c)), p.commands.join('\n'));
});

test('newly governed addresses are what the ranges add, as prefixes', () => {
  const present = new Map([
    ['enforcenet4', new Set(['10.0.1.0-10.0.1.127'])],
    ['audit6', new Set(['fd00::1'])],
  ]);
  const want = staticElements({
    sources: [
      { ip: '10.0.1.0/24', mode: 'Audit' },
      { ip: '10.0.3.1', mode: 'Enforce' },
      { ip: 'fd00::1', mode: 'Enforce' },
    ],
    cidrs: [],
    verify: [],
  });
  const p = planReconcile(config, kernelOf(config), present, want);
  assert.deepEqual(p.newlyGoverned, ['10.0.1.128/25', '10.0.3.1']);
});

test('a pipapo set that would lose many elements is rebuilt in the same transaction', () => {
  const many = new Set<string>();
  for (let i = 0; i < PIPAPO_MAX_DELETES + 1; i++)
    many.add(`10.0.0.1 . 198.51.100.${i % 250} . tcp . ${1000 + i}`);
  const few = new Set(['10.0.0.1 . 198.51.100.1 . tcp . 1001']);
  let p = planReconcile(
    config,
    kernelOf(config),
    new Map([['cidr4', many]]),
    staticElements({ sources: [], cidrs: [], verify: [] }),
  );
  assert.deepEqual(p.rebuiltSets, ['cidr4']);
  assert.deepEqual(p.recreatedSets, []);
  assert.ok(!p.commands.some((c) => c.startsWith('delete element inet namegate cidr4')));
  const del = p.commands.indexOf('delete set inet namegate cidr4');
  const add = p.commands.findIndex((c) => c.startsWith('add set inet namegate cidr4 '));
  const firstRule = p.commands.findIndex((c) => c.startsWith('add rule'));
  assert.ok(del >= 0 && add > del && firstRule > add);
  // Few deletions: by difference, as usual.
  p = planReconcile(
    config,
    kernelOf(config),
    new Map([['cidr4', few]]),
    staticElements({ sources: [], cidrs: [], verify: [] }),
  );
  assert.deepEqual(p.rebuiltSets, []);
  assert.ok(
    p.commands.includes('delete element inet namegate cidr4 { 10.0.0.1 . 198.51.100.1 . tcp . 1001 }'),
  );
});

test('forward chain: revoked UDP peers are dropped towards Enforce sources, unless turned off', () => {
  const rules = chainDefs(config).find((c) => c.name === 'filter_forward')?.rules ?? [];
  assert.ok(
    rules.includes(
      'ip daddr @enforce4 ip daddr . ip saddr . meta l4proto @revoked4 update @revoked4 { ip daddr . ip saddr . meta l4proto timeout 30s } drop',
    ),
    rules.join('\n'),
  );
  const off = chainDefs(resolveNftConfig({ revokeWindowMs: 0 })).find((c) => c.name === 'filter_forward');
  assert.ok(!off?.rules.some((r) => r.includes('revoked')));
  // After established/related, so only new packets pay for the lookups.
  assert.ok(
    rules.findIndex((r) => r.includes('revoked')) > rules.indexOf('ct state established,related accept'),
  );
});
