/**
 * The agent's `datapath` section: internal and source CIDRs are validated with field paths and reach the
 * nftables driver's config.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { nftConfigFrom, unknownSourcesWarning } from '../../../src/config/datapath.ts';
import { validateConfig } from '../../../src/config/load.ts';
import { resolveNftConfig } from '../../../src/datapath/nft-config.ts';
import { problems } from './helpers.ts';

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

test('datapath.sourceCIDRs and antiSpoof (L3-05, K8S-04): defaults, canonical, field paths', () => {
  const d = validateConfig({ dns: DNS }, '/etc').datapath;
  assert.deepEqual(d.sourceCIDRs, []);
  assert.equal(d.antiSpoof, true);
  const c = validateConfig(
    { dns: DNS, datapath: { sourceCIDRs: ['10.244.0.0/16', 'FD00:10:244::/56'], antiSpoof: false } },
    '/etc',
  );
  const nft = resolveNftConfig(nftConfigFrom(c.datapath, 5353, null));
  assert.deepEqual(nft.sourceCidrs, ['10.244.0.0/16', 'fd00:10:244::/56']);
  assert.equal(nft.antiSpoof, false);
  const p = problems({
    dns: DNS,
    datapath: { sourceCIDRs: ['10.244.0.0/16', '10.244.1.0/8', 'pods', '::/0'], antiSpoof: 'yes' },
  });
  assert.equal(p.length, 4, p.join('\n'));
  assert.match(p[0] ?? '', /^datapath\.sourceCIDRs\[1\]: .*host bits/);
  assert.match(p[1] ?? '', /^datapath\.sourceCIDRs\[2\]: .*not an IP address/);
  assert.match(p[2] ?? '', /^datapath\.sourceCIDRs\[3\]: .*every source/);
  assert.match(p[3] ?? '', /^datapath\.antiSpoof: /);
  const many = Array.from({ length: 257 }, (_, i) => `10.${i >> 8}.${i & 255}.0/24`);
  assert.match(problems({ dns: DNS, datapath: { sourceCIDRs: many } }).join('\n'), /datapath\.sourceCIDRs/);
});

test('startup warning: without sourceCIDRs, unknown addresses of groups or pods pass untouched', () => {
  const group = { name: 'g', cidrs: ['10.0.1.0/24'] };
  const warn = (doc: object) => unknownSourcesWarning(validateConfig({ dns: DNS, ...doc }, '/etc'));
  assert.match(
    warn({ sources: [group] })?.message ?? '',
    /sourceCIDRs is empty: only known static source groups/,
  );
  assert.equal(warn({ sources: [group] })?.reason, 'unknown-sources-ungoverned');
  assert.match(
    unknownSourcesWarning({ ...validateConfig({ dns: DNS }, '/etc'), kubernetes: {} })?.message ?? '',
    /only known pods are governed/,
  );
  // Nothing to govern, or nothing enforced: nothing to say.
  assert.equal(warn({}), null);
  assert.equal(warn({ sources: [group], datapath: { driver: 'recording' } }), null);
  // With sourceCIDRs: silent, unless anti-spoofing is off.
  assert.equal(warn({ sources: [group], datapath: { sourceCIDRs: ['10.0.0.0/16'] } }), null);
  assert.equal(
    warn({ sources: [group], datapath: { sourceCIDRs: ['10.0.0.0/16'], antiSpoof: false } })?.reason,
    'anti-spoof-off',
  );
});
