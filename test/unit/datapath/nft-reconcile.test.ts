import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { resolveNftConfig } from '../../../src/datapath/nft-config.ts';
import { staticElements } from '../../../src/datapath/nft-elements.ts';
import type { KernelChain, KernelSet, KernelTable } from '../../../src/datapath/nft-json.ts';
import { planReconcile } from '../../../src/datapath/nft-reconcile.ts';
import { chainDefs, renderRuleset, setDefs } from '../../../src/datapath/nft-ruleset.ts';

const config = resolveNftConfig();
const wanted = staticElements({
  sources: [
    { ip: '10.0.0.1', mode: 'Enforce' },
    { ip: '10.0.0.2', mode: 'Audit' },
  ],
  cidrs: [],
  verify: [],
});

/** The kernel as it is after a reconcile with `c`. */
function kernelOf(c = config): KernelTable {
  const sets = new Map<string, KernelSet>(
    setDefs(c).map((s) => [
      s.name,
      { name: s.name, type: s.type, flags: s.flags, size: s.size, counter: s.counter, elements: [] },
    ]),
  );
  const chains = new Map<string, KernelChain>(
    chainDefs(c).map((ch) => [ch.name, { name: ch.name, base: ch.base ? { ...ch.base } : null }]),
  );
  return { sets, chains };
}

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

test('restart with the same config: chains flushed and refilled, sets and elements kept', () => {
  const present = new Map([
    ['enforce4', new Set(['10.0.0.1'])],
    ['audit4', new Set(['10.0.0.2'])],
    ['drops4', new Set(['10.0.0.1', '10.0.0.2'])],
  ]);
  const p = planReconcile(config, kernelOf(), present, wanted);
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
  const k = kernelOf();
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
  const p = planReconcile(config, kernelOf(), present, wanted);
  assert.ok(p.commands.includes('delete element inet namegate enforce4 { 10.0.0.9 }'));
  assert.ok(p.commands.includes('add element inet namegate audit4 { 10.0.0.2 }'));
  assert.deepEqual(p.newlyGoverned, ['10.0.0.2']);
});

test('no config ever yields a destructive command (property)', () => {
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
        const p = planReconcile(c, kernelOf(), new Map(), wanted);
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
