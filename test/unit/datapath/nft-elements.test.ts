import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { parseCidr } from '../../../src/core/ip.ts';
import {
  addLearnedCommands,
  diffTexts,
  disjointBoxes,
  elementKeyText,
  mergePorts,
  parseDropComment,
  removeLearnedCommands,
  StaticStateError,
  staticElementCommands,
  staticElements,
  timeoutText,
} from '../../../src/datapath/nft-elements.ts';

function cidr(text: string) {
  const c = parseCidr(text);
  if (typeof c === 'string') throw new Error(c);
  return c;
}

test('timeouts are whole ms and never 0', () => {
  assert.equal(timeoutText(0), '1ms');
  assert.equal(timeoutText(-10), '1ms');
  assert.equal(timeoutText(1500.2), '1501ms');
});

test('learned commands: per set, add then delete for removal', () => {
  const add = addLearnedCommands('namegate', [
    {
      kind: 'port',
      e: { source: '10.0.0.1', destination: '1.2.3.4', protocol: 'TCP', from: 443, to: 443 },
      timeoutMs: 30_000,
    },
    {
      kind: 'range',
      e: { source: 'fd00::1', destination: '2001:db8::1', protocol: 'UDP', from: 1000, to: 2000 },
      timeoutMs: 5_000,
    },
    {
      kind: 'all',
      e: { source: '10.0.0.1', destination: '1.2.3.5', protocol: 'UDP', from: 0, to: 65535 },
      timeoutMs: 1_000,
    },
  ]);
  assert.deepEqual(add, [
    'add element inet namegate allow4 { 10.0.0.1 . 1.2.3.4 . tcp . 443 timeout 30000ms expires 30000ms }',
    'add element inet namegate allowrange6 { fd00::1 . 2001:db8::1 . udp . 1000-2000 timeout 5000ms expires 5000ms }',
    'add element inet namegate allowall4 { 10.0.0.1 . 1.2.3.5 . udp timeout 1000ms expires 1000ms }',
  ]);
  const rm = removeLearnedCommands('namegate', [
    { kind: 'range', e: { source: '10.0.0.1', destination: '1.2.3.4', protocol: 'TCP', from: 1, to: 2 } },
  ]);
  assert.deepEqual(rm, [
    'add element inet namegate allowrange4 { 10.0.0.1 . 1.2.3.4 . tcp . 1-2 timeout 1s }',
    'delete element inet namegate allowrange4 { 10.0.0.1 . 1.2.3.4 . tcp . 1-2 }',
  ]);
});

test('static elements: Enforce wins over Audit; drop counters for every governed source', () => {
  const s = staticElements({
    sources: [
      { ip: '10.0.0.1', mode: 'Audit' },
      { ip: '10.0.0.1', mode: 'Enforce' },
      { ip: '10.0.0.2', mode: 'Audit' },
      { ip: 'FD00::0001', mode: 'Enforce' },
    ],
    cidrs: [],
    verify: [
      { source: '10.0.0.1', protocol: 'TCP', portFrom: 443, portTo: 443 },
      { source: '10.0.0.1', protocol: 'TCP', portFrom: 440, portTo: 450 },
      { source: '10.0.0.1', protocol: 'TCP', portFrom: 451, portTo: 451 },
    ],
  });
  assert.deepEqual([...(s.get('enforce4') ?? [])], ['10.0.0.1']);
  assert.deepEqual([...(s.get('audit4') ?? [])], ['10.0.0.2']);
  assert.deepEqual([...(s.get('drops4') ?? [])].sort(), [
    '10.0.0.1 comment "Enforce 10.0.0.1"',
    '10.0.0.2 comment "Audit 10.0.0.2"',
  ]);
  assert.deepEqual([...(s.get('enforce6') ?? [])], ['fd00::1']);
  assert.deepEqual([...(s.get('verify4') ?? [])], ['10.0.0.1 . 440-451']);
});

test('static elements: CIDR minus except, made disjoint', () => {
  const s = staticElements({
    sources: [{ ip: '10.0.0.1', mode: 'Enforce' }],
    cidrs: [
      {
        source: '10.0.0.1',
        cidr: cidr('203.0.113.0/24'),
        except: [cidr('203.0.113.128/25')],
        protocol: 'TCP',
        portFrom: 443,
        portTo: 443,
      },
      {
        source: '10.0.0.1',
        cidr: cidr('203.0.113.0/25'),
        except: [],
        protocol: 'TCP',
        portFrom: 0,
        portTo: 65535,
      },
    ],
    verify: [],
  });
  assert.deepEqual([...(s.get('cidr4') ?? [])].sort(), [
    '10.0.0.1 . 203.0.113.0-203.0.113.127 . tcp . 0-65535',
  ]);
});

test('static elements: malformed input throws StaticStateError', () => {
  assert.throws(
    () => staticElements({ sources: [{ ip: 'not-an-ip', mode: 'Enforce' }], cidrs: [], verify: [] }),
    StaticStateError,
  );
  assert.throws(
    () =>
      staticElements({
        sources: [],
        cidrs: [
          {
            source: '10.0.0.1',
            cidr: cidr('2001:db8::/32'),
            except: [],
            protocol: 'TCP',
            portFrom: 1,
            portTo: 1,
          },
        ],
        verify: [],
      }),
    /family/,
  );
  assert.throws(
    () =>
      staticElements({
        sources: [],
        cidrs: [],
        verify: [{ source: '10.0.0.1', protocol: 'TCP', portFrom: 9, portTo: 3 }],
      }),
    /port range/,
  );
});

test('disjointBoxes: same coverage, no two boxes overlap (property)', () => {
  const box = fc
    .tuple(
      fc.integer({ min: 0, max: 15 }),
      fc.integer({ min: 0, max: 15 }),
      fc.integer({ min: 0, max: 9 }),
      fc.integer({ min: 0, max: 9 }),
    )
    .map(([a, b, p, q]) => ({
      dst: { family: 4 as 4 | 6, start: BigInt(Math.min(a, b)), end: BigInt(Math.max(a, b)) },
      from: Math.min(p, q),
      to: Math.max(p, q),
    }));
  fc.assert(
    fc.property(fc.array(box, { maxLength: 6 }), (boxes) => {
      const out = disjointBoxes(boxes);
      const covers = (bs: typeof boxes, d: number, p: number) =>
        bs.filter((b) => BigInt(d) >= b.dst.start && BigInt(d) <= b.dst.end && p >= b.from && p <= b.to)
          .length;
      for (let d = 0; d <= 15; d++) {
        for (let p = 0; p <= 9; p++) {
          const n = covers(out, d, p);
          if (n > 1) return false;
          if ((n === 1) !== covers(boxes, d, p) > 0) return false;
        }
      }
      return true;
    }),
  );
});

test('mergePorts and diffTexts', () => {
  assert.deepEqual(
    mergePorts([
      { from: 5, to: 9 },
      { from: 1, to: 4 },
      { from: 20, to: 20 },
    ]),
    [
      { from: 1, to: 9 },
      { from: 20, to: 20 },
    ],
  );
  assert.deepEqual(diffTexts(new Set(['a', 'b']), new Set(['b', 'c'])), { add: ['a'], remove: ['c'] });
});

test('StaticStateError is an Error', () => {
  assert.ok(new StaticStateError('x') instanceof Error);
});

test('CIDR sources: longest prefix owns; the /24 allows and verify ports skip the /32 carved out', () => {
  const s = staticElements({
    sources: [
      { ip: '10.0.1.0/24', mode: 'Enforce' },
      { ip: '10.0.1.2/32', mode: 'Audit' },
      { ip: '10.0.1.3', mode: 'Enforce' },
    ],
    cidrs: [
      {
        source: '10.0.1.0/24',
        cidr: cidr('203.0.113.0/24'),
        except: [],
        protocol: 'TCP',
        portFrom: 443,
        portTo: 443,
      },
      {
        source: '10.0.1.2',
        cidr: cidr('198.51.100.7/32'),
        except: [],
        protocol: 'UDP',
        portFrom: 53,
        portTo: 53,
      },
      // Not governed: left out.
      {
        source: '10.9.0.0/16',
        cidr: cidr('1.1.1.1/32'),
        except: [],
        protocol: 'TCP',
        portFrom: 1,
        portTo: 1,
      },
    ],
    verify: [
      { source: '10.0.1.0/24', protocol: 'TCP', portFrom: 8443, portTo: 8443 },
      { source: '10.0.1.3/32', protocol: 'TCP', portFrom: 443, portTo: 443 },
    ],
  });
  // Single addresses in the hash sets, wider ranges in the interval sets.
  assert.deepEqual([...(s.get('enforce4') ?? [])], []);
  assert.deepEqual([...(s.get('enforcenet4') ?? [])], ['10.0.1.0-10.0.1.1', '10.0.1.3-10.0.1.255']);
  assert.deepEqual([...(s.get('audit4') ?? [])], ['10.0.1.2']);
  assert.deepEqual([...(s.get('auditnet4') ?? [])], []);
  assert.deepEqual(
    [...(s.get('drops4') ?? [])],
    ['10.0.1.2 comment "Audit 10.0.1.2"', '10.0.1.3 comment "Enforce 10.0.1.3"'],
  );
  assert.deepEqual(
    [...(s.get('dropsnet4') ?? [])],
    ['10.0.1.0-10.0.1.1 comment "Enforce 10.0.1.0/24"', '10.0.1.4-10.0.1.255 comment "Enforce 10.0.1.0/24"'],
  );
  assert.deepEqual(
    [...(s.get('cidr4') ?? [])].sort(),
    [
      '10.0.1.0-10.0.1.1 . 203.0.113.0-203.0.113.255 . tcp . 443',
      '10.0.1.2 . 198.51.100.7 . udp . 53',
      '10.0.1.4-10.0.1.255 . 203.0.113.0-203.0.113.255 . tcp . 443',
    ].sort(),
  );
  assert.deepEqual(
    [...(s.get('verify4') ?? [])].sort(),
    ['10.0.1.0-10.0.1.1 . 8443', '10.0.1.3 . 443', '10.0.1.4-10.0.1.255 . 8443'].sort(),
  );
});

test('ungoverned prefixes are carved out of governed ones', () => {
  const s = staticElements({
    sources: [{ ip: '10.0.1.0/24', mode: 'Enforce' }],
    cidrs: [],
    verify: [],
    ungoverned: ['10.0.1.128/25', '10.0.1.0/24'],
  });
  assert.deepEqual([...(s.get('enforcenet4') ?? [])], ['10.0.1.0-10.0.1.127']);
  assert.throws(
    () => staticElements({ sources: [], cidrs: [], verify: [], ungoverned: ['10.0.1.1/24'] }),
    StaticStateError,
  );
});

test('element comments: only in add commands; delete takes the key', () => {
  assert.equal(elementKeyText('10.0.1.2 comment "Audit 10.0.1.2"'), '10.0.1.2');
  assert.equal(elementKeyText('10.0.1.2'), '10.0.1.2');
  assert.deepEqual(parseDropComment('Enforce 10.0.1.0/24'), { mode: 'Enforce', owner: '10.0.1.0/24' });
  assert.equal(parseDropComment('something else'), null);
  assert.equal(parseDropComment(null), null);
  assert.deepEqual(
    staticElementCommands('delete', 'namegate', 'drops4', ['10.0.1.2 comment "Audit 10.0.1.2"']),
    ['delete element inet namegate drops4 { 10.0.1.2 }'],
  );
  assert.deepEqual(
    staticElementCommands('add', 'namegate', 'drops4', ['10.0.1.2 comment "Audit 10.0.1.2"']),
    ['add element inet namegate drops4 { 10.0.1.2 comment "Audit 10.0.1.2" }'],
  );
});
