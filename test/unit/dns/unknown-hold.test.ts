/**
 * The hold for queries of unknown sources inside the source CIDRs (src/dns/unknown-hold.ts),
 * through the pipeline: a new pod's first query waits for its identity instead of being refused,
 * fail closed (nothing forwarded before the identity, refused at the deadline), bounded in count.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { unknownScopeFrom } from '../../../src/dns/route.ts';
import { StaticGroups } from '../../../src/identity/static-groups.ts';
import { A, GROUPS, harness, query, rcodeOf, reply } from './helpers.ts';

const NEW_POD = '10.0.7.5';
const OTHER = '10.0.7.6';
const OUTSIDE = '192.0.2.200';
const SCOPE = unknownScopeFrom(['10.0.0.0/16']);
const NEW_GROUP = { name: 'new-web', namespace: 'shop', labels: { app: 'web' }, cidrs: [`${NEW_POD}/32`] };

/** A promise's state without waiting for it: run the queued callbacks first. */
async function settledYet(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => {
    done = true;
  });
  await new Promise((r) => setImmediate(r));
  return done;
}

function setup(
  hold: { timeoutMs?: number; max?: number; maxPerSource?: number } = {},
  settled?: () => Promise<unknown>,
) {
  const identities = new StaticGroups(GROUPS);
  const h = harness({
    settings: { ...SCOPE, unknownSources: 'refuse' },
    identities,
    unknownHold: {
      settings: { timeoutMs: 60_000, max: 100, maxPerSource: 10, ...hold },
      ...(settled ? { settled } : {}),
    },
  });
  h.upstream = (u) => reply(u.question.name, 'A', [A(u.question.name, '198.51.100.30')]);
  return { h, identities };
}

describe('unknown sources inside the source CIDRs wait for their identity', () => {
  test('K8S-04: a new pod query is held, nothing forwarded, until its identity arrives; then judged by policy', async () => {
    const { h, identities } = setup();
    const answer = h.ask(NEW_POD, query('api.example.com'));
    assert.equal(await settledYet(answer), false, 'held');
    assert.equal(h.upstreamCalls.length, 0, 'nothing forwarded for an unknown source');
    identities.replace([...GROUPS, NEW_GROUP]);
    assert.equal(rcodeOf(await answer), 0);
    assert.equal(h.lines.at(-1)!['verdict'], 'allow');
    assert.equal(h.lines.at(-1)!['identity'], 'group:new-web');
    assert.deepEqual(
      [...h.store.entries()].map((e) => [e.source, e.ip]),
      [[NEW_POD, '198.51.100.30']],
    );
    assert.equal(await h.metric('namegate_dns_unknown_holds_total', { result: 'identified' }), 1);
    // A denied name of the same (now known) source is refused as usual.
    assert.equal(rcodeOf(await h.ask(NEW_POD, query('evil.example.com'))), 5);
  });

  test('K8S-04: the deadline passes with no identity -> REFUSED (unknown_source_timeout), nothing forwarded', async () => {
    const { h } = setup({ timeoutMs: 5 });
    assert.equal(rcodeOf(await h.ask(NEW_POD, query('api.example.com'))), 5);
    assert.equal(h.lines.at(-1)!['reason'], 'unknown_source_timeout');
    assert.equal(h.upstreamCalls.length, 0);
    assert.equal(h.store.size, 0);
    assert.equal(await h.metric('namegate_dns_unknown_holds_total', { result: 'timeout' }), 1);
  });

  test('bounded: past maxPerSource or max, refused at once (unknown_hold_full)', async () => {
    const { h, identities } = setup({ max: 3, maxPerSource: 2 });
    const held = [h.ask(NEW_POD, query('api.example.com')), h.ask(NEW_POD, query('api.example.com'))];
    assert.equal(rcodeOf(await h.ask(NEW_POD, query('api.example.com'))), 5, 'third of one source');
    assert.equal(h.lines.at(-1)!['reason'], 'unknown_hold_full');
    held.push(h.ask(OTHER, query('api.example.com')));
    assert.equal(rcodeOf(await h.ask('10.0.7.7', query('api.example.com'))), 5, 'fourth in all');
    assert.equal(h.lines.at(-1)!['reason'], 'unknown_hold_full');
    assert.equal(await h.metric('namegate_dns_unknown_holds_total', { result: 'full' }), 2);
    identities.replace([...GROUPS, NEW_GROUP, { ...NEW_GROUP, name: 'other', cidrs: [`${OTHER}/32`] }]);
    for (const r of await Promise.all(held)) assert.equal(rcodeOf(r), 0);
  });

  test('the answer waits for the kernel to hold the new identity (settled)', async () => {
    let kernel!: () => void;
    let asked = 0;
    const { h, identities } = setup({}, () => {
      asked++;
      return new Promise<void>((r) => {
        kernel = r;
      });
    });
    const answer = h.ask(NEW_POD, query('api.example.com'));
    identities.replace([...GROUPS, NEW_GROUP]);
    assert.equal(asked, 1);
    assert.equal(await settledYet(answer), false, 'known, but the kernel does not hold it yet');
    assert.equal(h.upstreamCalls.length, 0);
    kernel();
    assert.equal(rcodeOf(await answer), 0);
  });

  test('a pod gone again before the kernel held it: refused, never judged by its old identity', async () => {
    let kernel!: () => void;
    const { h, identities } = setup({}, () => new Promise<void>((r) => (kernel = r)));
    const answer = h.ask(NEW_POD, query('api.example.com'));
    identities.replace([...GROUPS, NEW_GROUP]);
    identities.replace(GROUPS);
    kernel();
    assert.equal(rcodeOf(await answer), 5);
    assert.equal(h.lines.at(-1)!['reason'], 'unknown_source');
    assert.equal(h.upstreamCalls.length, 0);
    assert.equal(await h.metric('namegate_dns_unknown_holds_total', { result: 'gone' }), 1);
  });

  test('outside the source CIDRs, and with the hold off, nothing is held (as before)', async () => {
    const { h } = setup();
    assert.equal(rcodeOf(await h.ask(OUTSIDE, query('api.example.com'))), 5);
    assert.equal(h.lines.at(-1)!['reason'], 'unknown_source');
    const off = setup({ timeoutMs: 0 });
    assert.equal(rcodeOf(await off.h.ask(NEW_POD, query('api.example.com'))), 5);
    assert.equal(off.h.lines.at(-1)!['reason'], 'unknown_source');
  });
});
