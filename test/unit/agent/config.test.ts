/**
 * The agent's `datapath` section: internal CIDRs are validated with field paths and reach the
 * nftables driver's config.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { nftConfigFrom } from '../../../src/agent/config.ts';
import { ConfigError, validateConfig } from '../../../src/config/load.ts';
import { resolveNftConfig } from '../../../src/datapath/nft-config.ts';

function problems(doc: unknown): string[] {
  try {
    validateConfig(doc, '/etc/namegate');
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => `${p.path}: ${p.message}`);
    throw err;
  }
  return [];
}

const DNS = { upstreams: ['192.0.2.53'] };

test('datapath.internalCIDRs: default empty, passed to the driver canonical', () => {
  assert.deepEqual(validateConfig({ dns: DNS }, '/etc').datapath.internalCIDRs, []);
  const c = validateConfig(
    { dns: DNS, datapath: { internalCIDRs: ['10.244.0.0/16', '10.96.0.0/12', 'FD00:10:244::/56'] } },
    '/etc',
  );
  const nft = resolveNftConfig(nftConfigFrom(c.datapath, 5353, null));
  assert.deepEqual(nft.internalCidrs, ['10.244.0.0/16', '10.96.0.0/12', 'fd00:10:244::/56']);
});

test('datapath.internalCIDRs: every bad entry is named by its path', () => {
  const p = problems({
    dns: DNS,
    datapath: { internalCIDRs: ['10.244.0.0/16', '10.244.1.0/8', 'pods', '0.0.0.0/0', 42] },
  });
  assert.equal(p.length, 4, p.join('\n'));
  assert.match(p[0] ?? '', /^datapath\.internalCIDRs\[1\]: .*host bits/);
  assert.match(p[1] ?? '', /^datapath\.internalCIDRs\[2\]: .*not an IP address/);
  assert.match(p[2] ?? '', /^datapath\.internalCIDRs\[3\]: .*every destination/);
  assert.match(p[3] ?? '', /^datapath\.internalCIDRs\[4\]: /);
  const many = Array.from({ length: 257 }, (_, i) => `10.${i >> 8}.${i & 255}.0/24`);
  assert.match(
    problems({ dns: DNS, datapath: { internalCIDRs: many } }).join('\n'),
    /datapath\.internalCIDRs/,
  );
});
