/** The merged-prefix cover of the DNS conntrack flush (src/datapath/dns-flush.ts). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { dnsFlushCommands, prefixCover } from '../../../src/datapath/dns-flush.ts';

const inside = (p: { start: bigint; len: number }, x: bigint, width: number) =>
  x >> BigInt(width - p.len) === p.start >> BigInt(width - p.len);

test('prefixCover: covers every hit and no kept address (property)', () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.integer({ min: 0, max: 4095 }), { maxLength: 60 }),
      fc.array(fc.boolean(), { minLength: 60, maxLength: 60 }),
      (xs, pick) => {
        const hit = xs
          .filter((_, i) => pick[i])
          .map(BigInt)
          .sort((a, b) => (a < b ? -1 : 1));
        const keep = xs
          .filter((_, i) => !pick[i])
          .map(BigInt)
          .sort((a, b) => (a < b ? -1 : 1));
        const cover = prefixCover(hit, keep, 12);
        for (const h of hit)
          assert.ok(
            cover.some((p) => inside(p, h, 12)),
            `hit ${h} uncovered`,
          );
        for (const k of keep) assert.ok(!cover.some((p) => inside(p, k, 12)), `kept ${k} covered`);
        assert.ok(cover.length <= hit.length);
      },
    ),
  );
});

test('prefixCover: contiguous hits with nothing to keep are one prefix; without masks, addresses', () => {
  const hit = Array.from({ length: 256 }, (_, i) => 0x0a000100n + BigInt(i));
  assert.deepEqual(prefixCover(hit, [], 32), [{ start: 0x0a000100n, len: 24 }]);
  assert.equal(prefixCover(hit, [], 32, false).length, 256);
  assert.deepEqual(prefixCover([], [1n], 32), []);
});

test('dnsFlushCommands: per family and protocol, only for the sources to flush', () => {
  const cmds = dnsFlushCommands(
    [
      { family: 4, protocol: 'udp', source: '10.0.1.5' },
      { family: 4, protocol: 'udp', source: '10.0.1.6' },
      { family: 4, protocol: 'udp', source: '10.0.1.7' },
      { family: 6, protocol: 'tcp', source: 'fd00::5' },
    ],
    (e) => e.source !== '10.0.1.7',
    true,
  );
  assert.deepEqual(
    cmds.map((c) => c.join(' ')),
    [
      '-D -f ipv4 -s 10.0.1.4/31 -p udp --dport 53',
      '-D -f ipv4 -s 10.0.1.6 -p udp --dport 53',
      '-D -f ipv6 -s fd00::5 -p tcp --dport 53',
    ],
  );
});
