import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { otherResolverReply, quicReply } from '../../../src/lab/listeners.ts';

function query(type: 'A' | 'AAAA' | 'TXT' | 'MX', id = 77): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type, name: 'x.test' }],
  });
}

describe('the other resolver', () => {
  it('answers every A and AAAA with its own addresses, echoing id and question', () => {
    const a = dnsPacket.decode(otherResolverReply(query('A', 9), '198.51.100.66', '2001:db8:100::66')!);
    assert.equal(a.id, 9);
    assert.equal(a.type, 'response');
    assert.deepEqual(a.questions, [{ type: 'A', name: 'x.test', class: 'IN' }]);
    assert.equal((a.answers?.[0] as { data: string } | undefined)?.data, '198.51.100.66');
    const aaaa = dnsPacket.decode(otherResolverReply(query('AAAA'), '198.51.100.66', '2001:db8:100::66')!);
    assert.equal((aaaa.answers?.[0] as { data: string } | undefined)?.data, '2001:db8:100::66');
    const mx = dnsPacket.decode(otherResolverReply(query('MX'), '198.51.100.66', '2001:db8:100::66')!);
    assert.deepEqual(mx.answers, []);
  });

  it('ignores what is not one well-formed query', () => {
    assert.equal(otherResolverReply(Buffer.from([1, 2, 3]), '198.51.100.66', '::1'), null);
    assert.equal(otherResolverReply(Buffer.alloc(0), '198.51.100.66', '::1'), null);
    const response = dnsPacket.encode({
      type: 'response',
      id: 1,
      questions: [{ type: 'A', name: 'x.test' }],
    });
    assert.equal(otherResolverReply(response, '198.51.100.66', '::1'), null);
    for (let i = 0; i < 200; i++) {
      const junk = Buffer.from(Array.from({ length: (i % 40) + 1 }, (_, j) => (i * 31 + j * 7) & 0xff));
      assert.doesNotThrow(() => otherResolverReply(junk, '198.51.100.66', '::1'));
    }
  });

  it('names the address a QUIC-like probe reached', () => {
    assert.equal(quicReply('203.0.113.10').toString(), 'quic-like reply from 203.0.113.10\n');
  });
});
