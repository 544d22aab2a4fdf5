/** Flow filters and output formats. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { emptyEvent, type FlowEvent } from '../../../src/flows/event.ts';
import { compileFilter, filterFromQuery, filterToQuery, isEmptyFilter } from '../../../src/flows/filter.ts';
import { compactLine, table, tableRow } from '../../../src/flows/format.ts';

function ev(over: Partial<FlowEvent>): FlowEvent {
  return { ...emptyEvent('2026-12-07T10:00:00.000Z', 'kernel', '10.10.3.2'), ...over };
}

const web = ev({
  namespace: 'web',
  pod: 'web-7d4b9-abcde',
  labels: { app: 'web', tier: 'fe' },
  verdict: 'audit',
  dst: '203.0.113.66',
  dport: 443,
  proto: 'tcp',
  name: 'evil.example.com',
  reason: 'never_resolved',
});
const ci = ev({
  type: 'dns',
  namespace: 'ci',
  pod: 'ci-runner',
  labels: { role: 'runner' },
  verdict: 'allow',
  name: 'github.com',
  ips: ['203.0.113.20'],
  dport: 53,
  proto: 'udp',
  policy: 'ci/runners',
  rule: 0,
  reason: 'fqdn_rule',
});

test('each kind of filter; values of one kind are alternatives, kinds combine', () => {
  const match = (spec: Parameters<typeof compileFilter>[0]) =>
    [web, ci].filter(compileFilter(spec)).map((e) => e.pod);
  assert.deepEqual(match({}), ['web-7d4b9-abcde', 'ci-runner']);
  assert.deepEqual(match({ pod: ['web/web-'] }), ['web-7d4b9-abcde']);
  assert.deepEqual(match({ pod: ['ci/'] }), ['ci-runner']);
  assert.deepEqual(match({ namespace: ['ci', 'web'] }), ['web-7d4b9-abcde', 'ci-runner']);
  assert.deepEqual(match({ label: ['app=web,tier=fe'] }), ['web-7d4b9-abcde']);
  assert.deepEqual(match({ label: ['app!=web'] }), ['ci-runner']);
  assert.deepEqual(match({ label: ['role', 'tier=fe'] }), ['web-7d4b9-abcde', 'ci-runner']);
  assert.deepEqual(match({ label: ['!role'] }), ['web-7d4b9-abcde']);
  assert.deepEqual(match({ verdict: ['audit', 'drop'] }), ['web-7d4b9-abcde']);
  assert.deepEqual(match({ name: ['*.example.com'] }), ['web-7d4b9-abcde']);
  assert.deepEqual(match({ name: ['**.com'] }), ['web-7d4b9-abcde', 'ci-runner']);
  assert.deepEqual(match({ name: ['github.com'] }), ['ci-runner']);
  assert.deepEqual(match({ ip: ['203.0.113.0/27'] }), ['ci-runner']);
  assert.deepEqual(match({ ip: ['203.0.113.66'] }), ['web-7d4b9-abcde']);
  assert.deepEqual(match({ port: ['443'] }), ['web-7d4b9-abcde']);
  assert.deepEqual(match({ protocol: ['dns'] }), ['ci-runner']);
  assert.deepEqual(match({ type: ['kernel'] }), ['web-7d4b9-abcde']);
  assert.deepEqual(match({ namespace: ['ci'], verdict: ['audit'] }), []);
});

test('bad values are usage errors that name the flag', () => {
  const bad = (spec: Parameters<typeof compileFilter>[0], flag: string) =>
    assert.throws(
      () => compileFilter(spec),
      (e: Error & { code?: string }) => e.code === 'NG_USAGE_INVALID' && e.message.startsWith(`--${flag}:`),
    );
  bad({ verdict: ['maybe'] }, 'verdict');
  bad({ type: ['l7'] }, 'type');
  bad({ ip: ['10.0.0.1/8'] }, 'ip');
  bad({ port: ['70000'] }, 'port');
  bad({ name: ['a..b'] }, 'name');
  bad({ label: ['=x'] }, 'label');
  bad({ pod: Array(33).fill('a') }, 'pod');
});

test('query parameters round-trip', () => {
  const spec = { pod: ['web/'], verdict: ['deny', 'drop'], port: ['443'] };
  const q = filterToQuery(spec);
  assert.equal(q.toString(), 'pod=web%2F&verdict=deny&verdict=drop&port=443');
  assert.deepEqual(filterFromQuery(q), spec);
  assert.ok(isEmptyFilter(filterFromQuery(new URLSearchParams('follow=1'))));
});

test('compact and table output', () => {
  assert.equal(
    compactLine(web),
    '12-07 10:00:00.000 kernel web/web-7d4b9-abcde -> 203.0.113.66:443 (evil.example.com) tcp AUDIT never_resolved',
  );
  assert.equal(
    compactLine(ci),
    '12-07 10:00:00.000 dns ci/ci-runner -> github.com -> 203.0.113.20 dns/udp ALLOW fqdn_rule ci/runners[0]',
  );
  const t = table([web, ci]).split('\n');
  assert.match(t[0]!, /^TIME +TYPE +SOURCE +DESTINATION +PROTO +VERDICT +DECISION$/);
  assert.equal(t.length, 4);
  assert.ok(tableRow(web, false).includes('audit'));
});
