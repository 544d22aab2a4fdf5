import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import dnsPacket from 'dns-packet';
import fc from 'fast-check';
import { AnswerError, readAnswers } from '../../../src/dns/answers.ts';
import { readSvcbHints } from '../../../src/dns/svcb.ts';
import { RrType, readRrHead, WireError, WireReader } from '../../../src/dns/wire.ts';
import { A, AAAA, CNAME, HTTPS, ipv4Hint, reply, svcbRdata } from './helpers.ts';

const LIMITS = { maxCnameDepth: 16, maxAnswerRecords: 1000 };
const q = (name: string, type = 1) => ({ name, type, class: 1 });

function problem(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof AnswerError || err instanceof WireError) return err.reason;
    throw err;
  }
  return 'none';
}

describe('readAnswers: the CNAME chain from the queried name (DNS-11, DNS-13, DNS-15)', () => {
  test('addresses at the queried name', () => {
    const f = readAnswers(
      reply('api.example.com', 'A', [A('api.example.com', '192.0.2.1', 60)]),
      q('api.example.com'),
      LIMITS,
    );
    assert.deepEqual(f.addresses, [{ ip: '192.0.2.1', family: 4, ttl: 60 }]);
    assert.deepEqual(f.chain, ['api.example.com']);
  });

  test('DNS-11: allowed.com CNAME cdn.x.net; cdn.x.net A 1.2.3.4 -> 1.2.3.4 for the queried name', () => {
    const f = readAnswers(
      reply('allowed.com', 'A', [CNAME('allowed.com', 'cdn.x.net', 300), A('cdn.x.net', '1.2.3.4', 600)]),
      q('allowed.com'),
      LIMITS,
    );
    assert.deepEqual(f.chain, ['allowed.com', 'cdn.x.net']);
    assert.deepEqual(
      f.addresses,
      [{ ip: '1.2.3.4', family: 4, ttl: 300 }],
      'TTL is the smallest along the chain',
    );
  });

  test('records for names off the chain are ignored (no smuggled addresses)', () => {
    const f = readAnswers(
      reply('allowed.com', 'A', [
        CNAME('allowed.com', 'cdn.x.net'),
        A('evil.example', '203.0.113.66'),
        A('allowed.com', '203.0.113.67'), // at the chain start, not its end
        A('cdn.x.net', '1.2.3.4'),
      ]),
      q('allowed.com'),
      LIMITS,
    );
    assert.deepEqual(
      f.addresses.map((a) => a.ip),
      ['1.2.3.4'],
    );
  });

  test('only the queried type counts: AAAA records in an A answer are not taken', () => {
    const f = readAnswers(
      reply('api.example.com', 'A', [
        A('api.example.com', '192.0.2.1'),
        AAAA('api.example.com', '2001:db8::1'),
      ]),
      q('api.example.com'),
      LIMITS,
    );
    assert.deepEqual(
      f.addresses.map((a) => a.ip),
      ['192.0.2.1'],
    );
    const six = readAnswers(
      reply('api.example.com', 'AAAA', [AAAA('api.example.com', '2001:DB8:0:0::0:1')]),
      q('api.example.com', 28),
      LIMITS,
    );
    assert.deepEqual(six.addresses, [{ ip: '2001:db8::1', family: 6, ttl: 300 }]);
  });

  test('names compare case-insensitively along the chain', () => {
    const f = readAnswers(
      reply('api.example.com', 'A', [
        CNAME('API.example.com', 'CDN.Example.NET'),
        A('cdn.example.net', '192.0.2.7'),
      ]),
      q('api.example.com'),
      LIMITS,
    );
    assert.deepEqual(
      f.addresses.map((a) => a.ip),
      ['192.0.2.7'],
    );
  });

  test('DNS-13: a CNAME loop is an error', () => {
    const r = reply('a.example', 'A', [CNAME('a.example', 'b.example'), CNAME('b.example', 'a.example')]);
    assert.equal(
      problem(() => readAnswers(r, q('a.example'), LIMITS)),
      'cname_loop',
    );
  });

  test('DNS-13: a chain longer than the limit is an error; at the limit it is fine', () => {
    const chain = (n: number) => {
      const rrs = [];
      for (let i = 0; i < n; i++) rrs.push(CNAME(`c${i}.example`, `c${i + 1}.example`));
      rrs.push(A(`c${n}.example`, '192.0.2.9'));
      return reply('c0.example', 'A', rrs);
    };
    assert.equal(readAnswers(chain(16), q('c0.example'), LIMITS).addresses.length, 1);
    assert.equal(
      problem(() => readAnswers(chain(17), q('c0.example'), LIMITS)),
      'cname_too_long',
    );
  });

  test('two different CNAME targets for one owner is an error', () => {
    const r = reply('a.example', 'A', [CNAME('a.example', 'b.example'), CNAME('a.example', 'c.example')]);
    assert.equal(
      problem(() => readAnswers(r, q('a.example'), LIMITS)),
      'cname_conflict',
    );
  });

  test('DNS-15: more answer records than the limit is an error', () => {
    const many = [];
    for (let i = 0; i < 50; i++) many.push(A('many.example', `192.0.2.${i}`));
    const r = reply('many.example', 'A', many);
    assert.equal(
      problem(() => readAnswers(r, q('many.example'), { ...LIMITS, maxAnswerRecords: 49 })),
      'too_many_answers',
    );
    assert.equal(readAnswers(r, q('many.example'), LIMITS).addresses.length, 50);
  });

  test('duplicate addresses are kept once', () => {
    const r = reply('d.example', 'A', [A('d.example', '192.0.2.1', 100), A('d.example', '192.0.2.1', 50)]);
    assert.equal(readAnswers(r, q('d.example'), LIMITS).addresses.length, 1);
  });

  test('malformed: A rdata of 5 bytes, trailing bytes, authority records cut off', () => {
    const bad = dnsPacket.encode({
      type: 'response',
      questions: [{ type: 'A', name: 'x.example' }],
      answers: [
        { type: 'UNKNOWN_1', name: 'x.example', ttl: 1, data: Buffer.from([1, 2, 3, 4, 5]) } as never,
      ],
    });
    assert.equal(
      problem(() => readAnswers(bad, q('x.example'), LIMITS)),
      'bad-rdata',
    );
    const good = reply('x.example', 'A', [A('x.example', '192.0.2.1')]);
    assert.equal(
      problem(() => readAnswers(Buffer.concat([good, Buffer.from([0])]), q('x.example'), LIMITS)),
      'trailing-bytes',
    );
    const claimsNs = Buffer.from(good);
    claimsNs.writeUInt16BE(1, 8);
    assert.equal(
      problem(() => readAnswers(claimsNs, q('x.example'), LIMITS)),
      'truncated',
    );
  });

  test('a CNAME whose rdata name runs past its rdlength is malformed', () => {
    const r = reply('a.example', 'A', [CNAME('a.example', 'b.example')]);
    // rdlength of the CNAME is the 2 bytes before its rdata; shrink it by one
    const at = r.indexOf(Buffer.from([0, 5, 0, 1])); // type CNAME, class IN of the answer
    const rdlenAt = at + 8;
    const out = Buffer.from(r);
    out.writeUInt16BE(out.readUInt16BE(rdlenAt) - 1, rdlenAt);
    assert.notEqual(
      problem(() => readAnswers(out, q('a.example'), LIMITS)),
      'none',
    );
  });

  test('mutated replies: only WireError/AnswerError, and learned addresses only ever come from the chain end', () => {
    const seed = reply('allowed.com', 'A', [
      CNAME('allowed.com', 'cdn.x.net'),
      A('cdn.x.net', '1.2.3.4'),
      A('other.example', '5.6.7.8'),
    ]);
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(seed.length - 1), fc.nat(255)), { minLength: 1, maxLength: 6 }),
        (muts) => {
          const b = Buffer.from(seed);
          for (const [at, v] of muts) b[at] = v;
          try {
            const f = readAnswers(b, q('allowed.com'), LIMITS);
            const end = f.chain[f.chain.length - 1];
            for (const a of f.addresses) assert.ok(a.ip !== '5.6.7.8' || end === 'other.example');
            assert.ok(f.chain.length <= LIMITS.maxCnameDepth + 1);
          } catch (err) {
            assert.ok(err instanceof WireError || err instanceof AnswerError, String(err));
          }
        },
      ),
      { numRuns: 5000 },
    );
  });
});

describe('HTTPS/SVCB hints (decision: learned like A/AAAA at the chain end)', () => {
  test('ServiceMode ipv4hint at the queried name is learned for an HTTPS query', () => {
    const rd = svcbRdata(1, '.', [[1, Buffer.from([2, 0x68, 0x32])], ipv4Hint('192.0.2.10', '192.0.2.11')]);
    const f = readAnswers(
      reply('svc.example', 'HTTPS', [HTTPS('svc.example', rd, 120)]),
      q('svc.example', 65),
      LIMITS,
    );
    assert.deepEqual(
      f.addresses.map((a) => [a.ip, a.ttl]),
      [
        ['192.0.2.10', 120],
        ['192.0.2.11', 120],
      ],
    );
  });

  test('hints are not taken for an A query, nor from AliasMode records', () => {
    const rd = svcbRdata(1, '.', [ipv4Hint('192.0.2.10')]);
    const aQuery = readAnswers(
      reply('svc.example', 'A', [HTTPS('svc.example', rd)]),
      q('svc.example', 1),
      LIMITS,
    );
    assert.equal(aQuery.addresses.length, 0);
    const alias = svcbRdata(0, 'other.example', [ipv4Hint('192.0.2.10')]);
    const f = readAnswers(
      reply('svc.example', 'HTTPS', [HTTPS('svc.example', alias)]),
      q('svc.example', 65),
      LIMITS,
    );
    assert.equal(f.addresses.length, 0);
  });

  const bad: Array<[string, Buffer]> = [
    ['keys out of order', svcbRdata(1, '.', [ipv4Hint('192.0.2.1'), [1, Buffer.from([2, 0x68, 0x32])]])],
    ['duplicate key', svcbRdata(1, '.', [ipv4Hint('192.0.2.1'), ipv4Hint('192.0.2.2')])],
    ['ipv4hint of 5 bytes', svcbRdata(1, '.', [[4, Buffer.from([1, 2, 3, 4, 5])]])],
    ['empty ipv6hint', svcbRdata(1, '.', [[6, Buffer.alloc(0)]])],
    [
      'param longer than the rdata',
      Buffer.concat([svcbRdata(1, '.', []), Buffer.from([0, 4, 0, 8, 1, 2, 3, 4])]),
    ],
  ];
  for (const [name, rd] of bad) {
    test(`malformed SVCB rdata: ${name}`, () => {
      const r = reply('svc.example', 'HTTPS', [HTTPS('svc.example', rd)]);
      assert.equal(
        problem(() => readAnswers(r, q('svc.example', 65), LIMITS)),
        name === 'param longer than the rdata' ? 'truncated' : 'bad-rdata',
      );
    });
  }

  test('a compressed TargetName is rejected', () => {
    const r = reply('svc.example', 'HTTPS', [HTTPS('svc.example', Buffer.from([0, 1, 0xc0, 12]))]);
    const reader = new WireReader(r, 12);
    reader.name();
    reader.skip(4);
    const rr = readRrHead(reader);
    assert.equal(rr.type, RrType.HTTPS);
    assert.throws(() => readSvcbHints(r, rr), WireError);
  });
});
