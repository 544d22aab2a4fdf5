import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ManualClock } from '../../../src/core/clock.ts';
import { literalLookup } from '../../../src/core/literal-lookup.ts';
import { RecordingDatapath } from '../../../src/datapath/recording.ts';
import { CommitBatcher, holdKey } from '../../../src/dns/commit.ts';
import { FlowLog } from '../../../src/dns/flow-log.ts';
import { PendingLimiter, RateLimiter } from '../../../src/dns/limits.ts';
import { inZone, route, unknownScopeFrom } from '../../../src/dns/route.ts';
import { makeIdentity } from '../../../src/identity/identity.ts';
import { CompiledPolicies } from '../../../src/policy/compile.ts';
import { POLICIES } from './helpers.ts';

describe('route (the policy stage, pure)', () => {
  const set = new CompiledPolicies(POLICIES());
  const web = makeIdentity('group:web', 'shop', { app: 'web' });
  const audit = makeIdentity('group:audit', 'lab', { app: 'audit' });
  const free = makeIdentity('group:free', 'free', {});
  const settings = {
    passThroughZones: ['cluster.local'],
    denyRcode: 5 as const,
    unknownSources: 'forward' as const,
  };
  const cases: Array<[string, ReturnType<typeof makeIdentity> | undefined, string, string, string, boolean]> =
    [
      ['allowed', web, 'api.example.com', 'allow', 'fqdn_rule', true],
      ['wildcard allowed', web, 'x.y.cdn.example.net', 'allow', 'fqdn_rule', true],
      ['denied', web, 'evil.example.org', 'deny', 'no_matching_rule', false],
      ['audit would deny', audit, 'evil.example.org', 'audit', 'no_matching_rule', false],
      ['audit allowed', audit, 'api.example.com', 'allow', 'fqdn_rule', true],
      ['ungoverned', free, 'evil.example.org', 'forward', 'ungoverned', false],
      ['unknown', undefined, 'evil.example.org', 'forward', 'unknown_source', false],
      ['pass-through', web, 'kube-dns.kube-system.svc.cluster.local', 'forward', 'pass_through', false],
      ['pass-through zone apex', web, 'cluster.local', 'forward', 'pass_through', false],
      ['not a pass-through look-alike', web, 'evilcluster.local', 'deny', 'no_matching_rule', false],
      ['numeric last label (IP-like)', web, '198.51.100.1', 'deny', 'name_invalid', false],
      ['escaped byte', web, 'a\\046b.example.com', 'deny', 'name_invalid', false],
      ['root', web, '', 'deny', 'name_invalid', false],
    ];
  for (const [name, identity, qname, verdict, reason, learn] of cases) {
    test(name, () => {
      const r = route(settings, set, identity, qname);
      assert.equal(r.verdict, verdict);
      assert.equal(r.reason, reason);
      assert.equal(r.kind === 'forward' && r.learn, learn);
    });
  }
  test('unknown sources inside the source CIDRs are refused, outside forwarded (K8S-04)', () => {
    const scoped = { ...settings, ...unknownScopeFrom(['10.10.0.0/16', 'fd00:10::/32']) };
    for (const src of ['10.10.2.99', 'fd00:10:2::99']) {
      const r = route(scoped, set, undefined, 'api.example.com', src);
      assert.equal(r.kind, 'refuse', src);
      assert.equal(r.reason, 'unknown_source');
      assert.equal(r.kind === 'refuse' && r.rcode, 5);
    }
    for (const src of ['192.0.2.1', '2001:db8::1', 'not-an-ip', undefined]) {
      const r = route(scoped, set, undefined, 'api.example.com', src);
      assert.equal(r.kind, 'forward', String(src));
      assert.equal(r.reason, 'unknown_source');
    }
    // A known source is decided by policy, in the scope or not.
    assert.equal(route(scoped, set, free, 'evil.example.org', '10.10.2.2').reason, 'ungoverned');
    assert.equal(route(scoped, set, web, 'api.example.com', '10.10.1.2').verdict, 'allow');
    // unknownSources refuse refuses everywhere; no scope changes nothing.
    const refuse = { ...settings, unknownSources: 'refuse' as const };
    assert.equal(route(refuse, set, undefined, 'x.example', '192.0.2.1').kind, 'refuse');
    assert.deepEqual(unknownScopeFrom([]), {});
  });
  test('inZone', () => {
    assert.ok(inZone('a.cluster.local', ['cluster.local']));
    assert.ok(!inZone('acluster.local', ['cluster.local']));
    assert.ok(!inZone('local', ['cluster.local']));
  });
});

describe('CommitBatcher', () => {
  const el = (ip: string) => ({
    source: '10.0.0.1',
    destination: ip,
    protocol: 'TCP' as const,
    portFrom: 443,
    portTo: 443,
    timeoutMs: 1000,
  });

  test('elements submitted together go in one learn(); later ones in the next batch', async () => {
    const dp = new RecordingDatapath(new ManualClock());
    dp.learnDelayMs = 20;
    const b = new CommitBatcher(dp, () => 0);
    const p1 = b.submit([el('192.0.2.1')], [holdKey('10.0.0.1', '192.0.2.1')]);
    const p2 = b.submit([el('192.0.2.2')], [holdKey('10.0.0.1', '192.0.2.2')]);
    assert.equal(p1, p2);
    await new Promise((r) => setImmediate(r));
    const p3 = b.submit([el('192.0.2.3')], [holdKey('10.0.0.1', '192.0.2.3')]);
    assert.notEqual(p3, p1);
    assert.equal(b.pendingFor(holdKey('10.0.0.1', '192.0.2.1')), p1);
    await Promise.all([p1, p3]);
    assert.deepEqual(
      dp.calls.map((c) => (c.op === 'learn' ? c.elements.length : -1)),
      [2, 1],
    );
    assert.equal(b.pendingKeys, 0);
  });

  test('a failing learn rejects every holder; later batches still run', async () => {
    const dp = new RecordingDatapath(new ManualClock());
    dp.failLearn = 'full';
    const b = new CommitBatcher(dp, () => 0);
    await assert.rejects(b.submit([el('192.0.2.1')], ['k']), { code: 'NG_DATAPATH_COMMIT' });
    dp.failLearn = null;
    await b.submit([el('192.0.2.1')], ['k']);
  });
});

describe('limits', () => {
  test('token bucket per source', () => {
    const r = new RateLimiter(10, 3);
    assert.deepEqual(
      [1, 2, 3, 4].map(() => r.allow('a', 0)),
      [true, true, true, false],
    );
    assert.ok(r.allow('b', 0), 'other sources have their own bucket');
    assert.ok(!r.allow('a', 50));
    assert.ok(r.allow('a', 100), 'one token after 100 ms at 10/s');
  });

  test('tracked sources are bounded', () => {
    const r = new RateLimiter(10, 3, 100);
    for (let i = 0; i < 1000; i++) r.allow(`10.0.${i >> 8}.${i & 255}`, 0);
    assert.ok(r.tracked <= 100);
  });

  test('pending per source and in total', () => {
    const p = new PendingLimiter(3, 2);
    assert.ok(p.acquire('a'));
    assert.ok(p.acquire('a'));
    assert.ok(!p.acquire('a'));
    assert.ok(p.acquire('b'));
    assert.ok(!p.acquire('c'), 'total');
    p.release('a');
    assert.ok(p.acquire('c'));
    p.release('a');
    p.release('b');
    p.release('c');
    p.release('zzz');
    assert.equal(p.total, 0);
    assert.equal(p.sources, 0);
  });
});

describe('FlowLog', () => {
  const rec = {
    src: '10.0.1.5',
    identity: 'group:web',
    qname: 'api.example.com',
    qtype: 1,
    verdict: 'allow' as const,
    reason: 'fqdn_rule',
    policy: 'shop/web',
    rule: 0,
    ips: ['198.51.100.1', '198.51.100.2'],
    ttl: 300,
    rcode: 0,
    ms: 0.12345,
    transport: 'udp' as const,
  };

  test('one JSON line per query with the stable field names', () => {
    const writes: string[] = [];
    new FlowLog({ write: (l) => writes.push(l) }, 'all', () => Date.UTC(2026, 0, 1)).record(rec);
    assert.equal(writes.length, 1);
    assert.ok(writes[0]!.endsWith('\n'));
    assert.deepEqual(JSON.parse(writes[0]!), {
      level: 'info',
      time: '2026-01-01T00:00:00.000Z',
      component: 'dns',
      event: 'dns',
      src: '10.0.1.5',
      identity: 'group:web',
      qname: 'api.example.com',
      qtype: 'A',
      verdict: 'allow',
      reason: 'fqdn_rule',
      policy: 'shop/web',
      rule: 0,
      ips: ['198.51.100.1', '198.51.100.2'],
      ttl: 300,
      rcode: 'NOERROR',
      ms: 0.123,
      transport: 'udp',
      msg: 'dns',
    });
  });

  test('names with quotes or escapes stay valid JSON', () => {
    const writes: string[] = [];
    new FlowLog({ write: (l) => writes.push(l) }, 'all').record({
      ...rec,
      qname: 'a\\034"b.example',
      policy: null,
      identity: null,
    });
    assert.equal(JSON.parse(writes[0]!).qname, 'a\\034"b.example');
  });

  test('mode denied keeps only deny/audit/refuse lines; none writes nothing', () => {
    const writes: string[] = [];
    const denied = new FlowLog({ write: (l) => writes.push(l) }, 'denied');
    denied.record(rec);
    denied.record({ ...rec, verdict: 'deny' });
    assert.equal(writes.length, 1);
    new FlowLog({ write: (l) => writes.push(l) }, 'none').record({ ...rec, verdict: 'deny' });
    assert.equal(writes.length, 1);
  });

  test('buffered: lines are written in chunks, and on flush', () => {
    const writes: string[] = [];
    const log = new FlowLog({ write: (l) => writes.push(l) }, 'all', Date.now, 1000);
    for (let i = 0; i < 10; i++) log.record(rec);
    assert.ok(writes.length >= 1 && writes.length < 10, `writes ${writes.length}`);
    log.flush();
    assert.equal(
      writes
        .join('')
        .split('\n')
        .filter((l) => l !== '').length,
      10,
    );
    log.flush();
    assert.equal(
      writes
        .join('')
        .split('\n')
        .filter((l) => l !== '').length,
      10,
    );
  });
});

test('DNS-06: the DoH canary gets NXDOMAIN for enforced sources only', () => {
  const set = new CompiledPolicies(POLICIES());
  const settings = { passThroughZones: [], denyRcode: 5 as const, unknownSources: 'forward' as const };
  const web = route(
    settings,
    set,
    makeIdentity('group:web', 'shop', { app: 'web' }),
    'use-application-dns.net',
  );
  assert.equal(web.kind === 'refuse' && web.rcode, 3);
  assert.equal(web.reason, 'doh_canary');
  const audit = route(
    settings,
    set,
    makeIdentity('group:audit', 'lab', { app: 'audit' }),
    'use-application-dns.net',
  );
  assert.equal(audit.verdict, 'audit');
  const free = route(settings, set, makeIdentity('group:free', 'free', {}), 'use-application-dns.net');
  assert.equal(free.verdict, 'forward');
});

test('NODE-07: sockets resolve nothing; literals come back unchanged', () => {
  const seen: Array<[string, number]> = [];
  literalLookup('192.0.2.1', 4, (_e, a, f) => seen.push([a, f]));
  literalLookup('2001:db8::1', 6, (_e, a, f) => seen.push([a, f]));
  assert.deepEqual(seen, [
    ['192.0.2.1', 4],
    ['2001:db8::1', 6],
  ]);
});
