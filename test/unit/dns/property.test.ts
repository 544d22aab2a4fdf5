/**
 * Property tests of the whole pipeline: random and mutated queries and replies never crash it,
 * never make it learn from bad input, and never grow its state without bound.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { AnswerError, readAnswers } from '../../../src/dns/answers.ts';
import { replyMismatch } from '../../../src/dns/message.ts';
import { WireError } from '../../../src/dns/wire.ts';
import { A, CNAME, harness, query, reply } from './helpers.ts';

const SOURCES = ['10.0.1.5', '10.0.1.6', '10.0.2.5', '10.0.3.5', '10.0.9.5', '192.0.2.200', 'fd00:1::5'];
const NAMES = [
  'api.example.com',
  'a.cdn.example.net',
  'mixed.example.com',
  'evil.example.org',
  'x.cluster.local',
];

const mutate = (seed: Buffer, muts: Array<[number, number]>) => {
  const b = Buffer.from(seed);
  for (const [at, v] of muts) b[at % b.length] = v;
  return b;
};

test('random and mutated queries: a reply or a drop, never a throw; nothing learned from a denied name', async () => {
  const h = harness({ rate: [1e9, 1e9] });
  h.upstream = (u) => reply(u.question.name, 'A', [A(u.question.name, '198.51.100.1')]);
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(...SOURCES),
      fc.oneof(
        fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
        fc
          .tuple(fc.constantFrom(...NAMES), fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 6 }))
          .map(([n, muts]) => mutate(query(n, 'A', { edns: 1232 }), muts)),
      ),
      async (src, msg) => {
        const r = await h.ask(src, msg);
        if (r) assert.ok(r.length >= 12);
      },
    ),
    { numRuns: 2000 },
  );
  for (const e of h.store.entries()) {
    // A mutation may turn one allowed name into another (a.cdn -> d.cdn, under **.cdn.example.net).
    const allowed =
      ['api.example.com', 'mixed.example.com'].includes(e.name) || e.name.endsWith('.cdn.example.net');
    assert.ok(allowed, `learned for a name no policy allows: ${e.name}`);
    assert.ok(
      !e.source.startsWith('10.0.9.') && e.source !== '192.0.2.200',
      'ungoverned/unknown never learn',
    );
  }
});

test('mutated upstream replies: learned addresses are exactly what a strict reading of the reply allows', async () => {
  const h = harness({ limits: { maxIpsPerName: 8, maxIpsPerSource: 32, maxEntries: 200 }, rate: [1e9, 1e9] });
  const seed = reply('api.example.com', 'A', [
    CNAME('api.example.com', 'edge.example.net'),
    A('edge.example.net', '198.51.100.7'),
    A('other.example', '203.0.113.9'),
  ]);
  let current = seed;
  h.upstream = () => current;
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 5 }),
      async (muts) => {
        current = mutate(seed, muts);
        h.store.forgetSource('10.0.1.5');
        const r = await h.ask('10.0.1.5', query('api.example.com', 'A', { edns: 4096 }));
        assert.ok(r);
        const learned = h.store.lookup('10.0.1.5', 'api.example.com', h.clock.now());
        let expected: string[] = [];
        const rcode = current[3]! & 0xf;
        const tc = (current[2]! & 2) !== 0;
        const parsed =
          rcode === 0 &&
          !tc &&
          replyMismatch(current, { name: 'api.example.com', type: 1, class: 1 }) === null;
        try {
          const facts = readAnswers(
            current,
            { name: 'api.example.com', type: 1, class: 1 },
            { maxCnameDepth: 16, maxAnswerRecords: 1000 },
          );
          if (parsed) expected = facts.addresses.filter((a) => a.family === 4).map((a) => a.ip);
        } catch (err) {
          assert.ok(err instanceof WireError || err instanceof AnswerError);
          if (parsed) assert.equal(r[3]! & 0xf, 2, 'SERVFAIL for an unreadable reply');
        }
        for (const ip of learned) assert.ok(expected.includes(ip), `learned ${ip} not in ${expected}`);
        assert.ok(!learned.includes('203.0.113.9') || expected.includes('203.0.113.9'));
      },
    ),
    { numRuns: 2000 },
  );
  assert.ok(h.store.size <= 200);
});

test('no unbounded growth: 20,000 sources and names of churn stay within the caps', async () => {
  const h = harness({ limits: { maxIpsPerName: 4, maxIpsPerSource: 16, maxEntries: 500 }, rate: [1e9, 1e9] });
  let n = 0;
  h.upstream = (u) =>
    reply(u.question.name, 'A', [A(u.question.name, `198.51.${(n >> 8) & 255}.${n++ & 255}`)]);
  for (let i = 0; i < 20_000; i++) {
    const src = `10.0.1.${i % 250}`;
    await h.ask(src, query(`n${i}.cdn.example.net`));
  }
  assert.ok(h.store.size <= 500, `store ${h.store.size}`);
  assert.ok(h.datapath.calls.length <= 10_000, 'recording datapath bounded');
});
