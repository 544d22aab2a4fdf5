/**
 * CIDRs and address classes (docs/architecture.md "Answers never widen access beyond the internet";
 * security case DNS-21 and smokescreen's TestClassifyAddr class): parsing to canonical text,
 * host bits, both families, and which addresses a DNS answer may never open on its own.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  type AddressClass,
  type Cidr,
  CidrSet,
  canonicalIp,
  classifyAddress,
  ipFamily,
  ipToBytes,
  parseCidr,
} from '../../../src/core/ip.ts';

function cidr(text: string): Cidr {
  const c = parseCidr(text);
  if (typeof c === 'string') throw new Error(`${text} should parse: ${c}`);
  return c;
}

describe('parseCidr', () => {
  const accepted: Array<[string, string, number, 4 | 6]> = [
    ['10.0.0.0/8', '10.0.0.0/8', 8, 4],
    ['203.0.113.0/24', '203.0.113.0/24', 24, 4],
    ['0.0.0.0/0', '0.0.0.0/0', 0, 4],
    ['1.2.3.4', '1.2.3.4/32', 32, 4],
    ['1.2.3.4/32', '1.2.3.4/32', 32, 4],
    ['10.0.0.0/08', '10.0.0.0/8', 8, 4],
    ['2001:db8::/32', '2001:db8::/32', 32, 6],
    ['2001:DB8::/32', '2001:db8::/32', 32, 6],
    ['2001:0db8:0000:0000::/64', '2001:db8::/64', 64, 6],
    ['::/0', '::/0', 0, 6],
    ['::1', '::1/128', 128, 6],
    ['fe80::/10', 'fe80::/10', 10, 6],
    ['::ffff:1.2.3.4/128', '::ffff:1.2.3.4/128', 128, 6],
    ['64:ff9b::/96', '64:ff9b::/96', 96, 6],
    ['2001:db8:0:0:0:0:0:1/128', '2001:db8::1/128', 128, 6],
  ];
  for (const [text, canonical, prefix, family] of accepted) {
    test(`${text} -> ${canonical}`, () => {
      const c = cidr(text);
      assert.equal(c.text, canonical);
      assert.equal(c.prefix, prefix);
      assert.equal(c.family, family);
      assert.equal(c.text, `${c.address}/${c.prefix}`);
      // canonical text parses to itself
      assert.deepEqual(cidr(c.text), c);
    });
  }

  const rejected: Array<[string, RegExp]> = [
    ['10.0.0.1/8', /"10\.0\.0\.1\/8" has host bits set; write 10\.0\.0\.0\/8/],
    ['192.168.1.1/24', /host bits set; write 192\.168\.1\.0\/24/],
    ['10.128.0.0/8', /write 10\.0\.0\.0\/8/],
    ['1.2.3.4/0', /write 0\.0\.0\.0\/0/],
    ['2001:db8::1/32', /host bits set; write 2001:db8::\/32/],
    ['fe80::1/10', /write fe80::\/10/],
    ['10.0.0.0/33', /prefix length 33 is longer than 32/],
    ['::/129', /prefix length 129 is longer than 128/],
    ['10.0.0.0/', /prefix length "" is not a number/],
    ['10.0.0.0/-1', /prefix length "-1" is not a number/],
    ['10.0.0.0/8/8', /is not a number/],
    ['10.0.0.0/ 8', /is not a number/],
    ['10.0.0.0/1000', /is not a number/],
    ['10.0.0/8', /"10\.0\.0" is not an IP address/],
    ['010.0.0.0/8', /is not an IP address/],
    ['256.0.0.0/8', /is not an IP address/],
    ['example.com/24', /"example\.com" is not an IP address/],
    ['', /is not an IP address/],
    ['/8', /"" is not an IP address/],
    [' 10.0.0.0/8', /is not an IP address/],
    ['fe80::1%eth0/128', /is not an IP address/],
    ['[::1]/128', /is not an IP address/],
    ['2001:db8:::/48', /is not an IP address/],
  ];
  for (const [text, message] of rejected) {
    test(`${JSON.stringify(text)} is rejected`, () => {
      const c = parseCidr(text);
      assert.equal(typeof c, 'string', `${text} -> ${JSON.stringify(c)}`);
      assert.match(c as string, message);
    });
  }

  test('every prefix of both families: masking gives a network that parses back to itself', () => {
    fc.assert(
      fc.property(fc.ipV4(), fc.integer({ min: 0, max: 32 }), (ip, prefix) => {
        const r = parseCidr(`${ip}/${prefix}`);
        const network = typeof r === 'string' ? /write (\S+)$/.exec(r)?.[1] : r.text;
        assert.ok(network, String(r));
        const c = cidr(network);
        assert.equal(c.prefix, prefix);
        assert.ok(new CidrSet([c]).has(ip), `${network} should contain ${ip}`);
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.ipV6(), fc.integer({ min: 0, max: 128 }), (ip, prefix) => {
        const r = parseCidr(`${ip}/${prefix}`);
        const network = typeof r === 'string' ? /write (\S+)$/.exec(r)?.[1] : r.text;
        assert.ok(network, String(r));
        const c = cidr(network);
        assert.equal(c.prefix, prefix);
        assert.ok(new CidrSet([c]).has(canonicalIp(ip) ?? ip), `${network} should contain ${ip}`);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('canonicalIp, ipFamily, ipToBytes', () => {
  test('canonical text', () => {
    assert.equal(canonicalIp('1.2.3.4'), '1.2.3.4');
    assert.equal(canonicalIp('2001:DB8:0:0::1'), '2001:db8::1');
    assert.equal(canonicalIp('::FFFF:1.2.3.4'), '::ffff:1.2.3.4');
    assert.equal(canonicalIp('example.com'), null);
    assert.equal(canonicalIp('1.2.3'), null);
    assert.equal(canonicalIp(''), null);
  });

  test('family and bytes', () => {
    assert.equal(ipFamily('1.2.3.4'), 4);
    assert.equal(ipFamily('::1'), 6);
    assert.deepEqual(ipToBytes('10.1.2.3'), [10, 1, 2, 3]);
    assert.deepEqual(ipToBytes('::1'), [...new Array(15).fill(0), 1]);
    assert.deepEqual(ipToBytes('::ffff:1.2.3.4'), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4]);
    assert.deepEqual(
      ipToBytes('2001:db8::8:9'),
      [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 9],
    );
  });
});

describe('CidrSet', () => {
  test('containment at the edges of a range', () => {
    const set = new CidrSet([cidr('203.0.113.0/24'), cidr('2001:db8:1::/48')]);
    assert.equal(set.has('203.0.113.0'), true);
    assert.equal(set.has('203.0.113.255'), true);
    assert.equal(set.has('203.0.112.255'), false);
    assert.equal(set.has('203.0.114.0'), false);
    assert.equal(set.has('2001:db8:1::'), true);
    assert.equal(set.has('2001:db8:1:ffff:ffff:ffff:ffff:ffff'), true);
    assert.equal(set.has('2001:db8:2::'), false);
  });

  test('families never leak into each other (::/96 does not hold IPv4, 0.0.0.0/0 does not hold IPv6)', () => {
    const v6 = new CidrSet([cidr('::/96'), cidr('::ffff:0:0/96')]);
    assert.equal(v6.has('1.2.3.4'), false);
    assert.equal(v6.has('::ffff:1.2.3.4'), true);
    const v4 = new CidrSet([cidr('0.0.0.0/0')]);
    assert.equal(v4.has('::ffff:1.2.3.4'), false);
    assert.equal(v4.has('2001:db8::1'), false);
    assert.equal(v4.has('8.8.8.8'), true);
  });

  test('an empty set holds nothing', () => {
    assert.equal(new CidrSet([]).has('1.2.3.4'), false);
    assert.equal(new CidrSet([]).has('::1'), false);
  });
});

describe('classifyAddress: what a DNS answer may never open on its own', () => {
  const table: Array<[string, AddressClass]> = [
    // RFC 1918, both sides of each edge
    ['10.0.0.0', 'private'],
    ['10.255.255.255', 'private'],
    ['9.255.255.255', 'public'],
    ['11.0.0.0', 'public'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['172.15.255.255', 'public'],
    ['172.32.0.0', 'public'],
    ['192.168.0.1', 'private'],
    ['192.167.255.255', 'public'],
    ['192.169.0.0', 'public'],
    // CGNAT 100.64.0.0/10 and its edges
    ['100.63.255.254', 'public'],
    ['100.63.255.255', 'public'],
    ['100.64.0.0', 'cgnat'],
    ['100.64.0.1', 'cgnat'],
    ['100.127.255.255', 'cgnat'],
    ['100.128.0.0', 'public'],
    ['100.128.0.1', 'public'],
    // loopback and unspecified
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['127.1.2.3', 'loopback'],
    ['128.0.0.0', 'public'],
    ['::1', 'loopback'],
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'unspecified'],
    ['::', 'unspecified'],
    // link-local, cloud metadata
    ['169.254.169.254', 'link-local'],
    ['169.254.0.0', 'link-local'],
    ['169.253.255.255', 'public'],
    ['fe80::1', 'link-local'],
    ['fe80::a9fe:a9fe', 'link-local'],
    ['febf:ffff::1', 'link-local'],
    ['fec0::1', 'public'],
    // multicast and broadcast
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['ff02::2', 'multicast'],
    ['ff05::1:3', 'multicast'],
    ['255.255.255.255', 'reserved'],
    ['240.0.0.1', 'reserved'],
    // IETF protocol assignments and benchmarking
    ['192.0.0.8', 'reserved'],
    ['198.18.0.1', 'reserved'],
    ['198.19.255.255', 'reserved'],
    ['198.20.0.0', 'public'],
    // unique local IPv6
    ['fc00::1', 'private'],
    ['fd12:3456::1', 'private'],
    // IPv6 forms that carry an IPv4 address (NAT64, 6to4, Teredo, mapped, compatible)
    ['64:ff9b::a9fe:a9fe', 'ipv4-embedded'],
    ['64:ff9b::808:808', 'ipv4-embedded'],
    ['64:ff9b:1::a00:1', 'ipv4-embedded'],
    ['2002:a9fe:a9fe::1', 'ipv4-embedded'],
    ['2002:808:808::1', 'ipv4-embedded'],
    ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'ipv4-embedded'],
    ['::ffff:127.0.0.1', 'ipv4-embedded'],
    ['::ffff:169.254.169.254', 'ipv4-embedded'],
    ['::FFFF:10.0.0.1', 'ipv4-embedded'],
    ['::ffff:8.8.8.8', 'ipv4-embedded'],
    ['::127.0.0.1', 'ipv4-embedded'],
    ['::a9fe:a9fe', 'ipv4-embedded'],
    ['100::1', 'reserved'],
    // documentation ranges are public: they are routable addresses in tests and the lab
    ['192.0.2.1', 'public'],
    ['198.51.100.7', 'public'],
    ['203.0.113.9', 'public'],
    ['2001:db8::1', 'public'],
    // ordinary internet addresses
    ['8.8.8.8', 'public'],
    ['1.1.1.1', 'public'],
    ['93.184.216.34', 'public'],
    ['2606:4700:4700::1111', 'public'],
    ['2a00:1450:4001::200e', 'public'],
    ['2001:1::1', 'public'],
    // not an address at all: fail closed
    ['example.com', 'reserved'],
    ['', 'reserved'],
    ['1.2.3', 'reserved'],
  ];
  for (const [ip, cls] of table) {
    test(`${ip || '(empty)'} is ${cls}`, () => assert.equal(classifyAddress(ip), cls));
  }

  test('a zone index does not hide a link-local address', () => {
    assert.equal(classifyAddress('fe80::1%eth0'), 'link-local');
  });

  test('every IPv4-mapped address is ipv4-embedded, whatever IPv4 address it carries', () => {
    fc.assert(
      fc.property(fc.ipV4(), (ip) => {
        assert.equal(classifyAddress(`::ffff:${ip}`), 'ipv4-embedded');
      }),
      { numRuns: 500 },
    );
  });

  test('never throws on arbitrary text', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.ipV4Extended(), fc.ipV6()), (text) => {
        classifyAddress(text);
      }),
      { numRuns: 2000 },
    );
  });
});
