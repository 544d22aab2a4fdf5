import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import dnsPacket from 'dns-packet';
import fc from 'fast-check';
import {
  buildReply,
  checkQuery,
  type QueryRules,
  replyMismatch,
  truncatedReply,
} from '../../../src/dns/message.ts';
import { Flag } from '../../../src/dns/wire.ts';
import { decode, edeOf, query } from './helpers.ts';

const RULES: QueryRules = { maxQueryBytes: 4096, refusedTypes: new Set([255, 252, 251, 10]) };

function withHeader(buf: Buffer, patch: (b: Buffer) => void): Buffer {
  const out = Buffer.from(buf);
  patch(out);
  return out;
}

describe('checkQuery (security-cases DNS-09, DNS-14, DNS-24)', () => {
  test('a plain query passes, with its question and UDP limit', () => {
    const c = checkQuery(query('API.Example.com', 'AAAA'), RULES);
    assert.ok(c.ok);
    assert.deepEqual(c.query.question, { name: 'api.example.com', type: 28, class: 1 });
    assert.equal(c.query.edns, false);
    assert.equal(c.query.udpLimit, 512);
  });

  test('EDNS: the client payload size is its UDP limit (never below 512)', () => {
    const c = checkQuery(query('a.example', 'A', { edns: 4096 }), RULES);
    assert.ok(c.ok);
    assert.equal(c.query.edns, true);
    assert.equal(c.query.udpLimit, 4096);
    const small = checkQuery(query('a.example', 'A', { edns: 100 }), RULES);
    assert.ok(small.ok);
    assert.equal(small.query.udpLimit, 512);
  });

  const rejected: Array<[string, Buffer, string, number | null]> = [
    ['shorter than a header', Buffer.alloc(11), 'short', null],
    [
      'a response (QR=1) is dropped, never answered',
      withHeader(query('a.example'), (b) => (b[2]! |= 0x80)),
      'response',
      null,
    ],
    ['opcode NOTIFY', withHeader(query('a.example'), (b) => (b[2] = (b[2]! & 0x87) | (4 << 3))), 'opcode', 5],
    ['opcode UPDATE', withHeader(query('a.example'), (b) => (b[2] = (b[2]! & 0x87) | (5 << 3))), 'opcode', 5],
    ['QDCOUNT=0', withHeader(query('a.example'), (b) => b.writeUInt16BE(0, 4)), 'qdcount', 1],
    ['QDCOUNT=2', withHeader(query('a.example'), (b) => b.writeUInt16BE(2, 4)), 'qdcount', 1],
    ['ANCOUNT=1 in a query', withHeader(query('a.example'), (b) => b.writeUInt16BE(1, 6)), 'sections', 1],
    [
      'ARCOUNT=2',
      withHeader(query('a.example', 'A', { edns: 1232 }), (b) => b.writeUInt16BE(2, 10)),
      'sections',
      1,
    ],
    ['trailing bytes', Buffer.concat([query('a.example'), Buffer.from([1, 2, 3])]), 'malformed', 1],
    ['question cut off', query('a.example').subarray(0, 20), 'malformed', 1],
    [
      'pointer in the question (can only point into the header)',
      Buffer.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1]),
      'malformed',
      1,
    ],
    [
      'class CHAOS',
      withHeader(query('version.bind', 'TXT'), (b) => b.writeUInt16BE(3, b.length - 2)),
      'class',
      5,
    ],
    ['type ANY', query('a.example', 'ANY'), 'qtype', 5],
    ['type AXFR', query('a.example', 'AXFR'), 'qtype', 5],
    ['type IXFR', withHeader(query('a.example', 'A'), (b) => b.writeUInt16BE(251, b.length - 4)), 'qtype', 5],
    // DNS-08: the query type and size limits.
    ['type NULL', query('a.example', 'NULL'), 'qtype', 5],
    ['larger than maxQueryBytes', Buffer.concat([query('a.example'), Buffer.alloc(5000)]), 'too_large', 1],
  ];
  for (const [name, msg, problem, rcode] of rejected) {
    test(`${name} -> ${problem}`, () => {
      const c = checkQuery(msg, RULES);
      assert.equal(c.ok, false);
      if (c.ok) return;
      assert.equal(c.problem, problem);
      assert.equal(c.rcode, rcode);
      if (rcode === null) {
        assert.equal(c.reply, null);
        return;
      }
      const r = c.reply!;
      assert.equal(r.readUInt16BE(0), msg.readUInt16BE(0), 'ID echoed');
      assert.ok((r[2]! & 0x80) !== 0, 'QR set');
      assert.equal(r[3]! & 0xf, rcode);
      assert.doesNotThrow(() => dnsPacket.decode(r));
    });
  }

  test('an ARCOUNT=1 record that is not OPT is FORMERR', () => {
    const msg = dnsPacket.encode({
      type: 'query',
      id: 1,
      questions: [{ type: 'A', name: 'a.example' }],
      additionals: [{ type: 'A', name: 'x.example', ttl: 1, data: '192.0.2.1' }],
    });
    const c = checkQuery(msg, RULES);
    assert.ok(!c.ok && c.problem === 'sections');
  });

  test('random and mutated messages never throw; replies are well-formed', () => {
    const seeds = [query('api.example.com'), query('a.b.c.example', 'AAAA', { edns: 1232 })];
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b)),
          fc
            .tuple(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.nat(200), fc.nat(255)), { maxLength: 8 }))
            .map(([seed, muts]) => {
              const b = Buffer.from(seed);
              for (const [at, v] of muts) b[at % b.length] = v;
              return b;
            }),
        ),
        (msg) => {
          const c = checkQuery(msg, RULES);
          if (!c.ok && c.reply) {
            assert.ok(c.reply.length >= 12);
            assert.doesNotThrow(() => dnsPacket.decode(c.reply!));
          }
        },
      ),
      { numRuns: 5000 },
    );
  });
});

describe('replies namegate builds', () => {
  test('REFUSED with an Extended DNS Error when the client sent EDNS (RFC 8914)', () => {
    const q = checkQuery(query('blocked.example', 'A', { edns: 1232 }), RULES);
    assert.ok(q.ok);
    const r = buildReply(
      { id: q.query.id, flags: q.query.flags, questionEnd: q.query.questionEnd, edns: true },
      query('blocked.example', 'A', { edns: 1232 }),
      5,
      { code: 15, text: 'blocked by policy' },
    );
    const p = decode(r);
    assert.equal(p.rcode, 'REFUSED');
    assert.equal(p.questions?.[0]?.name, 'blocked.example');
    assert.equal(p.answers?.length, 0);
    assert.deepEqual(edeOf(r), [15, 'blocked by policy']);
    assert.ok(p.flag_rd, 'RD copied');
  });

  test('no OPT record (and so no EDE) for a client without EDNS', () => {
    const raw = query('blocked.example');
    const q = checkQuery(raw, RULES);
    assert.ok(q.ok);
    const r = buildReply(
      { id: q.query.id, flags: q.query.flags, questionEnd: q.query.questionEnd, edns: false },
      raw,
      3,
      {
        code: 15,
        text: 'x',
      },
    );
    const p = decode(r);
    assert.equal(p.rcode, 'NXDOMAIN');
    assert.equal(p.additionals?.length, 0);
  });

  test('truncatedReply: TC set, question kept, no records, upstream rcode kept', () => {
    const raw = query('many.example', 'A', { edns: 1232 });
    const q = checkQuery(raw, RULES);
    assert.ok(q.ok);
    const r = truncatedReply(q.query, raw, 0x8580);
    const p = decode(r);
    assert.ok(p.flag_tc);
    assert.ok(p.flag_aa);
    assert.equal(p.id, q.query.id);
    assert.equal(p.questions?.[0]?.name, 'many.example');
    assert.equal(p.answers?.length, 0);
    assert.equal(p.rcode, 'NOERROR');
    assert.equal((r.readUInt16BE(2) & Flag.TC) !== 0, true);
  });
});

describe('replyMismatch: replies accepted only for our question', () => {
  const question = { name: 'api.example.com', type: 1, class: 1 };
  const good = dnsPacket.encode({
    type: 'response',
    id: 9,
    questions: [{ type: 'A', name: 'API.example.COM' }],
  });
  test('the same question (any case) matches', () => assert.equal(replyMismatch(good, question), null));
  test('another name', () =>
    assert.equal(
      replyMismatch(
        dnsPacket.encode({ type: 'response', id: 9, questions: [{ type: 'A', name: 'evil.example' }] }),
        question,
      ),
      'question',
    ));
  test('another type', () =>
    assert.equal(
      replyMismatch(
        dnsPacket.encode({ type: 'response', id: 9, questions: [{ type: 'AAAA', name: 'api.example.com' }] }),
        question,
      ),
      'question',
    ));
  test('not a response', () =>
    assert.equal(replyMismatch(query('api.example.com'), question), 'not-response'));
  test('no question', () =>
    assert.equal(
      replyMismatch(dnsPacket.encode({ type: 'response', id: 9, questions: [] }), question),
      'qdcount',
    ));
});
