/** The `proxy` config section: safe defaults (both proxies off), strict keys, bounds. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProxySectionSchema, proxyConfig } from '../../../src/config/proxy.ts';

test('defaults: both proxies off, wildcard SNI listeners on one port, bounded peeks', () => {
  const c = proxyConfig();
  assert.equal(c.sni.enabled, false);
  assert.equal(c.connect.enabled, false);
  assert.deepEqual(c.sni.listen, ['0.0.0.0:15001', '[::]:15001']);
  assert.equal(c.peekTimeoutMs, 5000);
  assert.equal(c.maxHelloBytes, 16_384);
  assert.equal(c.originalDst, 'auto');
  assert.deepEqual(c.connect.tlsPorts, [443]);
  assert.equal(c.connect.unknownSources, 'deny');
  assert.deepEqual(proxyConfig(c), c, 'parsing an already parsed section is the identity');
});

test('unknown keys and out-of-range values are errors', () => {
  assert.equal(ProxySectionSchema.safeParse({ sni: { enable: true } }).success, false);
  assert.equal(ProxySectionSchema.safeParse({ peekTimeoutMs: 10 }).success, false);
  assert.equal(ProxySectionSchema.safeParse({ maxHelloBytes: 1 << 20 }).success, false);
  assert.equal(ProxySectionSchema.safeParse({ originalDst: 'tproxy' }).success, false);
});
