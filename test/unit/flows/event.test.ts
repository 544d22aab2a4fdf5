/** Flow log lines of every part become one FlowEvent shape; garbage never throws. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { FlowLog } from '../../../src/dns/flow-log.ts';
import { emptyEvent, eventLine, parseFlowLine, toFlowEvent, withSource } from '../../../src/flows/event.ts';
import { SourceBook } from '../../../src/flows/sources.ts';
import { ProxyFlowLog } from '../../../src/proxy/flow-log.ts';

const T = Date.parse('2026-12-07T10:00:00.000Z');

test('a DNS line as written by the proxy', () => {
  const lines: string[] = [];
  const log = new FlowLog({ write: (l) => lines.push(l) }, 'all', () => T);
  log.record({
    src: '10.10.2.2',
    identity: 'pod:ci/ci-runner',
    qname: 'github.com',
    qtype: 1,
    verdict: 'allow',
    reason: 'fqdn_rule',
    policy: 'ci/runners',
    rule: 0,
    ips: ['203.0.113.20'],
    ttl: 300,
    rcode: 0,
    ms: 0.4,
    transport: 'udp',
  });
  const e = parseFlowLine(lines[0]!.trim());
  assert.ok(e);
  assert.equal(e.type, 'dns');
  assert.equal(e.time, '2026-12-07T10:00:00.000Z');
  assert.equal(e.verdict, 'allow');
  assert.equal(e.name, 'github.com');
  assert.equal(e.qtype, 'A');
  assert.equal(e.rcode, 'NOERROR');
  assert.equal(e.namespace, 'ci');
  assert.equal(e.pod, 'ci-runner');
  assert.equal(e.policy, 'ci/runners');
  assert.equal(e.rule, 0);
  assert.deepEqual(e.ips, ['203.0.113.20']);
  assert.equal(e.dport, 53);
  assert.equal(e.proto, 'udp');
});

test('DNS verdicts map to flow verdicts; a rate-limit summary counts what it stands for', () => {
  const lines: string[] = [];
  const log = new FlowLog({ write: (l) => lines.push(l) }, 'all', () => T);
  const base = {
    src: '10.0.0.1',
    identity: null,
    qname: 'x.com',
    qtype: 1,
    policy: null,
    rule: null,
    ips: [],
    ttl: null,
    rcode: 5,
    ms: 0,
    transport: 'udp' as const,
  };
  log.record({ ...base, verdict: 'refuse', reason: 'unknown_source' });
  log.record({ ...base, verdict: 'forward', reason: 'pass_through' });
  log.dropped('10.0.0.1', 'rate_limited', 1000, 'udp');
  log.dropped('10.0.0.1', 'rate_limited', 1100, 'udp');
  log.dropped('10.0.0.1', 'rate_limited', 2100, 'udp');
  const events = lines.join('').trim().split('\n').map(parseFlowLine);
  assert.deepEqual(
    events.map((e) => e?.verdict),
    ['deny', 'allow', 'drop', 'drop'],
  );
  assert.equal(events[3]?.count, 2);
});

test('proxy decision lines; close lines are not decisions', () => {
  const lines: string[] = [];
  const log = new ProxyFlowLog({ write: (l) => lines.push(l) }, 'all', 'sni-proxy', () => T);
  log.decision({
    conn: 1,
    src: '10.10.1.2',
    identity: 'pod:payments/payments-api',
    proto: 'tls',
    name: 'api.stripe.com',
    dst: '203.0.113.10',
    dport: 443,
    verdict: 'deny',
    reason: 'sni_ip_mismatch',
    policy: 'payments/stripe',
    rule: 0,
    ms: 1,
  });
  log.close({
    conn: 1,
    src: '10.10.1.2',
    dst: '203.0.113.10',
    dport: 443,
    verdict: 'deny',
    bytesUp: 0,
    bytesDown: 0,
    ms: 2,
  });
  const e = parseFlowLine(lines[0]!.trim());
  assert.equal(e?.type, 'proxy');
  assert.equal(e?.name, 'api.stripe.com');
  assert.equal(e?.l7, 'tls');
  assert.equal(e?.proto, 'tcp');
  assert.equal(e?.dst, '203.0.113.10');
  assert.equal(e?.reason, 'sni_ip_mismatch');
  assert.equal(parseFlowLine(lines[1]!.trim()), null);
});

test('a kernel line reads back as the event it was written from', () => {
  const e = {
    ...emptyEvent('2026-12-07T10:00:01.000Z', 'kernel', '10.10.3.2'),
    verdict: 'audit' as const,
    reason: 'expired',
    sport: 40000,
    dst: '203.0.113.100',
    dport: 443,
    proto: 'tcp',
    name: 'short.example.com',
    identity: 'pod:web/web',
    namespace: 'web',
    pod: 'web',
    labels: { app: 'web' },
    workload: { kind: 'Deployment', name: 'web' },
    detail: { learnedAt: '2026-12-07T09:59:00.000Z', expiredAt: '2026-12-07T09:59:35.000Z' },
  };
  const line = eventLine(e);
  assert.ok(line.endsWith('\n'));
  assert.equal(JSON.parse(line).event, 'kernel');
  assert.deepEqual(parseFlowLine(line.trim()), e);
});

test('withSource fills only what the line lacked', () => {
  const e = { ...emptyEvent('t', 'dns', '10.0.0.1'), identity: 'pod:a/b', namespace: 'a', pod: 'b' };
  const filled = withSource(e, {
    identity: 'pod:x/y',
    namespace: 'x',
    pod: 'y',
    labels: { app: 'b' },
    workload: null,
  });
  assert.equal(filled.namespace, 'a');
  assert.deepEqual(filled.labels, { app: 'b' });
});

test('property: any JSON value or text gives an event or null, never an exception; strings are clipped', () => {
  fc.assert(
    fc.property(fc.jsonValue(), (v) => {
      toFlowEvent(v);
      parseFlowLine(JSON.stringify(v));
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(fc.string(), (s) => void parseFlowLine(s)),
    { numRuns: 1000 },
  );
  const long = toFlowEvent({
    event: 'dns',
    time: 't',
    src: 'x',
    verdict: 'allow',
    qname: 'a'.repeat(10_000),
    ips: Array(1000).fill('1.2.3.4'),
  });
  assert.equal(long?.name?.length, 512);
  assert.equal(long?.ips.length, 64);
});

test('a source book enriches by identity (a source group holds prefixes, not addresses)', () => {
  const book = new SourceBook();
  book.set('10.10.0.0/16', {
    identity: 'group:ci',
    namespace: 'ci',
    pod: 'ci',
    labels: { role: 'runner' },
    workload: null,
  });
  const e = book.enrich({ ...emptyEvent('t', 'dns', '10.10.7.7'), identity: 'group:ci' });
  assert.equal(e.namespace, 'ci');
  assert.deepEqual(e.labels, { role: 'runner' });
  book.set('10.10.3.2', {
    identity: 'pod:web/web',
    namespace: 'web',
    pod: 'web',
    labels: {},
    workload: null,
  });
  assert.equal(book.enrich(emptyEvent('t', 'kernel', '10.10.3.2')).namespace, 'web');
  assert.equal(book.get('10.10.3.2')?.pod, 'web');
});
