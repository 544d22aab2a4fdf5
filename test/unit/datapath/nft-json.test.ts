import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { kernelElementText } from '../../../src/datapath/nft-elements.ts';
import { parseElement, parseSet, parseTable } from '../../../src/datapath/nft-json.ts';

// Shapes as nft 1.0.6 prints them.
const TABLE = JSON.stringify({
  nftables: [
    { metainfo: { version: '1.0.6', json_schema_version: 1 } },
    { table: { family: 'inet', name: 'namegate', handle: 2 } },
    {
      set: {
        family: 'inet',
        name: 'drops4',
        table: 'namegate',
        type: 'ipv4_addr',
        handle: 11,
        size: 65536,
        stmt: [{ counter: null }],
      },
    },
    {
      set: {
        family: 'inet',
        name: 'allow4',
        table: 'namegate',
        type: ['ipv4_addr', 'ipv4_addr', 'inet_proto', 'inet_service'],
        handle: 12,
        size: 262144,
        flags: ['timeout', 'interval'],
      },
    },
    {
      chain: {
        family: 'inet',
        table: 'namegate',
        name: 'filter_forward',
        handle: 1,
        type: 'filter',
        hook: 'forward',
        prio: 0,
        policy: 'accept',
      },
    },
    { chain: { family: 'inet', table: 'namegate', name: 'governed', handle: 3 } },
  ],
});

test('table: sets and chains with their definitions', () => {
  const t = parseTable(TABLE);
  assert.deepEqual(t.sets.get('drops4'), {
    name: 'drops4',
    type: ['ipv4_addr'],
    flags: [],
    size: 65536,
    counter: true,
    elements: [],
  });
  assert.deepEqual(t.sets.get('allow4')?.flags, ['interval', 'timeout']);
  assert.deepEqual(t.chains.get('filter_forward')?.base, {
    type: 'filter',
    hook: 'forward',
    priority: 0,
    policy: 'accept',
  });
  assert.equal(t.chains.get('governed')?.base, null);
});

test('elements: concat with ranges, prefixes, counters and timeouts', () => {
  const type = ['ipv6_addr', 'ipv6_addr', 'inet_proto', 'inet_service'];
  const a = parseElement(type, {
    concat: ['2001:db8::1', { prefix: { addr: '2001:db8:1::', len: 112 } }, 'tcp', { range: [1, 5] }],
  });
  assert.equal(kernelElementText(a), '2001:db8::1 . 2001:db8:1::-2001:db8:1::ffff . tcp . 1-5');
  const b = parseElement(['ipv4_addr', 'ipv4_addr', 'inet_proto', 'inet_service'], {
    elem: { val: { concat: ['10.0.0.1', '1.2.3.4', 'udp', 53] }, timeout: 60, expires: 59 },
  });
  assert.equal(kernelElementText(b), '10.0.0.1 . 1.2.3.4 . udp . 53');
  assert.equal(b.expiresS, 59);
  const c = parseElement(['ipv4_addr'], { elem: { val: '10.0.0.1', counter: { packets: 26, bytes: 1436 } } });
  assert.equal(c.packets, 26);
  const d = parseElement(['ipv4_addr', 'inet_service'], {
    concat: [{ range: ['10.0.0.1', '10.0.0.9'] }, 443],
  });
  assert.equal(kernelElementText(d), '10.0.0.1-10.0.0.9 . 443');
});

test('malformed output is a NamegateError, never a crash (property)', () => {
  fc.assert(
    fc.property(fc.jsonValue(), (v) => {
      try {
        parseSet(
          JSON.stringify({
            nftables: [{ set: { name: 's', type: ['ipv4_addr', 'inet_service'], elem: [v] } }],
          }),
        );
        const s = parseSet(
          JSON.stringify({
            nftables: [{ set: { name: 's', type: ['ipv4_addr', 'inet_service'], elem: [v] } }],
          }),
        );
        for (const e of s.elements) parseElement(s.type, e);
      } catch (e) {
        return (e as { code?: string }).code === 'NG_DATAPATH_COMMIT';
      }
      return true;
    }),
  );
  assert.throws(() => parseTable('not json'), /unexpected nft JSON/);
  assert.throws(() => parseTable('{}'), /no "nftables" array/);
});
