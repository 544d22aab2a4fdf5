/**
 * Source CIDRs (config.sourceCidrs) and anti-spoofing (L3-05, K8S-04), pure parts: the config is
 * validated and canonical; the ruleset sends known ungoverned sources past, unknown ones of the
 * source CIDRs to their own deny chain (DNS redirected, internal destinations accepted, the rest
 * counted and dropped) and checks the reverse path of every source inside them before conntrack;
 * without source CIDRs nothing of this is in the table; the known ungoverned sources and the
 * source CIDRs are sets changed by difference.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { StaticState } from '../../../src/datapath/datapath.ts';
import { DatapathMetrics } from '../../../src/datapath/metrics.ts';
import { MAX_SOURCE_CIDRS, resolveNftConfig } from '../../../src/datapath/nft-config.ts';
import { scopeElements, staticElements } from '../../../src/datapath/nft-elements.ts';
import { parseCounter } from '../../../src/datapath/nft-json.ts';
import { newlyGovernedPrefixes, planReconcile } from '../../../src/datapath/nft-reconcile.ts';
import {
  ANTISPOOF_PRIORITY,
  chainDefs,
  counterNames,
  renderRuleset,
  SCOPE_SET_SIZE,
  setDefs,
} from '../../../src/datapath/nft-ruleset.ts';
import { parseSource, ungovernedRanges } from '../../../src/datapath/source-ranges.ts';
import { createRegistry } from '../../../src/observe/metrics.ts';
import { kernelOf } from './kernel-table.ts';

const SCOPE = ['10.10.0.0/16', 'fd00:10::/32'];

function configError(input: object): string {
  try {
    resolveNftConfig(input as never);
  } catch (err) {
    assert.equal((err as { code?: string }).code, 'NG_CONFIG_INVALID');
    return (err as Error).message;
  }
  assert.fail(`accepted ${JSON.stringify(input)}`);
}

function chains(input: object): Map<string, readonly string[]> {
  return new Map(chainDefs(resolveNftConfig(input as never)).map((ch) => [ch.name, ch.rules]));
}

test('source CIDRs are canonical, deduplicated, bounded; /0 and bad ones named by index', () => {
  const c = resolveNftConfig({ sourceCidrs: ['10.10.0.0/16', 'FD00:10::/32', '10.10.0.0/16', '192.0.2.7'] });
  assert.deepEqual(c.sourceCidrs, ['10.10.0.0/16', 'fd00:10::/32', '192.0.2.7/32']);
  assert.equal(c.antiSpoof, true, 'on by default');
  assert.deepEqual(resolveNftConfig().sourceCidrs, []);
  assert.match(configError({ sourceCidrs: ['10.0.0.0/8', '10.10.1.0/16'] }), /sourceCidrs\[1\].*host bits/);
  assert.match(configError({ sourceCidrs: ['pods'] }), /sourceCidrs\[0\].*not an IP address/);
  assert.match(configError({ sourceCidrs: ['0.0.0.0/0'] }), /sourceCidrs\[0\].*every source/);
  assert.match(configError({ sourceCidrs: ['::/0'] }), /every source/);
  const many = Array.from({ length: MAX_SOURCE_CIDRS + 1 }, (_, i) => `10.${i >> 8}.${i & 255}.0/24`);
  assert.match(configError({ sourceCidrs: many }), /at most 256/);
  assert.match(configError({ antiSpoof: 'yes' }), /antiSpoof/);
});

test('without source CIDRs the table keeps its old rules: unknown sources are never matched', () => {
  const plain = chains({});
  assert.equal(plain.has('nat_unknown'), false);
  assert.equal(plain.has('unknown_deny'), false);
  assert.equal(plain.has('filter_prerouting'), false);
  for (const rules of plain.values()) for (const r of rules) assert.doesNotMatch(r, /@(scope|ungoverned)/, r);
  assert.deepEqual(counterNames(resolveNftConfig()), []);
  assert.doesNotMatch(renderRuleset(resolveNftConfig()), /counter (unknown|spoofed)|fib/);
  // antiSpoof alone does nothing: it checks sources of the source CIDRs.
  assert.equal(chains({ antiSpoof: true }).has('filter_prerouting'), false);
});

test('sets: ungoverned (hash and interval) and scope (fixed size), whatever the config', () => {
  const defs = setDefs(resolveNftConfig({ sourceCidrs: SCOPE }));
  const pick = (role: string) =>
    defs.filter((s) => s.role === role).map((s) => [s.name, s.type.join(), s.flags.join(), s.size]);
  assert.deepEqual(pick('scope'), [
    ['scope4', 'ipv4_addr', 'interval', SCOPE_SET_SIZE],
    ['scope6', 'ipv6_addr', 'interval', SCOPE_SET_SIZE],
  ]);
  assert.deepEqual(pick('ungoverned'), [
    ['ungoverned4', 'ipv4_addr', '', 65_536],
    ['ungoverned6', 'ipv6_addr', '', 65_536],
  ]);
  assert.deepEqual(pick('ungovernednet'), [
    ['ungovernednet4', 'ipv4_addr', 'interval', 65_536],
    ['ungovernednet6', 'ipv6_addr', 'interval', 65_536],
  ]);
  // Turning source CIDRs on or off never recreates a set.
  assert.deepEqual(defs, setDefs(resolveNftConfig()));
});

test('with source CIDRs: known ungoverned pass, unknown get no grants, spoofed are dropped first', () => {
  const ch = chains({ sourceCidrs: SCOPE });
  const nat = ch.get('nat_prerouting') ?? [];
  // Governed sources leave the base chain through nat_governed (goto), before the scope rules.
  assert.deepEqual(nat.slice(0, 2), [
    'ip saddr @enforce4 goto nat_governed',
    'ip saddr @enforcenet4 goto nat_governed',
  ]);
  assert.deepEqual(nat.slice(8), [
    'ip saddr @ungoverned4 return',
    'ip saddr @ungovernednet4 return',
    'ip6 saddr @ungoverned6 return',
    'ip6 saddr @ungovernednet6 return',
    'ip saddr @scope4 jump nat_unknown',
    'ip6 saddr @scope6 jump nat_unknown',
  ]);
  const natUnknown = ch.get('nat_unknown') ?? [];
  assert.equal(natUnknown[0], 'meta l4proto . th dport != { tcp . 53, udp . 53 } return');
  // Another node's pod asking a DNS server pod of this node keeps its destination.
  for (const set of ['enforce4', 'auditnet4', 'ungoverned4', 'ungovernednet6'])
    assert.ok(
      natUnknown.some((r) => r.includes(`daddr @${set} return`)),
      set,
    );
  assert.deepEqual(natUnknown.slice(-2), [
    'udp dport 53 redirect to :5353',
    'tcp dport 53 redirect to :5353',
  ]);

  const fwd = ch.get('filter_forward') ?? [];
  assert.equal(fwd[0], 'ct state established,related accept');
  const governed = fwd.indexOf('ip6 saddr @auditnet6 jump governed');
  assert.deepEqual(fwd.slice(governed + 1), [
    'ip saddr @ungoverned4 accept',
    'ip saddr @ungovernednet4 accept',
    'ip6 saddr @ungoverned6 accept',
    'ip6 saddr @ungovernednet6 accept',
    'ip saddr @scope4 goto unknown_deny',
    'ip6 saddr @scope6 goto unknown_deny',
  ]);
  assert.deepEqual(ch.get('unknown_deny'), [
    'ip daddr @internal4 accept',
    'ip6 daddr @internal6 accept',
    'counter name "unknown" drop',
  ]);
  const pre = chainDefs(resolveNftConfig({ sourceCidrs: SCOPE })).find((c) => c.name === 'filter_prerouting');
  assert.deepEqual(pre?.base, {
    type: 'filter',
    hook: 'prerouting',
    priority: ANTISPOOF_PRIORITY,
    policy: 'accept',
  });
  assert.deepEqual(pre?.rules, [
    'ip saddr @scope4 fib saddr . iif oif missing counter name "spoofed" drop',
    'ip6 saddr @scope6 fib saddr . iif oif missing counter name "spoofed" drop',
  ]);
  assert.deepEqual(counterNames(resolveNftConfig({ sourceCidrs: SCOPE })), ['unknown', 'spoofed']);
  // The output filter (a gateway's own processes) never treats the node's addresses as unknown.
  const out = chains({ sourceCidrs: SCOPE, output: { enabled: true, exemptUids: [0] } });
  for (const r of [...(out.get('filter_output') ?? []), ...(out.get('nat_output') ?? [])])
    assert.doesNotMatch(r, /@scope/);
});

test('antiSpoof off: no reverse-path chain; logDrops logs unknown and spoofed drops (rate limited)', () => {
  assert.equal(chains({ sourceCidrs: SCOPE, antiSpoof: false }).has('filter_prerouting'), false);
  const logged = chains({ sourceCidrs: SCOPE, logDrops: true });
  assert.deepEqual(logged.get('unknown_deny')?.slice(-2), [
    'limit rate 10/second burst 20 packets log prefix "namegate-unknown " level info',
    'counter name "unknown" drop',
  ]);
  assert.match(
    logged.get('filter_prerouting')?.[0] ?? '',
    /^ip saddr @scope4 fib saddr \. iif oif missing limit rate .* log prefix "namegate-spoof "/,
  );
  assert.equal(logged.get('filter_prerouting')?.length, 4);
});

test('dnat DNS: unknown sources meet the same per-family target as governed ones', () => {
  const ch = chains({ sourceCidrs: SCOPE, dns: { kind: 'dnat', port: 53, ipv4: '10.10.0.53', ipv6: null } });
  assert.deepEqual(ch.get('nat_unknown')?.slice(-2), [
    'meta nfproto ipv4 udp dport 53 dnat ip to 10.10.0.53:53',
    'meta nfproto ipv4 tcp dport 53 dnat ip to 10.10.0.53:53',
  ]);
});

test('elements: known ungoverned sources by longest prefix, the scope merged per family', () => {
  const state: StaticState = {
    sources: [
      { ip: '10.0.1.0/24', mode: 'Enforce' },
      { ip: '10.0.2.7', mode: 'Enforce' },
    ],
    cidrs: [],
    verify: [],
    // A /32 carved out of a governed /24; a /24 with a governed /32 inside; single pods.
    ungoverned: ['10.0.1.5/32', '10.0.2.0/24', '10.10.4.2', 'fd00:10:4::2', '10.10.4.2'],
  };
  const els = staticElements(state);
  assert.deepEqual([...(els.get('ungoverned4') ?? [])], ['10.0.1.5', '10.10.4.2']);
  assert.deepEqual([...(els.get('ungovernednet4') ?? [])], ['10.0.2.0-10.0.2.6', '10.0.2.8-10.0.2.255']);
  assert.deepEqual([...(els.get('ungoverned6') ?? [])], ['fd00:10:4::2']);
  assert.deepEqual([...(els.get('enforce4') ?? [])], ['10.0.2.7']);
  assert.deepEqual([...(els.get('enforcenet4') ?? [])], ['10.0.1.0-10.0.1.4', '10.0.1.6-10.0.1.255']);
  // Listed as governed and ungoverned: governed (fail closed).
  const both = staticElements({
    sources: [{ ip: '10.0.3.3', mode: 'Audit' }],
    cidrs: [],
    verify: [],
    ungoverned: ['10.0.3.3'],
  });
  assert.deepEqual([...(both.get('ungoverned4') ?? [])], []);
  assert.deepEqual([...(both.get('audit4') ?? [])], ['10.0.3.3']);
  assert.deepEqual(
    [
      ...(scopeElements(['10.10.0.0/16', '10.10.7.0/24', '10.11.0.0/16', 'fd00:10::/32']).get('scope4') ??
        []),
    ],
    ['10.10.0.0-10.11.255.255'],
  );
  assert.deepEqual(
    [...(scopeElements(SCOPE).get('scope6') ?? [])],
    ['fd00:10::-fd00:10:ffff:ffff:ffff:ffff:ffff:ffff'],
  );
});

test('every address is governed, known ungoverned, or neither, exactly once (property)', () => {
  const prefix = fc
    .tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 24, max: 32 }))
    .map(([h, len]) => {
      const host = len === 32 ? h : h & ~((1 << (32 - len)) - 1) & 255;
      return len === 32 ? `10.0.0.${host}` : `10.0.0.${host}/${len}`;
    });
  fc.assert(
    fc.property(
      fc.array(fc.tuple(prefix, fc.constantFrom('Enforce', 'Audit', null)), { maxLength: 10 }),
      (claims) => {
        const state: StaticState = {
          sources: claims.flatMap(([ip, mode]) => (mode ? [{ ip, mode: mode as 'Enforce' | 'Audit' }] : [])),
          cidrs: [],
          verify: [],
          ungoverned: claims.flatMap(([ip, mode]) => (mode ? [] : [ip])),
        };
        const els = staticElements(state);
        const holders = (host: number) =>
          ['enforce4', 'enforcenet4', 'audit4', 'auditnet4', 'ungoverned4', 'ungovernednet4'].filter((set) =>
            [...(els.get(set) ?? [])].some((t) => {
              const [a = '', b = a] = t.split('-');
              const n = (x: string) => Number(x.split('.')[3]);
              return host >= n(a) && host <= n(b);
            }),
          );
        for (let host = 0; host < 256; host++) {
          const inAny = claims.some(([ip]) => {
            const p = parseSource(ip);
            return (
              typeof p !== 'string' &&
              p.range.start <= BigInt(0x0a000000 + host) &&
              p.range.end >= BigInt(0x0a000000 + host)
            );
          });
          assert.equal(holders(host).length, inAny ? 1 : 0, `10.0.0.${host}: ${holders(host).join()}`);
        }
        // ungovernedRanges agrees with the sets.
        const ranges = ungovernedRanges(
          claims.map(([ip, mode]) => ({
            prefix: parseSource(ip) as never,
            mode: mode as 'Enforce' | 'Audit' | null,
          })),
        );
        const fromSets = [...(els.get('ungoverned4') ?? []), ...(els.get('ungovernednet4') ?? [])];
        assert.equal(ranges.length, fromSets.length);
      },
    ),
    { numRuns: 200 },
  );
});

function wantedFor(c: ReturnType<typeof resolveNftConfig>, state: StaticState) {
  const w = staticElements(state);
  for (const [n, s] of scopeElements(c.sourceCidrs)) w.set(n, s);
  return w;
}

function destructive(commands: readonly string[]): string[] {
  return commands.filter((c) => /^(flush set|delete set|delete table|flush table|flush ruleset)/.test(c));
}

const PODS: StaticState = {
  sources: [{ ip: '10.10.2.2', mode: 'Enforce' }],
  cidrs: [],
  verify: [],
  ungoverned: ['10.10.4.2', 'fd00:10:4::2'],
};

test('turning source CIDRs on: elements, counters, chains; nothing recreated; DNS conntrack of the scope flushed', () => {
  const before = resolveNftConfig();
  const after = resolveNftConfig({ sourceCidrs: SCOPE });
  const present = wantedFor(before, PODS);
  const p = planReconcile(after, kernelOf(before), present, wantedFor(after, PODS));
  assert.deepEqual(p.recreatedSets, []);
  assert.deepEqual(p.rebuiltSets, []);
  assert.deepEqual(destructive(p.commands), []);
  assert.deepEqual(
    p.elementChanges.map((c) => [c.set, c.added, c.removed]),
    [
      ['scope4', 1, 0],
      ['scope6', 1, 0],
    ],
  );
  assert.ok(p.commands.includes('add counter inet namegate unknown'));
  assert.ok(p.commands.includes('add counter inet namegate spoofed'));
  assert.ok(
    p.commands.includes(
      'add chain inet namegate filter_prerouting { type filter hook prerouting priority -300; policy accept; }',
    ),
  );
  assert.ok(
    p.commands.indexOf('add counter inet namegate unknown') <
      p.commands.findIndex((c) => c.includes('counter name "unknown"')),
  );
  // Everything of the scope except the known ungoverned pod (and the governed one, already
  // redirected) has its DNS redirected now.
  assert.deepEqual(p.newlyGoverned.filter((x) => !x.includes(':')).sort(), [
    '10.10.0.0/23',
    '10.10.128.0/17',
    '10.10.16.0/20',
    '10.10.2.0/31',
    '10.10.2.128/25',
    '10.10.2.16/28',
    '10.10.2.3',
    '10.10.2.32/27',
    '10.10.2.4/30',
    '10.10.2.64/26',
    '10.10.2.8/29',
    '10.10.3.0/24',
    '10.10.32.0/19',
    '10.10.4.0/31',
    '10.10.4.128/25',
    '10.10.4.16/28',
    '10.10.4.3',
    '10.10.4.32/27',
    '10.10.4.4/30',
    '10.10.4.64/26',
    '10.10.4.8/29',
    '10.10.5.0/24',
    '10.10.6.0/23',
    '10.10.64.0/18',
    '10.10.8.0/21',
  ]);
  assert.ok(!p.newlyGoverned.includes('10.10.4.2'));
  // Again with the same config and state: nothing changes, the counters are only re-added.
  const again = planReconcile(after, kernelOf(after), wantedFor(after, PODS), wantedFor(after, PODS));
  assert.deepEqual(again.elementChanges, []);
  assert.deepEqual(again.newlyGoverned, []);
});

test('the ungoverned list and the source CIDRs change by difference', () => {
  const c = resolveNftConfig({ sourceCidrs: SCOPE });
  // The unmanaged pod leaves (deleted): its address is unknown now, and its DNS is redirected.
  const gone: StaticState = { ...PODS, ungoverned: ['fd00:10:4::2'] };
  const p = planReconcile(c, kernelOf(c), wantedFor(c, PODS), wantedFor(c, gone));
  assert.deepEqual(
    p.elementChanges.map((x) => [x.set, x.added, x.removed]),
    [['ungoverned4', 0, 1]],
  );
  assert.ok(p.commands.includes('delete element inet namegate ungoverned4 { 10.10.4.2 }'));
  assert.deepEqual(p.newlyGoverned, ['10.10.4.2']);
  // A new scope list: elements only.
  const wider = resolveNftConfig({ sourceCidrs: ['10.0.0.0/8'] });
  const q = planReconcile(wider, kernelOf(c), wantedFor(c, PODS), wantedFor(wider, PODS));
  assert.deepEqual(destructive(q.commands), []);
  assert.deepEqual(
    q.elementChanges.map((x) => [x.set, x.added, x.removed]),
    [
      ['scope4', 1, 1],
      ['scope6', 0, 1],
    ],
  );
  // Source CIDRs off: the unknown chains go, the sets stay (empty scope), nothing is flushed.
  const off = resolveNftConfig();
  const r = planReconcile(off, kernelOf(c), wantedFor(c, PODS), wantedFor(off, PODS));
  assert.deepEqual(destructive(r.commands), []);
  for (const name of ['nat_unknown', 'unknown_deny', 'filter_prerouting'])
    assert.ok(r.commands.includes(`delete chain inet namegate ${name}`), name);
  assert.deepEqual(r.newlyGoverned, []);
});

test('newlyGoverned: a governed source inside the scope was redirected already', () => {
  const present = new Map([
    ['scope4', new Set(['10.10.0.0-10.10.255.255'])],
    ['ungoverned4', new Set(['10.10.4.2'])],
  ]);
  // The ungoverned pod becomes governed: its DNS was not redirected, now it is.
  const wanted = new Map([
    ['scope4', new Set(['10.10.0.0-10.10.255.255'])],
    ['enforce4', new Set(['10.10.4.2'])],
  ]);
  assert.deepEqual(newlyGovernedPrefixes(present, wanted), ['10.10.4.2']);
  // An unknown address becomes governed: it was redirected already.
  const w2 = new Map([...present, ['enforce4', new Set(['10.10.9.9'])]]);
  assert.deepEqual(newlyGovernedPrefixes(present, w2), []);
});

test('counters: parsed from nft JSON, exported as namegate_datapath_unknown_source_drops_total', async () => {
  const json = JSON.stringify({
    nftables: [
      { metainfo: { version: '1.0.6' } },
      { counter: { family: 'inet', name: 'unknown', table: 'namegate', handle: 1, packets: 7, bytes: 420 } },
    ],
  });
  assert.deepEqual(parseCounter(json), { name: 'unknown', packets: 7, bytes: 420 });
  assert.throws(() => parseCounter('{"nftables": []}'), /no counter/);
  const registry = createRegistry({ defaultMetrics: false });
  const m = new DatapathMetrics(registry);
  m.readSourceDrops = async () => ({ unknown: 12, spoofed: 3, dnsFlood: 5 });
  const text = await registry.metrics();
  assert.match(text, /namegate_datapath_dns_flood_drops_total 5/);
  assert.match(text, /namegate_datapath_unknown_source_drops_total\{reason="unknown"\} 12/);
  assert.match(text, /namegate_datapath_unknown_source_drops_total\{reason="spoofed"\} 3/);
});
