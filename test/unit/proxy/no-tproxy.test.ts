/**
 * NODE-02 (TPROXY listener without IP_TRANSPARENT): namegate does not use TPROXY. Verify ports
 * and DNS reach the proxies through nat REDIRECT, and the SNI proxy learns each connection's
 * original destination from the kernel's conntrack entry (SO_ORIGINAL_DST through the addon, or
 * the conntrack tool). Under TPROXY the accepted socket's local address *is* the original
 * destination; under REDIRECT it is the node's own address, so it must never be taken for the
 * destination. These tests pin both halves: the ruleset has no tproxy statement, and with no
 * working original-destination method the proxy fails closed (every connection refused
 * `no_original_dst`, nothing dialled, counted with method="none") even when the socket's local
 * address and port are an allowed, learned destination.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { proxySettings } from '../../../src/config/proxy.ts';
import { resolveNftConfig } from '../../../src/datapath/nft-config.ts';
import { renderRuleset } from '../../../src/datapath/nft-ruleset.ts';
import { StaticGroups } from '../../../src/identity/static-groups.ts';
import { silentLogger } from '../../../src/observe/log.ts';
import { CompiledPolicies } from '../../../src/policy/compile.ts';
import { originalDestinationFor } from '../../../src/proxy/original-dst.ts';
import { SniProxy } from '../../../src/proxy/sni-proxy.ts';
import { client, GROUPS, Learned, line, policy } from './helpers.ts';

const curlHello = readFileSync(path.join(import.meta.dirname, '../../testdata/proxy/curl-default.bin'));

test('NODE-02: the datapath redirects (nat REDIRECT), it never uses TPROXY or transparent sockets', () => {
  for (const output of [false, true]) {
    const text = renderRuleset(
      resolveNftConfig({ verifyPort: 15001, output: { enabled: output, exemptUids: [0] } }),
    );
    assert.match(text, /tcp dport @verify4 redirect to :15001/);
    assert.match(text, /udp dport 53 redirect to :/);
    assert.doesNotMatch(text, /tproxy|transparent|socket wildcard|meta mark set/);
  }
});

test('NODE-02: with no original-destination method the SNI proxy fails closed and never uses the local address', async (t) => {
  const before = process.env['NAMEGATE_SOCKOPT_ADDON'];
  process.env['NAMEGATE_SOCKOPT_ADDON'] = '/nonexistent/sockopt.node';
  t.after(() => {
    if (before === undefined) delete process.env['NAMEGATE_SOCKOPT_ADDON'];
    else process.env['NAMEGATE_SOCKOPT_ADDON'] = before;
  });
  const od = originalDestinationFor('addon');
  assert.equal(od.method, 'none');
  assert.match(od.problem ?? '', /does not exist/, 'the reason is there for the startup warning');

  const lines: Array<Record<string, unknown>> = [];
  const registry = new Registry();
  let policies = new CompiledPolicies([]);
  const dials: string[] = [];
  const proxy = await SniProxy.start({
    policies: { current: () => policies },
    identities: new StaticGroups(GROUPS),
    // What TPROXY would offer as the destination (the accepted socket's local address and port)
    // is learned for the SNI name and allowed by policy: only the lookup method stands between.
    learned: new Learned().add('127.0.0.1', 'api.example.com', '127.0.0.1'),
    originalDestination: od.lookup,
    originalDestinationMethod: od.method,
    dial: (dst) => {
      dials.push(`${dst.address}:${dst.port}`);
      throw new Error('must not dial');
    },
    log: silentLogger(),
    registry,
    flowLog: { write: (l: string) => lines.push(JSON.parse(l)) },
    settings: proxySettings({ sni: { listen: ['127.0.0.1:0'] } }),
  });
  t.after(() => proxy.stop());
  const port = proxy.addresses()[0]!.port;
  policies = new CompiledPolicies([
    policy({
      egress: [{ toFQDNs: [{ name: 'api.example.com' }], ports: [{ port, protocol: 'TCP' }], verify: 'SNI' }],
    }),
  ]);

  for (let i = 0; i < 3; i++) {
    const r = await client(port, [curlHello]);
    assert.ok(r.closed, 'closed');
    assert.equal(r.data.length, 0, 'nothing answered: no alert from a server, no relayed byte');
  }
  await line(
    lines,
    (l) => lines.filter((x) => x['event'] === 'proxy').length === 3 && l['event'] === 'proxy',
  );
  for (const l of lines.filter((x) => x['event'] === 'proxy')) {
    assert.equal(l['verdict'], 'deny');
    assert.equal(l['reason'], 'no_original_dst');
  }
  assert.deepEqual(dials, [], 'nothing dialled');
  const counted = (await registry.getSingleMetric('namegate_proxy_original_dst_total')?.get())?.values ?? [];
  assert.deepEqual(
    counted.map((v) => [v.labels['method'], v.labels['result'], v.value]),
    [['none', 'failed', 3]],
  );
});
