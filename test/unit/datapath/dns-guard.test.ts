/**
 * The kernel's DNS flood guard (NODE-06): a per-source rate limit on UDP to the proxy's ports,
 * in the input hook, counted. From the agent's config to the ruleset.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dnsGuardFrom, nftConfigFrom } from '../../../src/config/datapath.ts';
import { validateConfig } from '../../../src/config/load.ts';
import { resolveNftConfig } from '../../../src/datapath/nft-config.ts';
import { planReconcile } from '../../../src/datapath/nft-reconcile.ts';
import { chainDefs, counterNames, renderSetBody, setDefs } from '../../../src/datapath/nft-ruleset.ts';

const DNS = { upstreams: ['192.0.2.53'] };
const LIMITS = { ratePerSource: 2000, burstPerSource: 4000 };

test('by default the guard is 4x the proxy limits on every listen port, deduplicated', () => {
  const c = validateConfig({ dns: DNS }, '/etc');
  assert.deepEqual(dnsGuardFrom(c.datapath, [5353, 53, 5353], LIMITS), {
    ports: [53, 5353],
    rate: 8000,
    burst: 16000,
  });
});

test('datapath.dnsFloodLimit sets the rate; 0 turns the guard off; bad values are refused', () => {
  const set = validateConfig({ dns: DNS, datapath: { dnsFloodLimit: 500 } }, '/etc');
  assert.deepEqual(dnsGuardFrom(set.datapath, [53], LIMITS), { ports: [53], rate: 500, burst: 16000 });
  const off = validateConfig({ dns: DNS, datapath: { dnsFloodLimit: 0 } }, '/etc');
  assert.equal(dnsGuardFrom(off.datapath, [53], LIMITS), null);
  assert.throws(() => validateConfig({ dns: DNS, datapath: { dnsFloodLimit: -1 } }, '/etc'), /dnsFloodLimit/);
  assert.throws(() => resolveNftConfig({ dnsGuard: { ports: [], rate: 1, burst: 1 } }), /1 to 16 ports/);
  assert.throws(() => resolveNftConfig({ dnsGuard: { ports: [70000], rate: 1, burst: 1 } }), /ports\[0\]/);
  assert.throws(() => resolveNftConfig({ dnsGuard: { ports: [53], rate: 0, burst: 1 } }), /dnsGuard\.rate/);
});

test('the ruleset: a dynamic set per family, an input chain that limits and counts, a named counter', () => {
  const c = validateConfig({ dns: DNS }, '/etc');
  const nft = resolveNftConfig(
    nftConfigFrom(c.datapath, 5353, null, dnsGuardFrom(c.datapath, [53, 5353], LIMITS)),
  );
  const sets = setDefs(nft).filter((s) => s.role === 'dnsguard');
  assert.deepEqual(
    sets.map((s) => [s.name, renderSetBody(s)]),
    [
      ['dnsguard4', 'type ipv4_addr; flags dynamic,timeout; size 65536;'],
      ['dnsguard6', 'type ipv6_addr; flags dynamic,timeout; size 65536;'],
    ].map(([n, b]) => [n, b?.replace('65536', String(nft.sizes.sources))]),
  );
  const input = chainDefs(nft).find((ch) => ch.name === 'filter_input');
  assert.ok(input);
  assert.deepEqual(input.base, { type: 'filter', hook: 'input', priority: -150, policy: 'accept' });
  assert.deepEqual(input.rules, [
    'meta l4proto udp th dport { 53, 5353 } update @dnsguard4 { ip saddr timeout 60s limit rate over 8000/second burst 16000 packets } counter name "dnsflood" drop',
    'meta l4proto udp th dport { 53, 5353 } update @dnsguard6 { ip6 saddr timeout 60s limit rate over 8000/second burst 16000 packets } counter name "dnsflood" drop',
  ]);
  assert.ok(counterNames(nft).includes('dnsflood'));
});

test('without the guard there is no input chain, set or counter', () => {
  const nft = resolveNftConfig({});
  assert.equal(
    chainDefs(nft).find((ch) => ch.base?.hook === 'input'),
    undefined,
  );
  assert.equal(setDefs(nft).filter((s) => s.role === 'dnsguard').length, 0);
  assert.equal(counterNames(nft).includes('dnsflood'), false);
});

test('a kernel listing without the dynamic flag (nft 1.0.6 JSON) does not make reconcile recreate the set', () => {
  const nft = resolveNftConfig({ dnsGuard: { ports: [53], rate: 100, burst: 200 } });
  const sets = new Map(
    setDefs(nft).map((s) => [
      s.name,
      { name: s.name, type: [...s.type], flags: [...s.flags], size: s.size, counter: s.counter },
    ]),
  );
  const chains = new Map(chainDefs(nft).map((ch) => [ch.name, { name: ch.name, base: ch.base }]));
  const plan = planReconcile(nft, { sets, chains } as never, new Map(), new Map());
  assert.equal(
    plan.commands.some((cmd) => /^(delete|add) set .* dnsguard/.test(cmd)),
    false,
    plan.commands.join('\n'),
  );
});
