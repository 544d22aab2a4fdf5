/**
 * Cluster-internal destinations (config.internalCidrs): validated and canonical in the config,
 * merged into the `internal` sets, accepted first in the governed chain for Enforce and Audit
 * sources, exempt from the verify redirect (DNS still redirected), and changed by difference:
 * a new list never recreates a set.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { MAX_INTERNAL_CIDRS, resolveNftConfig } from '../../../src/datapath/nft-config.ts';
import { internalElements, staticElements } from '../../../src/datapath/nft-elements.ts';
import { planReconcile } from '../../../src/datapath/nft-reconcile.ts';
import { chainDefs, INTERNAL_SET_SIZE, setDefs } from '../../../src/datapath/nft-ruleset.ts';
import { kernelOf } from './kernel-table.ts';

function configError(input: object): string {
  try {
    resolveNftConfig(input as never);
  } catch (err) {
    assert.equal((err as { code?: string }).code, 'NG_CONFIG_INVALID');
    return (err as Error).message;
  }
  assert.fail(`accepted ${JSON.stringify(input)}`);
}

test('internal CIDRs are canonical, deduplicated, and bad ones are named by index', () => {
  const c = resolveNftConfig({
    internalCidrs: ['10.244.0.0/16', 'FD00:10:244::/56', '10.244.0.0/16', '192.0.2.7'],
  });
  assert.deepEqual(c.internalCidrs, ['10.244.0.0/16', 'fd00:10:244::/56', '192.0.2.7/32']);
  assert.deepEqual(resolveNftConfig().internalCidrs, []);
  assert.match(
    configError({ internalCidrs: ['10.0.0.0/8', '10.244.1.0/16'] }),
    /internalCidrs\[1\].*host bits/,
  );
  assert.match(configError({ internalCidrs: ['pods'] }), /internalCidrs\[0\].*not an IP address/);
  assert.match(configError({ internalCidrs: ['0.0.0.0/0'] }), /internalCidrs\[0\].*every destination/);
  assert.match(configError({ internalCidrs: ['::/0'] }), /every destination/);
  const many = Array.from({ length: MAX_INTERNAL_CIDRS + 1 }, (_, i) => `10.${i >> 8}.${i & 255}.0/24`);
  assert.match(configError({ internalCidrs: many }), /at most 256/);
});

test('internal sets: per family, overlapping and touching prefixes merged', () => {
  const els = internalElements([
    '10.244.0.0/16',
    '10.244.7.0/24',
    '10.245.0.0/16',
    '10.96.0.0/12',
    'fd00::/64',
  ]);
  assert.deepEqual(
    [...(els.get('internal4') ?? [])],
    ['10.96.0.0-10.111.255.255', '10.244.0.0-10.245.255.255'],
  );
  assert.deepEqual([...(els.get('internal6') ?? [])], ['fd00::-fd00::ffff:ffff:ffff:ffff']);
  assert.deepEqual([...(internalElements([]).get('internal4') ?? ['x'])], []);
});

test('the merged internal ranges cover exactly the union of the prefixes (property)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 8, max: 24 })), { maxLength: 8 }),
      fc.array(fc.integer({ min: 0, max: 0xffffff }), { minLength: 1, maxLength: 20 }),
      (prefixes, probes) => {
        const cidrs = prefixes.map(([b, len]) => {
          const n = (10 << 24) | (b << 16);
          const masked = len === 0 ? 0 : (n >>> (32 - len)) << (32 - len);
          const ip = [24, 16, 8, 0].map((s) => (masked >>> s) & 255).join('.');
          return `${ip}/${len}`;
        });
        const ranges = [...(internalElements(cidrs).get('internal4') ?? [])].map((t) => {
          const [a = '', b = a] = t.split('-');
          return [toInt(a), toInt(b)] as const;
        });
        for (let i = 1; i < ranges.length; i++)
          assert.ok((ranges[i]?.[0] ?? 0) > (ranges[i - 1]?.[1] ?? 0) + 1, 'disjoint, not touching');
        for (const p of probes) {
          const ip = (10 << 24) | p;
          const inUnion = cidrs.some((c) => {
            const [a, len] = c.split('/');
            const mask = Number(len) === 0 ? 0 : (0xffffffff << (32 - Number(len))) >>> 0;
            return ((ip >>> 0) & mask) >>> 0 === toInt(a as string);
          });
          const inRanges = ranges.some(([s, e]) => ip >>> 0 >= s && ip >>> 0 <= e);
          assert.equal(inRanges, inUnion, `10.x address ${p}`);
        }
      },
    ),
    { numRuns: 200 },
  );
});

function toInt(ip: string): number {
  return ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

test('ruleset: internal sets of fixed size, accepted first in the governed chain', () => {
  const c = resolveNftConfig({ internalCidrs: ['10.244.0.0/16'] });
  const internal = setDefs(c).filter((s) => s.role === 'internal');
  assert.deepEqual(
    internal.map((s) => [s.name, s.type.join(), s.flags.join(), s.size]),
    [
      ['internal4', 'ipv4_addr', 'interval', INTERNAL_SET_SIZE],
      ['internal6', 'ipv6_addr', 'interval', INTERNAL_SET_SIZE],
    ],
  );
  // The set definitions do not depend on the list: a changed list never recreates them.
  assert.deepEqual(
    internal,
    setDefs(resolveNftConfig()).filter((s) => s.role === 'internal'),
  );
  const chains = new Map(chainDefs(c).map((ch) => [ch.name, ch.rules]));
  assert.deepEqual(chains.get('governed')?.slice(0, 2), [
    'ip daddr @internal4 accept',
    'ip6 daddr @internal6 accept',
  ]);
  // Mid-stream pickups from internal peers are NetworkPolicy's business.
  const forward = chains.get('filter_forward') ?? [];
  assert.ok(
    forward.includes(
      'ip daddr @enforce4 ip saddr != @internal4 ct state new tcp flags & (syn | ack) != syn drop',
    ),
  );
  // The node's own processes (output filter) meet the same governed chain.
  const out = chainDefs(resolveNftConfig({ output: { enabled: true, exemptUids: [0] } }));
  assert.ok(
    out.find((ch) => ch.name === 'filter_output')?.rules.includes('ip saddr @enforce4 jump governed'),
  );
});

test('nat: DNS to internal addresses is still redirected; verify ports to them are not', () => {
  const withSni = new Map(chainDefs(resolveNftConfig({ verifyPort: 8443 })).map((ch) => [ch.name, ch.rules]));
  assert.deepEqual(withSni.get('nat_governed'), [
    'udp dport 53 redirect to :5353',
    'tcp dport 53 redirect to :5353',
    'ip daddr @internal4 return',
    'ip6 daddr @internal6 return',
    'ip saddr . tcp dport @verify4 redirect to :8443',
    'ip6 saddr . tcp dport @verify6 redirect to :8443',
  ]);
  const plain = new Map(chainDefs(resolveNftConfig()).map((ch) => [ch.name, ch.rules]));
  assert.deepEqual(plain.get('nat_governed'), [
    'udp dport 53 redirect to :5353',
    'tcp dport 53 redirect to :5353',
  ]);
});

test('a changed internal list is applied by difference, nothing recreated or flushed', () => {
  const before = resolveNftConfig({ internalCidrs: ['10.244.0.0/16', '10.96.0.0/12', 'fd00:10:244::/56'] });
  const after = resolveNftConfig({ internalCidrs: ['10.244.0.0/16', '172.20.0.0/16'] });
  const wanted = staticElements({ sources: [{ ip: '10.244.1.5', mode: 'Enforce' }], cidrs: [], verify: [] });
  for (const [n, s] of internalElements(after.internalCidrs)) wanted.set(n, s);
  const present = new Map<string, Set<string>>([
    ['enforce4', new Set(['10.244.1.5'])],
    ['drops4', new Set(['10.244.1.5 comment "Enforce 10.244.1.5"'])],
    ...internalElements(before.internalCidrs),
  ]);
  const p = planReconcile(after, kernelOf(before), present, wanted);
  assert.deepEqual(p.recreatedSets, []);
  assert.deepEqual(p.rebuiltSets, []);
  assert.deepEqual(
    p.elementChanges.map((c) => [c.set, c.added, c.removed]),
    [
      ['internal4', 1, 1],
      ['internal6', 0, 1],
    ],
  );
  assert.ok(p.commands.includes('delete element inet namegate internal4 { 10.96.0.0-10.111.255.255 }'));
  assert.ok(p.commands.includes('add element inet namegate internal4 { 172.20.0.0-172.20.255.255 }'));
  assert.ok(
    p.commands.includes(
      'delete element inet namegate internal6 { fd00:10:244::-fd00:10:244:ff:ffff:ffff:ffff:ffff }',
    ),
  );
  for (const c of p.commands) assert.doesNotMatch(c, /^(flush set|delete set|delete table|flush table)/, c);
  // The same list again changes nothing.
  const again = new Map<string, Set<string>>([...present, ...internalElements(after.internalCidrs)]);
  assert.deepEqual(planReconcile(after, kernelOf(after), again, wanted).elementChanges, []);
});
