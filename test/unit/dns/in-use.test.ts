/**
 * What is in use is never evicted, with "in use" read ahead: the pipeline asks its in-use source
 * to read (conntrack, in the agent) only for an answer that has to make room, and the store then
 * spares what the listing shows live.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { A, harness, query, reply } from './helpers.ts';

const WEB = '10.0.1.5';
const NAME = 'api.example.com';

test('TIME-06: an answer at the per-name cap reads what is in use first and evicts only what is not', async () => {
  const live = new Set<string>();
  const prepared: string[] = [];
  let listing = new Set<string>();
  const h = harness({
    limits: { maxIpsPerName: 2, maxIpsPerSource: 100, maxEntries: 1000 },
    inUseSource: {
      prepare: async (source) => {
        prepared.push(source);
        listing = new Set(live);
      },
      inUse: (_source, ip) => listing.has(ip),
    },
  });
  let ip = '';
  h.upstream = () => reply(NAME, 'A', [A(NAME, ip)]);
  for (const next of ['198.51.100.1', '198.51.100.2']) {
    ip = next;
    await h.ask(WEB, query(NAME));
    h.clock.advance(1000);
  }
  assert.deepEqual(prepared, [], 'below the cap nothing is read');
  // A live connection to the oldest address; the next answer has to make room.
  live.add('198.51.100.1');
  ip = '198.51.100.3';
  await h.ask(WEB, query(NAME));
  assert.deepEqual(prepared, [WEB]);
  assert.deepEqual(h.store.lookup(WEB, NAME, h.clock.now()).sort(), ['198.51.100.1', '198.51.100.3']);
  assert.ok(h.datapath.allows(WEB, '198.51.100.1', 'TCP', 443), 'the address in use keeps its element');
  assert.ok(!h.datapath.allows(WEB, '198.51.100.2', 'TCP', 443));
  // A repeated answer needs no room: nothing is read.
  await h.ask(WEB, query(NAME));
  assert.equal(prepared.length, 1);
});
