import assert from 'node:assert/strict';
import { SocketAddress } from 'node:net';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ipv6Text, readRrHead, WireError, WireReader } from '../../../src/dns/wire.ts';

/** A header of zeros followed by `body`. */
function msg(...body: number[]): Buffer {
  return Buffer.from([...new Array(12).fill(0), ...body]);
}

function nameAt(buf: Buffer, pos: number): { name: string; next: number } {
  const r = new WireReader(buf, pos);
  const name = r.name();
  return { name, next: r.pos };
}

function wireReason(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof WireError) return err.reason;
    throw err;
  }
  return 'none';
}

describe('names on the wire', () => {
  test('labels are read and lowercased; the root is the empty string', () => {
    const buf = msg(3, 0x57, 0x57, 0x57, 7, ...Buffer.from('Example'), 3, ...Buffer.from('COM'), 0);
    assert.deepEqual(nameAt(buf, 12), { name: 'www.example.com', next: buf.length });
    assert.deepEqual(nameAt(msg(0), 12), { name: '', next: 13 });
  });

  test('a backward pointer is followed; the cursor stops after it', () => {
    const buf = msg(
      7,
      ...Buffer.from('example'),
      3,
      ...Buffer.from('com'),
      0,
      3,
      ...Buffer.from('api'),
      0xc0,
      12,
    );
    assert.deepEqual(nameAt(buf, 25), { name: 'api.example.com', next: buf.length });
  });

  test('bytes outside [a-z0-9_-] are escaped, so a dot inside a label never equals two labels', () => {
    const one = msg(3, 0x61, 0x2e, 0x62, 0); // one label "a.b"
    const two = msg(1, 0x61, 1, 0x62, 0);
    assert.equal(nameAt(one, 12).name, 'a\\046b');
    assert.equal(nameAt(two, 12).name, 'a.b');
    assert.equal(nameAt(msg(2, 0x00, 0xff, 0), 12).name, '\\000\\255');
  });

  const cases: Array<[string, Buffer, number, string]> = [
    ['pointer into the header', msg(0xc0, 0x05), 12, 'pointer-into-header'],
    ['pointer to itself (loop)', msg(1, 0x61, 0xc0, 12), 12, 'pointer-not-backward'],
    ['forward pointer', msg(0xc0, 16, 0, 0, 1, 0x61, 0), 12, 'pointer-not-backward'],
    // 12: a -> 14: pointer to 12: a classic two-step loop
    ['loop through two pointers', msg(1, 0x61, 0xc0, 16, 0xc0, 12), 16, 'pointer-not-backward'],
    ['label type 0x40', msg(0x41, 0x61, 0), 12, 'bad-label-type'],
    ['label type 0x80', msg(0x81, 0x61, 0), 12, 'bad-label-type'],
    ['label runs past the end', msg(5, 0x61, 0x62), 12, 'truncated'],
    ['no terminating zero', msg(1, 0x61), 12, 'truncated'],
    ['pointer cut off', msg(0xc0), 12, 'truncated'],
  ];
  for (const [name, buf, at, reason] of cases) {
    test(`rejected: ${name}`, () =>
      assert.equal(
        wireReason(() => nameAt(buf, at)),
        reason,
      ));
  }

  test('a label longer than 63 octets is a bad label type (64 = 0x40)', () => {
    assert.equal(
      wireReason(() => nameAt(msg(64, ...new Array(64).fill(0x61), 0), 12)),
      'bad-label-type',
    );
  });

  test('a name longer than 255 octets is rejected, also when built from pointers', () => {
    const label = [63, ...new Array(63).fill(0x61)];
    const flat = msg(...label, ...label, ...label, ...label, 0); // 4*64+1 = 257
    assert.equal(
      wireReason(() => nameAt(flat, 12)),
      'name-too-long',
    );
    // 3 labels (192) at 12, then 2 more labels + pointer to 12: 2*64 + 192 + 1 > 255
    const base = msg(...label, ...label, ...label, 0);
    const withPtr = Buffer.concat([base, Buffer.from([...label, ...label, 0xc0, 12])]);
    assert.equal(
      wireReason(() => nameAt(withPtr, base.length)),
      'name-too-long',
    );
  });

  test('exactly 255 octets is accepted', () => {
    const label = [63, ...new Array(63).fill(0x61)];
    const ok = msg(...label, ...label, ...label, 61, ...new Array(61).fill(0x62), 0); // 3*64+62+1 = 255
    assert.equal(nameAt(ok, 12).name.length, 63 * 3 + 61 + 3);
  });

  test('random bytes never hang or throw anything but WireError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 12, maxLength: 300 }), fc.nat(300), (bytes, at) => {
        const buf = Buffer.from(bytes);
        const start = 12 + (at % Math.max(1, buf.length - 12));
        try {
          const r = new WireReader(buf, start);
          const name = r.name();
          assert.ok(name.length <= 255 * 4);
          assert.ok(r.pos > start && r.pos <= buf.length);
        } catch (err) {
          assert.ok(err instanceof WireError, String(err));
        }
      }),
      { numRuns: 3000 },
    );
  });
});

describe('records', () => {
  test('rdata must fit in the message', () => {
    // root owner, type A, class IN, ttl, rdlength 4 but only 2 bytes follow
    const buf = msg(0, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2);
    assert.equal(
      wireReason(() => readRrHead(new WireReader(buf, 12))),
      'truncated',
    );
  });

  test('a TTL with the top bit set reads as 0 (RFC 2181)', () => {
    const buf = msg(0, 0, 1, 0, 1, 0x80, 0, 0, 1, 0, 4, 1, 2, 3, 4);
    assert.equal(readRrHead(new WireReader(buf, 12)).ttl, 0);
    const max = msg(0, 0, 1, 0, 1, 0x7f, 0xff, 0xff, 0xff, 0, 4, 1, 2, 3, 4);
    assert.equal(readRrHead(new WireReader(max, 12)).ttl, 0x7fffffff);
  });
});

describe('IPv6 text', () => {
  test('matches the canonical form Node (inet_ntop) gives', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.constant(0), fc.constant(0xffff), fc.integer({ min: 0, max: 0xffff })), {
          minLength: 8,
          maxLength: 8,
        }),
        (groups) => {
          const buf = Buffer.alloc(16);
          for (const [i, g] of groups.entries()) buf.writeUInt16BE(g, i * 2);
          const full = groups.map((g) => g.toString(16)).join(':');
          assert.equal(ipv6Text(buf, 0), SocketAddress.parse(`[${full}]:0`)?.address);
        },
      ),
      { numRuns: 5000 },
    );
    for (const text of [
      '::',
      '::1',
      '::ffff:1.2.3.4',
      '::1.2.3.4',
      '::0.1.0.0',
      '1::',
      '2001:db8::1',
      '::ffff:0:1',
    ]) {
      const bytes = Buffer.alloc(16);
      const sa = SocketAddress.parse(`[${text}]:0`)!;
      const words = expandForTest(sa.address);
      for (const [i, w] of words.entries()) bytes.writeUInt16BE(w, i * 2);
      assert.equal(ipv6Text(bytes, 0), sa.address, text);
    }
  });
});

function expandForTest(ip: string): number[] {
  let head = ip;
  let v4: number[] = [];
  const m = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(ip);
  if (m) {
    v4 = [(Number(m[1]) << 8) | Number(m[2]), (Number(m[3]) << 8) | Number(m[4])];
    head = ip.slice(0, m.index);
    if (head.endsWith(':') && !head.endsWith('::')) head = head.slice(0, -1);
  }
  const [l, r] = head.includes('::') ? head.split('::') : [head, null];
  const left = (l ?? '')
    .split(':')
    .filter((x) => x !== '')
    .map((x) => Number.parseInt(x, 16));
  const right =
    r === null
      ? []
      : (r ?? '')
          .split(':')
          .filter((x) => x !== '')
          .map((x) => Number.parseInt(x, 16));
  const fill = 8 - left.length - right.length - v4.length;
  return [...left, ...new Array(Math.max(0, fill)).fill(0), ...right, ...v4];
}
