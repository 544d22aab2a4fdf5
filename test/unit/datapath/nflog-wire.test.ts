/** NFLOG parsing: built messages read back exactly; any bytes at all never throw. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  NFULA,
  PcapReader,
  packetTuple,
  parseNetlink,
  parseNflogRecord,
} from '../../../src/datapath/nflog-wire.ts';

function attr(type: number, value: Uint8Array): Buffer {
  const len = 4 + value.length;
  const out = Buffer.alloc((len + 3) & ~3);
  out.writeUInt16LE(len, 0);
  out.writeUInt16LE(type, 2);
  Buffer.from(value).copy(out, 4);
  return out;
}

function nfgen(group: number): Buffer {
  const b = Buffer.alloc(4);
  b[0] = 2;
  b.writeUInt16BE(group, 2);
  return b;
}

function nlmsg(type: number, body: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32LE(16 + body.length, 0);
  h.writeUInt16LE(type, 4);
  return Buffer.concat([h, body]);
}

function ipv4Udp(src: number[], dst: number[], sport: number, dport: number): Buffer {
  const b = Buffer.alloc(28);
  b[0] = 0x45;
  b[9] = 17;
  Buffer.from(src).copy(b, 12);
  Buffer.from(dst).copy(b, 16);
  b.writeUInt16BE(sport, 20);
  b.writeUInt16BE(dport, 22);
  return b;
}

function timestamp(ms: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeBigUInt64BE(BigInt(Math.floor(ms / 1000)), 0);
  b.writeBigUInt64BE(BigInt((ms % 1000) * 1000), 8);
  return b;
}

const PACKET = ipv4Udp([10, 10, 1, 2], [203, 0, 113, 66], 40000, 443);

test('a packet message: group, prefix, timestamp, interfaces, payload', () => {
  const body = Buffer.concat([
    nfgen(100),
    attr(NFULA.PACKET_HDR, Buffer.from([0x08, 0x00, 2, 0])),
    attr(NFULA.PREFIX, Buffer.from('namegate-drop \0')),
    attr(NFULA.TIMESTAMP, timestamp(1_765_000_000_123)),
    attr(NFULA.IFINDEX_INDEV, Buffer.from([0, 0, 0, 5])),
    attr(NFULA.PAYLOAD, PACKET),
  ]);
  const r = parseNetlink(Buffer.concat([nlmsg(0x0400, body), nlmsg(0x0400, body)]));
  assert.equal(r.malformed, 0);
  assert.equal(r.packets.length, 2);
  const p = r.packets[0]!;
  assert.equal(p.group, 100);
  assert.equal(p.prefix, 'namegate-drop ');
  assert.equal(p.timestampMs, 1_765_000_000_123);
  assert.equal(p.indev, 5);
  assert.deepEqual(packetTuple(p.payload), {
    family: 4,
    src: '10.10.1.2',
    dst: '203.0.113.66',
    proto: 'udp',
    sport: 40000,
    dport: 443,
  });
});

test('netlink errors are reported, acks are not; a message without payload is malformed', () => {
  const err = Buffer.alloc(20);
  err.writeInt32LE(-1, 0);
  const ack = Buffer.alloc(20);
  const noPayload = Buffer.concat([nfgen(1), attr(NFULA.PREFIX, Buffer.from('x\0'))]);
  const r = parseNetlink(Buffer.concat([nlmsg(2, err), nlmsg(2, ack), nlmsg(0x0400, noPayload)]));
  assert.deepEqual(r.errors, [1]);
  assert.equal(r.malformed, 1);
  assert.equal(r.packets.length, 0);
});

test('a DLT_NFLOG record has the same attributes', () => {
  const rec = Buffer.concat([
    nfgen(9),
    attr(NFULA.PREFIX, Buffer.from('namegate-audit \0')),
    attr(NFULA.PAYLOAD, PACKET),
  ]);
  const p = parseNflogRecord(rec);
  assert.equal(p?.group, 9);
  assert.equal(p?.prefix, 'namegate-audit ');
  assert.equal(packetTuple(p!.payload)?.dport, 443);
});

test('IPv6 with extension headers, fragments, ICMP', () => {
  const b = Buffer.alloc(40 + 8 + 8);
  b[0] = 0x60;
  b[6] = 0; // hop-by-hop
  Buffer.from('fd000010000100000000000000000002', 'hex').copy(b, 8);
  Buffer.from('20010db8011300000000000000000066', 'hex').copy(b, 24);
  b[40] = 6; // then TCP
  b[41] = 0; // 8 bytes
  b.writeUInt16BE(50000, 48);
  b.writeUInt16BE(443, 50);
  assert.deepEqual(packetTuple(b), {
    family: 6,
    src: 'fd00:10:1::2',
    dst: '2001:db8:113::66',
    proto: 'tcp',
    sport: 50000,
    dport: 443,
  });
  const frag = ipv4Udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
  frag.writeUInt16BE(0x0010, 6); // a later fragment: no ports in it
  assert.equal(packetTuple(frag)?.sport, null);
  const icmp = ipv4Udp([10, 0, 0, 1], [10, 0, 0, 2], 0, 0);
  icmp[9] = 1;
  assert.equal(packetTuple(icmp)?.proto, 'icmp');
  assert.equal(packetTuple(icmp)?.dport, null);
  assert.equal(packetTuple(Buffer.from([0x45])), null);
});

test('IPv6 text is RFC 5952: the longest zero run compressed, lowercase', () => {
  const b = Buffer.alloc(48);
  b[0] = 0x60;
  b[6] = 17;
  Buffer.from('20010db8000000010000000000000001', 'hex').copy(b, 8);
  Buffer.from('00000000000000000000000000000001', 'hex').copy(b, 24);
  const t = packetTuple(b);
  assert.equal(t?.src, '2001:db8:0:1::1');
  assert.equal(t?.dst, '::1');
});

test('pcap stream: records split across chunks, both byte orders', () => {
  const rec = Buffer.concat([nfgen(3), attr(NFULA.PAYLOAD, PACKET)]);
  const header = Buffer.alloc(24);
  header.writeUInt32LE(0xa1b2c3d4, 0);
  header.writeUInt32LE(239, 20);
  const rh = Buffer.alloc(16);
  rh.writeUInt32LE(rec.length, 8);
  rh.writeUInt32LE(rec.length, 12);
  const stream = Buffer.concat([header, rh, rec, rh, rec]);
  const reader = new PcapReader();
  const out: Uint8Array[] = [];
  for (let i = 0; i < stream.length; i += 7) out.push(...reader.push(stream.subarray(i, i + 7)));
  assert.equal(reader.linkType, 239);
  assert.equal(out.length, 2);
  assert.equal(parseNflogRecord(out[1]!)?.group, 3);
  assert.throws(() => new PcapReader().push(Buffer.alloc(24, 1)), /not a pcap/);
});

test('property: any bytes parse without throwing, and every packet stays inside the input', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
      const r = parseNetlink(bytes);
      for (const p of r.packets) {
        assert.ok(p.payload.byteOffset + p.payload.length <= bytes.byteOffset + bytes.length);
        packetTuple(p.payload);
      }
      parseNflogRecord(bytes);
      packetTuple(bytes);
    }),
    { numRuns: 2000 },
  );
});

test('property: a valid message with mutated bytes never throws', () => {
  const body = Buffer.concat([
    nfgen(100),
    attr(NFULA.PREFIX, Buffer.from('namegate-drop \0')),
    attr(NFULA.PAYLOAD, PACKET),
  ]);
  const msg = nlmsg(0x0400, body);
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(msg.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
      (edits) => {
        const m = Buffer.from(msg);
        for (const [at, v] of edits) m[at] = v;
        const r = parseNetlink(m);
        for (const p of r.packets) packetTuple(p.payload);
      },
    ),
    { numRuns: 2000 },
  );
});
