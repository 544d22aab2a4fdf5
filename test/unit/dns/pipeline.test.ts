/**
 * The pipeline against a programmable upstream, the recording datapath and a manual clock:
 * every DNS, TIME and REL case of security-cases.md that the proxy itself decides.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import dnsPacket from 'dns-packet';
import { unknownScopeFrom } from '../../../src/dns/route.ts';
import { UpstreamError } from '../../../src/dns/upstream.ts';
import {
  A,
  AAAA,
  CNAME,
  decode,
  edeOf,
  HTTPS,
  harness,
  ipv4Hint,
  query,
  rcodeOf,
  reply,
  svcbRdata,
} from './helpers.ts';

const WEB = '10.0.1.5';
const WEB2 = '10.0.1.6';
const BATCH = '10.0.2.5';
const AUDIT = '10.0.3.5';
const FREE = '10.0.9.5'; // in a group no policy selects
const UNKNOWN = '192.0.2.200';

describe('policy verdicts', () => {
  test('allowed name: forwarded, the upstream bytes relayed with the client ID, IPs learned for this source', async () => {
    const h = harness();
    const upstreamReply = reply('api.example.com', 'A', [A('api.example.com', '198.51.100.10', 120)]);
    h.upstream = () => upstreamReply;
    const r = await h.ask(WEB, query('api.example.com', 'A', { id: 0xbeef }));
    assert.equal(r!.readUInt16BE(0), 0xbeef);
    assert.deepEqual(r!.subarray(2), upstreamReply.subarray(2), 'bytes relayed untouched apart from the ID');
    assert.deepEqual(h.store.lookup(WEB, 'api.example.com', h.clock.now()), ['198.51.100.10']);
    assert.deepEqual(
      h.datapath.learned().map((e) => [e.source, e.destination, e.protocol, e.portFrom, e.portTo]),
      [[WEB, '198.51.100.10', 'TCP', 443, 443]],
    );
    const line = h.lines.at(-1)!;
    assert.equal(line['verdict'], 'allow');
    assert.equal(line['reason'], 'fqdn_rule');
    assert.equal(line['policy'], 'shop/web');
    assert.deepEqual(line['ips'], ['198.51.100.10']);
    assert.equal(line['ttl'], 120);
    assert.equal(line['hold'], 'committed');
    for (const f of ['time', 'src', 'identity', 'qname', 'qtype', 'rcode', 'ms']) assert.ok(f in line, f);
  });

  test('DNS-07: denied name -> REFUSED with EDE Blocked, not forwarded, nothing learned', async () => {
    const h = harness();
    const r = await h.ask(WEB, query('evil.example.org', 'A', { edns: 1232 }));
    assert.equal(rcodeOf(r), 5);
    assert.deepEqual(edeOf(r)?.[0], 15);
    assert.equal(h.upstreamCalls.length, 0);
    assert.equal(h.store.size, 0);
    assert.equal(h.datapath.calls.length, 0);
    assert.equal(h.lines.at(-1)!['verdict'], 'deny');
    assert.equal(
      await h.metric('namegate_dns_queries_total', { verdict: 'deny', reason: 'no_matching_rule' }),
      1,
    );
  });

  test('DNS-07: denyResponse NXDOMAIN', async () => {
    const h = harness({ settings: { denyRcode: 3 } });
    assert.equal(rcodeOf(await h.ask(WEB, query('evil.example.org'))), 3);
  });

  test('NAME-01: ALLOWED name in any case and with the root dot matches', async () => {
    const h = harness();
    h.upstream = (u) => reply(u.question.name, 'A', [A(u.question.name, '198.51.100.10')]);
    assert.equal(rcodeOf(await h.ask(WEB, query('API.Example.COM.'))), 0);
    assert.deepEqual(h.store.lookup(WEB, 'api.example.com', h.clock.now()), ['198.51.100.10']);
  });

  test('DNS-23: ndots search expansion matches only as the full name', async () => {
    const h = harness();
    assert.equal(
      rcodeOf(await h.ask(WEB, query('api.example.com.shop.svc.cluster.local'))),
      0,
      'pass-through zone',
    );
    assert.equal(h.lines.at(-1)!['reason'], 'pass_through');
    assert.equal(rcodeOf(await h.ask(WEB, query('api.example.com.corp.internal'))), 5);
    assert.equal(h.store.size, 0);
  });

  test('NAME-09: look-alikes are denied', async () => {
    const h = harness();
    for (const n of ['api.example.com.evil.net', 'xapi.example.com', 'cdn.example.net']) {
      assert.equal(rcodeOf(await h.ask(WEB, query(n))), 5, n);
    }
  });

  test('a name with a byte no canonical name has is denied, never matched', async () => {
    const h = harness();
    const raw = Buffer.from(query('api.example.com'));
    raw[13] = 0x2e; // "api" -> "a.i" inside one label
    assert.equal(rcodeOf(await h.ask(WEB, raw)), 5);
    assert.equal(h.lines.at(-1)!['reason'], 'name_invalid');
  });

  test('audit mode: denied names are forwarded and logged as audit, nothing learned; allowed names learn', async () => {
    const h = harness();
    h.upstream = (u) => reply(u.question.name, 'A', [A(u.question.name, '198.51.100.20')]);
    const r = await h.ask(AUDIT, query('evil.example.org'));
    assert.equal(rcodeOf(r), 0);
    assert.equal(decode(r).answers?.length, 1);
    assert.equal(h.lines.at(-1)!['verdict'], 'audit');
    assert.equal(h.store.size, 0);
    await h.ask(AUDIT, query('api.example.com'));
    assert.equal(h.lines.at(-1)!['verdict'], 'allow');
    assert.deepEqual(h.store.lookup(AUDIT, 'api.example.com', h.clock.now()), ['198.51.100.20']);
  });

  test('K8S-03: ungoverned and unknown sources are forwarded, nothing learned', async () => {
    const h = harness();
    h.upstream = (u) => reply(u.question.name, 'A', [A(u.question.name, '198.51.100.30')]);
    assert.equal(rcodeOf(await h.ask(FREE, query('anything.example.org'))), 0);
    assert.equal(h.lines.at(-1)!['reason'], 'ungoverned');
    assert.equal(rcodeOf(await h.ask(UNKNOWN, query('anything.example.org'))), 0);
    assert.equal(h.lines.at(-1)!['reason'], 'unknown_source');
    assert.equal(h.store.size, 0);
    assert.equal(h.datapath.calls.length, 0);
  });

  test('unknownSources: refuse', async () => {
    const h = harness({ settings: { unknownSources: 'refuse' } });
    assert.equal(rcodeOf(await h.ask(UNKNOWN, query('anything.example.org'))), 5);
    assert.equal(h.upstreamCalls.length, 0);
  });

  test('K8S-04 / L3-05: an unknown source inside the source CIDRs is refused even with unknownSources forward', async () => {
    const h = harness({ settings: unknownScopeFrom(['192.0.2.0/24', '10.0.0.0/16']) });
    h.upstream = (u) => reply(u.question.name, 'A', [A(u.question.name, '198.51.100.30')]);
    assert.equal(rcodeOf(await h.ask(UNKNOWN, query('anything.example.org'))), 5);
    assert.equal(h.lines.at(-1)!['reason'], 'unknown_source');
    assert.equal(h.upstreamCalls.length, 0, 'never forwarded');
    // Known sources inside the scope are unaffected: the ungoverned one is forwarded as before.
    assert.equal(rcodeOf(await h.ask(FREE, query('anything.example.org'))), 0);
    assert.equal(h.lines.at(-1)!['reason'], 'ungoverned');
    assert.equal(h.store.size, 0);
  });

  test('pass-through zones are forwarded for governed sources without learning', async () => {
    const h = harness();
    h.upstream = (u) => reply(u.question.name, 'A', [A(u.question.name, '10.96.0.10')]);
    assert.equal(rcodeOf(await h.ask(WEB, query('kube-dns.kube-system.svc.cluster.local'))), 0);
    assert.equal(h.store.size, 0);
  });

  test('DNS-24: refused query types and classes apply to every source', async () => {
    const h = harness();
    for (const src of [WEB, FREE, UNKNOWN]) {
      assert.equal(rcodeOf(await h.ask(src, query('api.example.com', 'ANY'))), 5);
      assert.equal(rcodeOf(await h.ask(src, query('api.example.com', 'AXFR'))), 5);
    }
    assert.equal(h.upstreamCalls.length, 0);
  });

  test('DNS-09: QDCOUNT 0 or 2 -> FORMERR, no crash', async () => {
    const h = harness();
    const zero = Buffer.from(query('api.example.com'));
    zero.writeUInt16BE(0, 4);
    const two = Buffer.from(query('api.example.com'));
    two.writeUInt16BE(2, 4);
    assert.equal(rcodeOf(await h.ask(WEB, zero)), 1);
    assert.equal(rcodeOf(await h.ask(WEB, two)), 1);
  });

  test('QR=1 in a request is dropped and counted', async () => {
    const h = harness();
    const r = Buffer.from(query('api.example.com'));
    r[2]! |= 0x80;
    assert.equal(await h.ask(WEB, r), null);
    assert.equal(await h.metric('namegate_dns_drops_total', { reason: 'response' }), 1);
  });
});

describe('learning', () => {
  test('DNS-11 through the pipeline: CNAME target addresses learned for the queried name only', async () => {
    const h = harness();
    h.upstream = () =>
      reply('api.example.com', 'A', [
        CNAME('api.example.com', 'edge.cdn.example.net'),
        A('edge.cdn.example.net', '198.51.100.40'),
        A('evil.example.org', '203.0.113.66'),
      ]);
    await h.ask(WEB, query('api.example.com'));
    assert.deepEqual(h.store.lookup(WEB, 'api.example.com', h.clock.now()), ['198.51.100.40']);
    assert.deepEqual(h.store.lookup(WEB, 'edge.cdn.example.net', h.clock.now()), []);
    assert.ok(!h.datapath.allows(WEB, '203.0.113.66', 'TCP', 443));
  });

  test('per source: one source learning never opens anything for another (design rule 2)', async () => {
    const h = harness();
    h.upstream = () => reply('api.example.com', 'A', [A('api.example.com', '198.51.100.10')]);
    await h.ask(WEB, query('api.example.com'));
    assert.ok(h.datapath.allows(WEB, '198.51.100.10', 'TCP', 443));
    assert.ok(!h.datapath.allows(WEB2, '198.51.100.10', 'TCP', 443));
    assert.deepEqual(h.store.lookup(WEB2, 'api.example.com', h.clock.now()), []);
  });

  test('elements carry the ports of the rules matching the name (ranges, empty = every port)', async () => {
    const h = harness();
    h.upstream = (u) => reply(u.question.name, 'A', [A(u.question.name, '198.51.100.50')]);
    await h.ask(WEB, query('mixed.example.com'));
    assert.deepEqual(
      h.datapath
        .learned()
        .map((e) => `${e.protocol}/${e.portFrom}-${e.portTo}`)
        .sort(),
      ['TCP/80-80', 'TCP/8000-8080'],
    );
    await h.ask(BATCH, query('api.example.com'));
    assert.deepEqual(
      h.datapath
        .learned()
        .filter((e) => e.source === BATCH)
        .map((e) => `${e.protocol}/${e.portFrom}-${e.portTo}`)
        .sort(),
      ['TCP/0-65535', 'UDP/0-65535'],
    );
  });

  test('DNS-21: answers in denied ranges are not learned (loopback, private, link-local, CGNAT, multicast, ...)', async () => {
    const h = harness();
    const ips = [
      '10.1.2.3',
      '127.0.0.1',
      '169.254.169.254',
      '100.64.0.1',
      '0.0.0.0',
      '224.0.0.1',
      '192.168.1.1',
      '172.16.0.1',
    ];
    h.upstream = () =>
      reply(
        'api.example.com',
        'A',
        ips.map((ip) => A('api.example.com', ip)),
      );
    const r = await h.ask(WEB, query('api.example.com'));
    assert.equal(rcodeOf(r), 0, 'the answer is still relayed');
    assert.equal(h.store.size, 0);
    assert.equal(h.datapath.calls.length, 0);
    assert.equal(await h.metric('namegate_dns_not_learned_total', { reason: 'denied_range' }), ips.length);
  });

  test('DNS-21: IPv6 forms (loopback, ULA, link-local, IPv4-mapped, NAT64, 6to4) are not learned', async () => {
    const h = harness();
    const ips = [
      '::1',
      'fd00::1',
      'fe80::1',
      '::ffff:198.51.100.1',
      '64:ff9b::c633:6401',
      '2002:c633:6401::1',
      '2001::1',
    ];
    h.upstream = () =>
      reply(
        'api.example.com',
        'AAAA',
        ips.map((ip) => AAAA('api.example.com', ip)),
      );
    await h.ask('fd00:1::5', query('api.example.com', 'AAAA'));
    assert.equal(h.store.size, 0);
  });

  test('a private answer is learned when a toCIDRs rule covers it', async () => {
    const h = harness();
    h.upstream = () =>
      reply('private.example.com', 'A', [
        A('private.example.com', '10.99.1.1'),
        A('private.example.com', '10.98.1.1'),
      ]);
    await h.ask(WEB, query('private.example.com'));
    assert.deepEqual(h.store.lookup(WEB, 'private.example.com', h.clock.now()), ['10.99.1.1']);
  });

  test('addresses of the other family than the source are not learned', async () => {
    const h = harness();
    h.upstream = () => reply('api.example.com', 'AAAA', [AAAA('api.example.com', '2001:db8::10')]);
    await h.ask(WEB, query('api.example.com', 'AAAA'));
    assert.equal(h.store.size, 0);
    await h.ask('fd00:1::5', query('api.example.com', 'AAAA'));
    assert.deepEqual(h.store.lookup('fd00:1::5', 'api.example.com', h.clock.now()), ['2001:db8::10']);
  });

  test('HTTPS hints at the queried name are learned (documented decision)', async () => {
    const h = harness();
    h.upstream = () =>
      reply('api.example.com', 'UNKNOWN_65', [
        HTTPS('api.example.com', svcbRdata(1, '.', [ipv4Hint('198.51.100.60')])),
      ]);
    await h.ask(WEB, query('api.example.com', 'UNKNOWN_65'));
    assert.ok(h.datapath.allows(WEB, '198.51.100.60', 'TCP', 443));
  });

  test('NXDOMAIN or SERVFAIL from the upstream is relayed; nothing learned', async () => {
    const h = harness();
    h.upstream = () => reply('api.example.com', 'A', [A('api.example.com', '198.51.100.10')], { rcode: 3 });
    assert.equal(rcodeOf(await h.ask(WEB, query('api.example.com'))), 3);
    assert.equal(h.store.size, 0);
  });
});

describe('TTL (DNS-18, DNS-19, TIME-*)', () => {
  test('DNS-18: TTL 0 becomes minTTL + grace, never a timeout of 0', async () => {
    const h = harness({ ttl: { minTtlSeconds: 30, maxTtlSeconds: 86_400, graceSeconds: 30 } });
    h.upstream = () => reply('api.example.com', 'A', [A('api.example.com', '198.51.100.10', 0)]);
    await h.ask(WEB, query('api.example.com'));
    const [e] = h.datapath.learned();
    assert.equal(e?.timeoutMs, 60_000);
  });

  test('DNS-19: TTL 2^31-1 is cut to maxTTL + grace', async () => {
    const h = harness({ ttl: { minTtlSeconds: 30, maxTtlSeconds: 86_400, graceSeconds: 30 } });
    h.upstream = () => reply('api.example.com', 'A', [A('api.example.com', '198.51.100.10', 2 ** 31 - 1)]);
    await h.ask(WEB, query('api.example.com'));
    assert.equal(h.datapath.learned()[0]?.timeoutMs, 86_430_000);
  });

  test('TIME-05: after expiry the IP is gone; a new answer is needed', async () => {
    const h = harness({ ttl: { minTtlSeconds: 30, maxTtlSeconds: 3600, graceSeconds: 10 } });
    h.upstream = () => reply('api.example.com', 'A', [A('api.example.com', '198.51.100.10', 60)]);
    await h.ask(WEB, query('api.example.com'));
    h.clock.advance(70_001);
    assert.deepEqual(h.store.lookup(WEB, 'api.example.com', h.clock.now()), []);
    assert.ok(!h.datapath.allows(WEB, '198.51.100.10', 'TCP', 443));
    await h.ask(WEB, query('api.example.com'));
    assert.ok(h.datapath.allows(WEB, '198.51.100.10', 'TCP', 443));
  });

  test('refresh only extends: a shorter TTL later never shortens the element', async () => {
    const h = harness({ ttl: { minTtlSeconds: 1, maxTtlSeconds: 3600, graceSeconds: 10 } });
    let ttl = 600;
    h.upstream = () => reply('api.example.com', 'A', [A('api.example.com', '198.51.100.10', ttl)]);
    await h.ask(WEB, query('api.example.com'));
    const learnCalls = h.datapath.calls.filter((c) => c.op === 'learn').length;
    ttl = 5;
    await h.ask(WEB, query('api.example.com'));
    assert.equal(h.datapath.calls.filter((c) => c.op === 'learn').length, learnCalls, 'no datapath update');
    assert.equal(h.datapath.learned()[0]?.timeoutMs, 610_000);
    h.clock.advance(300_000);
    ttl = 600;
    await h.ask(WEB, query('api.example.com'));
    assert.equal(h.datapath.learned()[0]?.timeoutMs, 610_000, 'refreshed to a full lifetime again');
  });
});

describe('hold and commit (TIME-01, TIME-02, REL-07)', () => {
  test('TIME-01: the reply is released only after the datapath committed', async () => {
    const h = harness({ settings: { holdTimeoutMs: 5000 } });
    h.datapath.learnDelayMs = 30;
    h.upstream = () => reply('api.example.com', 'A', [A('api.example.com', '198.51.100.10')]);
    const r = await h.ask(WEB, query('api.example.com'));
    assert.ok(r);
    // By the time the reply exists the recording datapath already holds the element.
    assert.ok(h.datapath.allows(WEB, '198.51.100.10', 'TCP', 443));
    assert.equal(h.lines.at(-1)!['hold'], 'committed');
  });

  test('TIME-02: a commit slower than the bound -> released anyway, counted and logged', async () => {
    const h = harness({ settings: { holdTimeoutMs: 10 } });
    h.datapath.learnDelayMs = 200;
    h.upstream = () => reply('api.example.com', 'A', [A('api.example.com', '198.51.100.10')]);
    const r = await h.ask(WEB, query('api.example.com'));
    assert.equal(rcodeOf(r), 0);
    assert.equal(h.lines.at(-1)!['hold'], 'timeout');
    assert.equal(await h.metric('namegate_dns_hold_timeouts_total'), 1);
  });

  test('REL-07: a commit failure withholds the answer (SERVFAIL) and the store forgets', async () => {
    const h = harness();
    h.datapath.failLearn = 'set full';
    h.upstream = () => reply('api.example.com', 'A', [A('api.example.com', '198.51.100.10')]);
    const r = await h.ask(WEB, query('api.example.com', 'A', { edns: 1232 }));
    assert.equal(rcodeOf(r), 2);
    assert.equal(decode(r).answers?.length, 0, 'no address reaches the client');
    assert.equal(h.store.size, 0);
    assert.equal(h.lines.at(-1)!['reason'], 'commit_failed');
    assert.equal(await h.metric('namegate_dns_commit_failures_total'), 1);
    h.datapath.failLearn = null;
    assert.equal(rcodeOf(await h.ask(WEB, query('api.example.com'))), 0, 'the next answer learns again');
    assert.ok(h.datapath.allows(WEB, '198.51.100.10', 'TCP', 443));
  });

  test('a commit that fails after the hold released the answer still makes the store forget', async () => {
    const h = harness({ settings: { holdTimeoutMs: 5 } });
    h.datapath.learnDelayMs = 40;
    h.datapath.failLearn = 'late failure';
    h.upstream = () => reply('api.example.com', 'A', [A('api.example.com', '198.51.100.10')]);
    assert.equal(rcodeOf(await h.ask(WEB, query('api.example.com'))), 0);
    assert.equal(h.store.size, 1);
    // The late failure comes when the slow commit ends: wait for the store to act on it (the
    // bound only turns a store that never forgets into a failure instead of a hang).
    const held = () => h.store.size;
    for (let i = 0; i < 6000 && held() !== 0; i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(h.store.size, 0);
  });

  test('an answer for an address whose commit is still in flight waits for that commit', async () => {
    const h = harness({ settings: { holdTimeoutMs: 5000 } });
    h.datapath.learnDelayMs = 40;
    h.upstream = () => reply('api.example.com', 'A', [A('api.example.com', '198.51.100.10')]);
    const order: string[] = [];
    const first = h.ask(WEB, query('api.example.com')).then(() => order.push('first'));
    // Let the first answer reach the batcher, then ask again: the store has it already.
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    const second = h.ask(WEB, query('api.example.com')).then(() => {
      order.push('second');
      assert.ok(h.datapath.allows(WEB, '198.51.100.10', 'TCP', 443), 'committed before release');
    });
    await Promise.all([first, second]);
    assert.equal(h.datapath.calls.filter((c) => c.op === 'learn').length, 1, 'one commit for both');
  });

  test('answers arriving together share one datapath batch', async () => {
    const h = harness();
    h.upstream = (u) => reply(u.question.name, 'A', [A(u.question.name, `198.51.100.${u.query[1]! % 200}`)]);
    await Promise.all(
      ['api.example.com', 'a.cdn.example.net', 'b.cdn.example.net'].map((n) => h.ask(WEB, query(n))),
    );
    assert.equal(h.datapath.calls.filter((c) => c.op === 'learn').length, 1);
  });
});

describe('upstream and reply failures (REL-08, DNS-13, DNS-14, DNS-03, DNS-04)', () => {
  test('REL-08: upstream timeout -> SERVFAIL with EDE 22', async () => {
    const h = harness();
    h.upstream = () => {
      throw new UpstreamError('upstream_timeout', 'no answer');
    };
    const r = await h.ask(WEB, query('api.example.com', 'A', { edns: 1232 }));
    assert.equal(rcodeOf(r), 2);
    assert.equal(edeOf(r)?.[0], 22);
    assert.equal(h.lines.at(-1)!['reason'], 'upstream_timeout');
  });

  test('DNS-13: a CNAME loop in the reply -> SERVFAIL, nothing learned', async () => {
    const h = harness();
    h.upstream = () =>
      reply('api.example.com', 'A', [
        CNAME('api.example.com', 'x.cdn.example.net'),
        CNAME('x.cdn.example.net', 'api.example.com'),
        A('x.cdn.example.net', '198.51.100.1'),
      ]);
    assert.equal(rcodeOf(await h.ask(WEB, query('api.example.com'))), 2);
    assert.equal(h.lines.at(-1)!['reason'], 'cname_loop');
    assert.equal(h.store.size, 0);
  });

  test('DNS-14: a compression loop in the reply -> SERVFAIL, nothing learned, no hang', async () => {
    const h = harness();
    h.upstream = () => {
      const good = reply('api.example.com', 'A', [A('api.example.com', '198.51.100.1')]);
      const bad = Buffer.from(good);
      const answerAt = 12 + 17 + 4; // header + "api.example.com" + type/class
      bad[answerAt] = 0xc0;
      bad[answerAt + 1] = answerAt; // pointer to itself
      return bad;
    };
    assert.equal(rcodeOf(await h.ask(WEB, query('api.example.com'))), 2);
    assert.equal(h.lines.at(-1)!['reason'], 'malformed_reply');
    assert.equal(h.store.size, 0);
  });

  test('DNS-03: a TC=1 reply (TCP retry failed upstream) is relayed; nothing learned', async () => {
    const h = harness();
    h.upstream = () => reply('api.example.com', 'A', [A('api.example.com', '198.51.100.1')], { tc: true });
    const r = await h.ask(WEB, query('api.example.com'));
    assert.ok(decode(r).flag_tc);
    assert.equal(h.store.size, 0);
  });

  test('DNS-04: a reply larger than the client accepts over UDP -> TC=1 and no records; over TCP in full', async () => {
    const h = harness();
    const many: ReturnType<typeof A>[] = [];
    for (let i = 0; i < 40; i++) many.push(A('api.example.com', `198.51.100.${i + 1}`));
    h.upstream = () => reply('api.example.com', 'A', many);
    const small = await h.ask(WEB, query('api.example.com'));
    const p = decode(small);
    assert.ok(p.flag_tc);
    assert.equal(p.answers?.length, 0);
    assert.ok(small!.length <= 512);
    assert.equal(h.store.size, 0, 'nothing learned from an answer the client did not get');
    const big = await h.ask(WEB, query('api.example.com', 'A', { edns: 4096 }));
    assert.equal(decode(big).answers?.length, 40);
    const tcp = await h.ask(WEB, query('api.example.com'), 'tcp');
    assert.equal(decode(tcp).answers?.length, 40);
    assert.equal(h.upstreamCalls.at(-1)!.tcp, true, 'a TCP client is forwarded over TCP');
    assert.equal(h.store.lookup(WEB, 'api.example.com', h.clock.now()).length, 40);
  });

  test('an unexpected exception gives SERVFAIL, never the upstream answer, and the process survives (NODE-05)', async () => {
    const h = harness();
    h.upstream = () => reply('api.example.com', 'A', [A('api.example.com', '198.51.100.1')]);
    h.policies = new Proxy(h.policies, {
      get(target, prop) {
        if (prop === 'selection') throw new Error('boom');
        return Reflect.get(target, prop);
      },
    });
    const r = await h.ask(WEB, query('api.example.com'));
    assert.equal(rcodeOf(r), 2);
    assert.equal(await h.metric('namegate_dns_queries_total', { verdict: 'error', reason: 'internal' }), 1);
  });
});

describe('limits (DNS-08, DNS-15, DNS-25)', () => {
  test('DNS-25: per-source rate limit drops one source, not the others', async () => {
    const h = harness({ rate: [1, 5] });
    h.upstream = (u) => reply(u.question.name, 'A', []);
    const results = [];
    for (let i = 0; i < 10; i++) results.push(await h.ask(WEB, query('api.example.com')));
    assert.equal(results.filter((r) => r === null).length, 5);
    assert.notEqual(await h.ask(WEB2, query('api.example.com')), null, 'another source is served');
    assert.equal(await h.metric('namegate_dns_drops_total', { reason: 'rate_limited' }), 5);
    const dropLines = h.lines.filter((l) => l['verdict'] === 'drop');
    assert.equal(dropLines.length, 1, 'drops are summarized, not one line each');
  });

  test('pending limit per source -> SERVFAIL for the excess, others unaffected', async () => {
    const h = harness({ pending: [100, 2] });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    h.upstream = async (u) => {
      await gate;
      return reply(u.question.name, 'A', []);
    };
    const inflight = [h.ask(WEB, query('api.example.com')), h.ask(WEB, query('api.example.com'))];
    const third = await h.ask(WEB, query('api.example.com'));
    assert.equal(rcodeOf(third), 2);
    assert.equal(h.lines.at(-1)!['reason'], 'pending_limit');
    const other = h.ask(WEB2, query('api.example.com'));
    release();
    await Promise.all([...inflight, other]);
    assert.equal(rcodeOf(await other), 0);
  });

  test('DNS-15: hundreds of addresses -> at most maxIpsPerName learned; thousands -> SERVFAIL; no crash', async () => {
    const h = harness({ limits: { maxIpsPerName: 16, maxIpsPerSource: 100, maxEntries: 1000 } });
    const answers = (n: number) => {
      const out = [];
      for (let i = 0; i < n; i++) out.push(A('api.example.com', `198.${51 + (i >> 8)}.100.${i & 255}`));
      return out;
    };
    h.upstream = () => reply('api.example.com', 'A', answers(900));
    assert.equal(rcodeOf(await h.ask(WEB, query('api.example.com'), 'tcp')), 0);
    assert.equal(h.store.lookup(WEB, 'api.example.com', h.clock.now()).length, 16);
    assert.equal(await h.metric('namegate_dns_not_learned_total', { reason: 'cap' }), 900 - 16);
    h.upstream = () => reply('api.example.com', 'A', answers(3000));
    assert.equal(rcodeOf(await h.ask(WEB, query('api.example.com'), 'tcp')), 2);
    assert.equal(h.lines.at(-1)!['reason'], 'too_many_answers');
  });

  test('TIME-06: churn of new IPs is capped per name; the oldest not in use goes, in-use stays', async () => {
    const inUse = new Set(['198.51.100.1']);
    const h = harness({
      limits: { maxIpsPerName: 4, maxIpsPerSource: 100, maxEntries: 1000 },
      inUse: (_s, ip) => inUse.has(ip),
    });
    let n = 0;
    h.upstream = () => reply('api.example.com', 'A', [A('api.example.com', `198.51.100.${++n}`)]);
    for (let i = 0; i < 10; i++) {
      await h.ask(WEB, query('api.example.com'));
      h.clock.advance(1000);
    }
    const held = h.store.lookup(WEB, 'api.example.com', h.clock.now()).sort();
    assert.equal(held.length, 4);
    assert.ok(held.includes('198.51.100.1'), 'in use: never evicted');
    assert.deepEqual(held, ['198.51.100.1', '198.51.100.10', '198.51.100.8', '198.51.100.9']);
    const forgotten = h.datapath.calls
      .filter((c) => c.op === 'forget')
      .flatMap((c) => c.elements.map((e) => e.destination));
    assert.ok(forgotten.includes('198.51.100.2'), 'evicted elements leave the datapath');
    assert.ok(!forgotten.includes('198.51.100.1'));
  });
});

describe('policy hot swap', () => {
  test('the provider is read per query', async () => {
    const h = harness();
    h.upstream = (u) => reply(u.question.name, 'A', [A(u.question.name, '198.51.100.1')]);
    assert.equal(rcodeOf(await h.ask(WEB, query('new.example.org'))), 5);
    const { CompiledPolicies } = await import('../../../src/policy/compile.ts');
    const { policy } = await import('./helpers.ts');
    h.policies = new CompiledPolicies([
      policy(
        {
          podSelector: { matchLabels: { app: 'web' } },
          egress: [{ toFQDNs: [{ name: 'new.example.org' }] }],
        },
        'n',
        'EgressPolicy',
        'shop',
      ),
    ]);
    assert.equal(rcodeOf(await h.ask(WEB, query('new.example.org'))), 0);
  });
});

test('dns-packet can decode every reply the pipeline produces for a sample of inputs', async () => {
  const h = harness();
  h.upstream = (u) => reply(u.question.name, 'A', [A(u.question.name, '198.51.100.1')]);
  for (const [src, name, type] of [
    [WEB, 'api.example.com', 'A'],
    [WEB, 'evil.example.org', 'A'],
    [FREE, 'x.example', 'TXT'],
    [WEB, 'x.example', 'ANY'],
  ] as const) {
    const r = await h.ask(src, query(name, type, { edns: 1232 }));
    assert.doesNotThrow(() => dnsPacket.decode(r!));
  }
});
