/** Each explanation of a kernel drop, from the history of answers and what policy grants. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classifyAddress } from '../../../src/core/ip.ts';
import { DropReason, type ExplainContext, explainDrop, type NameGrant } from '../../../src/flows/explain.ts';
import { AddressHistory } from '../../../src/flows/history.ts';

const T0 = Date.parse('2026-12-07T10:00:00.000Z');
const POD = '10.10.3.2';
const POD6 = 'fd00:10:3::2';
const OTHER = '10.10.2.2';

function context(history: AddressHistory, grants: Record<string, NameGrant> = {}): ExplainContext {
  return {
    history,
    addressClass: (ip) => classifyAddress(ip),
    grant: (name) => grants[name] ?? { result: 'name', ports: '', policy: null, rule: null },
  };
}

const drop = (dst: string, dport = 443, now = T0 + 1000) => ({
  sources: [POD, POD6],
  dst,
  proto: 'tcp',
  dport,
  now,
});

test('never resolved: a DNS bypass or a hard-coded address', () => {
  const r = explainDrop(drop('203.0.113.66'), context(new AddressHistory()));
  assert.equal(r.reason, DropReason.NeverResolved);
  assert.equal(r.name, null);
});

test('expired: the name is kept, with when it was learned and when it expired', () => {
  const h = new AddressHistory();
  h.learn(POD, 'short.example.com', ['203.0.113.100'], T0, T0 + 35_000);
  const r = explainDrop(drop('203.0.113.100', 443, T0 + 600_000), context(h));
  assert.equal(r.reason, DropReason.Expired);
  assert.equal(r.name, 'short.example.com');
  assert.equal(r.detail.learnedAt, '2026-12-07T10:00:00.000Z');
  assert.equal(r.detail.expiredAt, '2026-12-07T10:00:35.000Z');
});

test('learned by a sibling address of the same pod counts as its own', () => {
  const h = new AddressHistory();
  h.learn(POD6, 'api.example.com', ['203.0.113.5'], T0, T0 + 60_000);
  const r = explainDrop(
    drop('203.0.113.5', 80),
    context(h, { 'api.example.com': { result: 'port', ports: 'TCP/443', policy: 'web/audit', rule: 0 } }),
  );
  assert.equal(r.reason, DropReason.OtherPort);
  assert.equal(r.detail.ports, 'TCP/443');
  assert.equal(r.policy, 'web/audit');
});

test('live and allowed but dropped: not committed; live but no longer allowed: revoked', () => {
  const h = new AddressHistory();
  h.learn(POD, 'a.example.com', ['203.0.113.7'], T0, T0 + 60_000);
  h.learn(POD, 'b.example.com', ['203.0.113.8'], T0, T0 + 60_000);
  const ctx = context(h, { 'a.example.com': { result: 'allow', ports: 'TCP/443', policy: 'p', rule: 1 } });
  assert.equal(explainDrop(drop('203.0.113.7'), ctx).reason, DropReason.NotCommitted);
  assert.equal(explainDrop(drop('203.0.113.8'), ctx).reason, DropReason.NameRevoked);
});

test('denied range: private destinations say their class', () => {
  const r = explainDrop(drop('10.0.0.5'), context(new AddressHistory()));
  assert.equal(r.reason, DropReason.DeniedRange);
  assert.equal(r.detail.addressClass, 'private');
});

test('learned by another pod only: the name and who learned it', () => {
  const h = new AddressHistory();
  h.learn(OTHER, 'github.com', ['203.0.113.20'], T0, T0 + 60_000);
  const r = explainDrop(drop('203.0.113.20'), context(h));
  assert.equal(r.reason, DropReason.OtherSource);
  assert.equal(r.name, 'github.com');
  assert.deepEqual(r.detail.learnedBy, [OTHER]);
});

test('history is bounded: the oldest pairs go first, refreshes move a pair to the young end', () => {
  const h = new AddressHistory(3);
  h.learn('s1', 'a.com', ['192.0.2.1'], T0, T0 + 1);
  h.learn('s2', 'b.com', ['192.0.2.2'], T0, T0 + 1);
  h.learn('s3', 'c.com', ['192.0.2.3'], T0, T0 + 1);
  h.learn('s1', 'a.com', ['192.0.2.1'], T0 + 5, T0 + 10);
  h.learn('s4', 'd.com', ['192.0.2.4'], T0, T0 + 1);
  assert.equal(h.size, 3);
  assert.equal(h.lookup('s2', '192.0.2.2'), undefined);
  assert.equal(h.lookup('s1', '192.0.2.1')?.expiresAt, T0 + 10);
  assert.deepEqual(h.learners('192.0.2.2'), []);
  for (let i = 0; i < 10; i++) h.learn(`s${i}`, 'x.com', ['192.0.2.9'], T0 + i, T0 + i);
  assert.ok(h.learners('192.0.2.9').length <= 4);
  assert.equal(h.learners('192.0.2.9')[0]?.source, 's9');
});

test("an answer an Audit source got without learning it: the policy's own reason, the name kept", () => {
  const h = new AddressHistory();
  h.learn(POD, 'pypi.org', ['203.0.113.50'], T0, T0 + 60_000, false);
  const r = explainDrop(drop('203.0.113.50'), context(h));
  assert.equal(r.reason, DropReason.NoMatchingRule);
  assert.equal(r.name, 'pypi.org');
  const p = explainDrop(
    drop('203.0.113.50', 80),
    context(h, { 'pypi.org': { result: 'port', ports: 'TCP/443', policy: 'web/audit', rule: 0 } }),
  );
  assert.equal(p.reason, DropReason.PortNotAllowed);
});
