/**
 * Kernel drops as flow events: with `observe.kernelEvents` (on by default) every logging rule of
 * the ruleset sends to the NFLOG group through a per-source meter; off, the kernel log as before.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { datapathSettingsFrom } from '../../../src/config/datapath.ts';
import { validateConfig } from '../../../src/config/load.ts';
import { resolveNftConfig } from '../../../src/datapath/nft-config.ts';
import { chainDefs, setDefs } from '../../../src/datapath/nft-ruleset.ts';

const DNS = { upstreams: ['192.0.2.53'] };

function rules(config: Record<string, unknown>): { chains: Map<string, readonly string[]>; sets: string[] } {
  const c = resolveNftConfig(datapathSettingsFrom(validateConfig({ dns: DNS, ...config }, '/etc')).nft);
  return {
    chains: new Map(chainDefs(c).map((ch) => [ch.name, ch.rules])),
    sets: setDefs(c).map((s) => `${s.name}${s.dynamic ? ' dynamic' : ''}`),
  };
}

test('by default every drop, Audit would-be drop, unknown and spoofed source logs to NFLOG, per source', () => {
  const r = rules({ datapath: { sourceCIDRs: ['10.10.0.0/16'] } });
  assert.ok(r.sets.includes('flowlog4 dynamic') && r.sets.includes('flowlog6 dynamic'));
  const meter = (f: 4 | 6, prefix: string) =>
    `update @flowlog${f} { ${f === 4 ? 'ip' : 'ip6'} saddr timeout 60s limit rate 10/second burst 20 packets } log group 100 snaplen 128 prefix "${prefix}"`;
  for (const [chain, prefix] of [
    ['enforce_deny', 'namegate-drop '],
    ['audit_deny', 'namegate-audit '],
    ['unknown_deny', 'namegate-unknown '],
  ] as const) {
    const got = r.chains.get(chain) ?? [];
    assert.ok(
      got.includes(meter(4, prefix)) && got.includes(meter(6, prefix)),
      `${chain}: ${got.join(' | ')}`,
    );
    assert.ok(!got.some((x) => x.includes('level info')), `${chain} does not use the kernel log`);
  }
  const spoof = r.chains.get('filter_prerouting') ?? [];
  assert.ok(spoof.some((x) => x.startsWith('ip saddr @scope4 fib saddr . iif oif missing update @flowlog4')));
  // The drop itself is unchanged: counted, then dropped, logged or not.
  assert.deepEqual((r.chains.get('enforce_deny') ?? []).at(-1), 'drop');
});

test('the group, rate and burst come from observe.kernelEvents; off, the kernel log as configured', () => {
  const custom = rules({ observe: { kernelEvents: { group: 7, ratePerSource: 50, burst: 100 } } });
  assert.ok(
    (custom.chains.get('enforce_deny') ?? []).some((x) =>
      x.includes('limit rate 50/second burst 100 packets } log group 7 snaplen 128'),
    ),
  );
  const off = rules({ observe: { kernelEvents: { enabled: false } }, datapath: { logDrops: true } });
  assert.ok(!off.sets.some((s) => s.startsWith('flowlog')));
  assert.deepEqual(
    (off.chains.get('enforce_deny') ?? []).filter((x) => x.includes('log')),
    ['limit rate 10/second burst 20 packets log prefix "namegate-drop " level info'],
  );
  assert.throws(() => validateConfig({ dns: DNS, observe: { kernelEvents: { group: 0 } } }, '/etc'), /group/);
});
