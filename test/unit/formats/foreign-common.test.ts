/** The helpers every importer shares: port spans, CIDRs, pattern options, bounded readers. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseCidr } from '../../../src/core/ip.ts';
import {
  admitPattern,
  Conversion,
  EVERY_PORT,
  lastAddress,
  memberName,
  nativePorts,
  neverLearned,
  PatternFlags,
  readCidr,
  readList,
} from '../../../src/formats/foreign-common.ts';

function cidr(text: string) {
  const c = parseCidr(text);
  assert.ok(typeof c !== 'string', text);
  return c;
}

describe('nativePorts', () => {
  test('every port of both protocols is the empty native list (undefined)', () => {
    assert.equal(nativePorts(EVERY_PORT), undefined);
  });
  test('merges overlapping and adjacent spans per protocol, single ports without endPort', () => {
    assert.deepEqual(
      nativePorts([
        { protocol: 'TCP', from: 80, to: 80 },
        { protocol: 'TCP', from: 81, to: 90 },
        { protocol: 'TCP', from: 85, to: 100 },
        { protocol: 'UDP', from: 53, to: 53 },
        { protocol: 'TCP', from: 443, to: 443 },
      ]),
      [
        { port: 80, endPort: 100, protocol: 'TCP' },
        { port: 443, protocol: 'TCP' },
        { port: 53, protocol: 'UDP' },
      ],
    );
  });
  test('every TCP port alone stays a range', () => {
    assert.deepEqual(nativePorts([{ protocol: 'TCP', from: 1, to: 65535 }]), [
      { port: 1, endPort: 65535, protocol: 'TCP' },
    ]);
  });
});

describe('CIDR helpers', () => {
  test('lastAddress', () => {
    assert.equal(lastAddress(cidr('10.0.0.0/8')), '10.255.255.255');
    assert.equal(lastAddress(cidr('192.0.2.128/25')), '192.0.2.255');
    assert.equal(lastAddress(cidr('192.0.2.7/32')), '192.0.2.7');
    assert.equal(lastAddress(cidr('2001:db8::/32')), '2001:db8:ffff:ffff:ffff:ffff:ffff:ffff');
  });
  test('neverLearned: a whole range in one non-public class', () => {
    assert.equal(neverLearned(cidr('169.254.169.254/32')), true);
    assert.equal(neverLearned(cidr('10.0.0.0/8')), true);
    assert.equal(neverLearned(cidr('fd00::/8')), true);
    assert.equal(neverLearned(cidr('10.0.0.0/7')), false);
    assert.equal(neverLearned(cidr('0.0.0.0/0')), false);
    assert.equal(neverLearned(cidr('198.51.100.0/24')), false);
  });
  test('readCidr masks host bits with a warning and rejects nonsense with an error', () => {
    const c = new Conversion();
    assert.equal(readCidr(c, '10.1.2.3/8', 'a')?.text, '10.0.0.0/8');
    assert.equal(readCidr(c, '192.0.2.1', 'b')?.text, '192.0.2.1/32');
    assert.equal(readCidr(c, '10.0.0.0/33', 'c'), undefined);
    assert.equal(readCidr(c, 42, 'd'), undefined);
    assert.deepEqual(
      c.warnings.map((w) => w.path),
      ['a'],
    );
    assert.deepEqual(
      c.errors.map((e) => e.path),
      ['c', 'd'],
    );
  });
});

describe('admitPattern', () => {
  const table: Array<[string, boolean, boolean]> = [
    ['api.example.com', false, false],
    ['*.example.com', false, false],
    ['**.example.com', false, false],
    ['a*b.example.com', true, false],
    ['*.com', false, true],
    ['**', false, true],
    ['part*ial.com', true, true],
  ];
  for (const [text, partial, publicSuffix] of table) {
    test(`${text} needs partial=${partial} publicSuffix=${publicSuffix}`, () => {
      const c = new Conversion();
      const flags = new PatternFlags();
      assert.equal(admitPattern(c, text, 'p', flags, 'X'), true);
      assert.equal(flags.partial, partial);
      assert.equal(flags.publicSuffix, publicSuffix);
      assert.equal(c.warnings.length, publicSuffix ? 1 : 0);
    });
  }
  test('an invalid name is an error with its path', () => {
    const c = new Conversion();
    assert.equal(admitPattern(c, 'a..b', 'x.y', new PatternFlags(), 'X'), false);
    assert.equal(c.errors[0]?.path, 'x.y');
  });
});

describe('readers and names', () => {
  test('readList: absent is empty, a scalar is an error, too many entries is an error', () => {
    const c = new Conversion();
    assert.deepEqual(readList(c, undefined, 'a'), []);
    assert.deepEqual(readList(c, null, 'b'), []);
    assert.equal(readList(c, 'x', 'c'), undefined);
    assert.equal(readList(c, [1, 2, 3], 'd', 2), undefined);
    assert.deepEqual(
      c.errors.map((e) => e.path),
      ['c', 'd'],
    );
  });
  test('memberName', () => {
    assert.equal(memberName('p', 1, 1), 'p');
    assert.equal(memberName('p', 2, 3), 'p-2');
  });
  test('a conversion with errors returns no documents', () => {
    const c = new Conversion();
    c.error('spec', 'broken');
    assert.deepEqual(c.result([{} as never]).documents, []);
  });
});
