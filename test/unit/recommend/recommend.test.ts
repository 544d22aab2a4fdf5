/**
 * The recommender: workloads from owners or labels, exact names and sibling wildcards (never on
 * a public suffix), ports seen, one-off and new names apart, and documents in each format that
 * their readers accept and that allow exactly what was observed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { canonicalName } from '../../../src/core/names.ts';
import { emptyEvent, type FlowEvent } from '../../../src/flows/event.ts';
import { makeIdentity } from '../../../src/identity/identity.ts';
import { CompiledPolicies } from '../../../src/policy/compile.ts';
import { decide } from '../../../src/policy/decide.ts';
import { isPublicSuffix } from '../../../src/policy/pattern.ts';
import { Recommender } from '../../../src/recommend/engine.ts';
import { generalize } from '../../../src/recommend/names.ts';
import { RECOMMEND_FORMATS, renderDocument, renderYaml } from '../../../src/recommend/render.ts';
import { validateRecommended } from '../../../src/recommend/validate.ts';
import { commonLabels, inferWorkload } from '../../../src/recommend/workload.ts';

const T0 = Date.parse('2026-12-07T10:00:00.000Z');

function pod(name: string, labels: Record<string, string>, ns = 'shop') {
  return { namespace: ns, pod: name, identity: `pod:${ns}/${name}`, labels };
}

function dns(
  who: ReturnType<typeof pod>,
  name: string,
  at: number,
  over: Partial<FlowEvent> = {},
): FlowEvent {
  return {
    ...emptyEvent(new Date(T0 + at).toISOString(), 'dns', '10.0.0.1'),
    ...who,
    verdict: 'audit',
    reason: 'no_matching_rule',
    name,
    rcode: 'NOERROR',
    ...over,
  };
}

function conn(who: ReturnType<typeof pod>, name: string, port: number, at: number, proto = 'tcp'): FlowEvent {
  return {
    ...emptyEvent(new Date(T0 + at).toISOString(), 'kernel', '10.0.0.1'),
    ...who,
    verdict: 'audit',
    reason: 'expired',
    name,
    dst: '203.0.113.1',
    dport: port,
    proto,
  };
}

const A = pod('checkout-7d4b9c8f6-x2x1z', { app: 'checkout', tier: 'web', 'pod-template-hash': '7d4b9c8f6' });
const B = pod('checkout-7d4b9c8f6-q9w8e', { app: 'checkout', tier: 'web', 'pod-template-hash': '7d4b9c8f6' });

test("workloads from the controllers' names and labels", () => {
  assert.deepEqual(inferWorkload('checkout-7d4b9c8f6-x2x1z', { 'pod-template-hash': '7d4b9c8f6' }), {
    kind: 'Deployment',
    name: 'checkout',
  });
  assert.deepEqual(
    inferWorkload('db-2', {
      'statefulset.kubernetes.io/pod-name': 'db-2',
      'controller-revision-hash': 'db-5f',
    }),
    { kind: 'StatefulSet', name: 'db' },
  );
  assert.deepEqual(
    inferWorkload('agent-8fj2k', { 'controller-revision-hash': 'x', 'pod-template-generation': '3' }),
    { kind: 'DaemonSet', name: 'agent' },
  );
  assert.deepEqual(inferWorkload('migrate-abcde', { 'batch.kubernetes.io/job-name': 'migrate' }), {
    kind: 'Job',
    name: 'migrate',
  });
  assert.deepEqual(inferWorkload('report-29012345-abcde', { 'job-name': 'report-29012345' }), {
    kind: 'CronJob',
    name: 'report',
  });
  assert.deepEqual(inferWorkload('debug', { run: 'debug' }), { kind: 'Pod', name: 'debug' });
  assert.deepEqual(commonLabels([A.labels, B.labels, { ...A.labels, extra: '1' }]), {
    app: 'checkout',
    tier: 'web',
  });
});

test('generalization: siblings become *. or **. as observed, never over a public suffix', () => {
  assert.deepEqual(
    generalize(['a.example.com', 'b.example.com'], 3).map((p) => p.text),
    ['a.example.com', 'b.example.com'],
  );
  assert.deepEqual(
    generalize(['a.example.com', 'b.example.com', 'c.example.com', 'example.com'], 3).map((p) => p.text),
    ['*.example.com', 'example.com'],
  );
  assert.deepEqual(
    generalize(['x.a.example.com', 'b.example.com', 'c.example.com'], 3).map((p) => p.text),
    ['**.example.com'],
  );
  assert.deepEqual(
    generalize(['b1.s3.amazonaws.com', 'b2.s3.amazonaws.com', 'b3.s3.amazonaws.com'], 3).map((p) => p.text),
    ['*.s3.amazonaws.com'],
  );
  assert.deepEqual(
    generalize(['a.co.uk', 'b.co.uk', 'c.co.uk'], 2).map((p) => p.text),
    ['a.co.uk', 'b.co.uk', 'c.co.uk'],
  );
  assert.deepEqual(
    generalize(['a.b.example.com', 'c.b.example.com', 'b.example.com'], 2).map((p) => p.text),
    ['*.b.example.com', 'b.example.com'],
  );
});

test('property: every pattern covers its names, and no wildcard stands on a public suffix', () => {
  const label = fc.stringMatching(/^[a-z][a-z0-9]{0,5}$/);
  const suffix = fc.constantFrom('com', 'co.uk', 'example.com', 'github.io', 's3.amazonaws.com', 'net');
  const name = fc
    .tuple(fc.array(label, { minLength: 1, maxLength: 3 }), suffix)
    .map(([ls, s]) => `${ls.join('.')}.${s}`);
  fc.assert(
    fc.property(fc.array(name, { maxLength: 30 }), fc.integer({ min: 0, max: 4 }), (names, siblings) => {
      const patterns = generalize(names, siblings);
      for (const n of new Set(names)) {
        assert.ok(
          patterns.some((p) => p.text === n || (p.names.includes(n) && p.kind !== 'exact')),
          `${n} is covered`,
        );
      }
      for (const p of patterns) {
        if (p.kind === 'exact') continue;
        const base = p.text.replace(/^\*+\./, '');
        assert.ok(!isPublicSuffix(base), `${p.text} is not over a public suffix`);
        for (const n of p.names) {
          assert.ok(n.endsWith(`.${base}`));
          if (p.kind === 'one-label') assert.equal(n.split('.').length, base.split('.').length + 1);
        }
      }
    }),
    { numRuns: 500 },
  );
});

function observed(): FlowEvent[] {
  const events: FlowEvent[] = [];
  for (const [i, who] of [A, B].entries()) {
    for (const n of [
      'api.stripe.com',
      'a.cdn.example.net',
      'b.cdn.example.net',
      'c.cdn.example.net',
      'metrics.example.org',
    ]) {
      events.push(dns(who, n, i * 1000));
      events.push(dns(who, n, 600_000 + i * 1000));
    }
    events.push(conn(who, 'api.stripe.com', 443, 10 + i));
    events.push(conn(who, 'a.cdn.example.net', 443, 20 + i));
    events.push(conn(who, 'metrics.example.org', 8125, 30 + i, 'udp'));
  }
  events.push(dns(A, 'once.example.io', 50));
  events.push(dns(A, 'new.example.io', 3_590_000));
  events.push(dns(A, 'new.example.io', 3_595_000));
  events.push(dns(A, 'typo.example.io', 60, { rcode: 'NXDOMAIN' }));
  events.push(
    dns(A, 'kube-dns.kube-system.svc.cluster.local', 70, { verdict: 'allow', reason: 'pass_through' }),
  );
  events.push(dns(A, 'denied.example.io', 80, { verdict: 'deny' }));
  events.push(dns(A, 'docs.example.io', 100));
  events.push(dns(B, 'docs.example.io', 200));
  events.push(dns(A, 'end.example.io', 3_600_000));
  events.push(dns(A, 'end.example.io', 3_600_000));
  return events;
}

test('one policy per workload: names, wildcards, ports seen, one-off and new names apart', () => {
  const r = new Recommender();
  for (const e of observed()) r.add(e);
  const [rec, ...rest] = r.result({ siblings: 3, minSeen: 2, windowMs: 600_000 });
  assert.equal(rest.length, 0);
  assert.ok(rec);
  assert.deepEqual(rec.workload, { namespace: 'shop', kind: 'Deployment', name: 'checkout' });
  assert.deepEqual(rec.selector, { app: 'checkout', tier: 'web' });
  assert.equal(rec.pods.length, 2);
  const rules = rec.rules.map((x) => ({
    names: x.patterns.map((p) => p.text),
    ports: x.ports.map((p) => `${p.protocol}/${p.port}`),
    def: x.defaultPorts,
  }));
  assert.deepEqual(rules, [
    { names: ['api.stripe.com', '*.cdn.example.net'], ports: ['TCP/443'], def: false },
    { names: ['metrics.example.org'], ports: ['UDP/8125'], def: false },
    { names: ['docs.example.io'], ports: ['TCP/443'], def: true },
  ]);
  assert.deepEqual(
    rec.oneOff.map((n) => n.name),
    ['once.example.io'],
  );
  assert.deepEqual(
    rec.recent.map((n) => n.name),
    ['end.example.io', 'new.example.io'],
  );
});

test('each format passes its reader and allows exactly what was observed', () => {
  const r = new Recommender();
  for (const e of observed()) r.add(e);
  const [rec] = r.result({ siblings: 3, minSeen: 2, windowMs: 600_000 });
  assert.ok(rec);
  const who = makeIdentity('pod:shop/checkout-7d4b9c8f6-x2x1z', 'shop', A.labels);
  const other = makeIdentity('pod:shop/other', 'shop', { app: 'other' });
  for (const format of RECOMMEND_FORMATS) {
    const v = validateRecommended(renderDocument(rec, format), format);
    assert.deepEqual(v.errors, [], format);
    const set = new CompiledPolicies(v.policies);
    const verdict = (name: string, proto: 'TCP' | 'UDP', port: number, id = who) =>
      decide(set, id, canonicalName(name), proto, port).verdict;
    assert.equal(verdict('api.stripe.com', 'TCP', 443), 'allow', format);
    assert.equal(verdict('zzz.cdn.example.net', 'TCP', 443), 'allow', format);
    assert.equal(verdict('metrics.example.org', 'UDP', 8125), 'allow', format);
    assert.equal(verdict('api.stripe.com', 'TCP', 80), 'deny', format);
    assert.equal(verdict('once.example.io', 'TCP', 443), 'deny', format);
    assert.equal(verdict('denied.example.io', 'TCP', 443), 'deny', format);
    assert.equal(verdict('evil.example.com', 'TCP', 443), 'deny', format);
    assert.equal(
      verdict('api.stripe.com', 'TCP', 443, other),
      'allow',
      `${format}: another workload is not governed by it`,
    );
    assert.equal(decide(set, other, canonicalName('api.stripe.com'), 'TCP', 443).reason, 'ungoverned');
  }
  const yaml = renderYaml([rec], 'namegate', { minSeen: 2 });
  assert.match(yaml, /# left out \(seen 1 time\(s\), fewer than 2\): once\.example\.io/);
  assert.match(yaml, /kind: EgressPolicy/);
});

test('a million events in one pass (bounded state)', () => {
  const r = new Recommender();
  const names = Array.from({ length: 500 }, (_, i) => `host${i}.svc${i % 7}.example.com`);
  const pods = Array.from({ length: 20 }, (_, i) =>
    pod(`w${i % 5}-5f6d7c8b9-${String(i).padStart(5, 'a')}`, {
      app: `w${i % 5}`,
      'pod-template-hash': '5f6d7c8b9',
    }),
  );
  const base = pods.map((p) => dns(p, 'x', 0));
  for (let i = 0; i < 200_000; i++) {
    const e = base[i % pods.length] as FlowEvent;
    r.add({ ...e, name: names[i % names.length] as string, time: e.time });
  }
  const out = r.result({ siblings: 3 });
  assert.equal(out.length, 5);
  assert.ok(out.every((w) => w.rules.length > 0));
});
