import assert from 'node:assert/strict';
import { test } from 'node:test';
import { resolveNftConfig } from '../../../src/datapath/nft-config.ts';

test('defaults are valid', () => {
  const c = resolveNftConfig();
  assert.equal(c.table, 'namegate');
  assert.equal(c.natPriority, -110);
  assert.ok(c.minTimeoutMs > 0);
});

test('invalid fields are named', () => {
  const bad: [object, RegExp][] = [
    [{ table: 'Bad Table' }, /table/],
    [{ dns: { kind: 'redirect', port: 0 } }, /dns.port/],
    [{ dns: { kind: 'dnat', port: 53, ipv4: '::1', ipv6: null } }, /dns.ipv4/],
    [{ dns: { kind: 'dnat', port: 53, ipv4: null, ipv6: null } }, /needs ipv4 or ipv6/],
    [{ logRate: '10 per second' }, /logRate/],
    [{ output: { enabled: true } }, /exemptUids/],
    [{ sizes: { allow: 0 } }, /sizes.allow/],
    [{ minTimeoutMs: 0 }, /minTimeoutMs/],
  ];
  for (const [input, re] of bad) {
    assert.throws(
      () => resolveNftConfig(input as never),
      (e: Error & { code?: string }) => {
        assert.equal(e.code, 'NG_CONFIG_INVALID');
        assert.match(e.message, re);
        return true;
      },
    );
  }
});
