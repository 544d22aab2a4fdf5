import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { LearnedStore } from '../../../src/store/learned-store.ts';
import { combinedView, PeerEntries } from '../../../src/store/peer-view.ts';

const TTL = { minTtlSeconds: 30, maxTtlSeconds: 3600, graceSeconds: 20 };
const POD = '10.0.1.5';
const NOW = 1_000_000;

describe('peer entries and the combined view (REL-11)', () => {
  test('the view holds what either the own store or the peer holds, each until its expiry', () => {
    const own = new LearnedStore({ ttl: TTL });
    own.learn(POD, 'github.com', [{ ip: '192.0.2.1', ttl: 60 }], NOW);
    const peers = new PeerEntries(10);
    assert.ok(peers.add(POD, 'api.stripe.com', '198.51.100.10', NOW + 5000, NOW));
    const view = combinedView(own, peers);
    assert.ok(view.holds(POD, 'github.com', '192.0.2.1', NOW));
    assert.ok(view.holds(POD, 'api.stripe.com', '198.51.100.10', NOW + 4999));
    assert.equal(view.holds(POD, 'api.stripe.com', '198.51.100.10', NOW + 5000), false, 'expired');
    assert.equal(view.holds(POD, 'github.com', '192.0.2.1', NOW + 81_000), false, 'own expired');
  });

  test('SNI-02 holds through the peer: an IP the peer learned for another name, or another source, does not count', () => {
    const peers = new PeerEntries(10);
    peers.add(POD, 'api.stripe.com', '198.51.100.10', NOW + 5000, NOW);
    const view = combinedView(new LearnedStore({ ttl: TTL }), peers);
    assert.equal(view.holds(POD, 'evil.example.com', '198.51.100.10', NOW), false);
    assert.equal(view.holds('10.0.1.6', 'api.stripe.com', '198.51.100.10', NOW), false);
    assert.equal(view.holds(POD, 'api.stripe.com', '198.51.100.11', NOW), false);
  });

  test('an expiry only moves forward; forgetting a source drops its entries', () => {
    const peers = new PeerEntries(10);
    peers.add(POD, 'a.example', '192.0.2.1', NOW + 5000, NOW);
    peers.add(POD, 'a.example', '192.0.2.1', NOW + 1000, NOW);
    assert.ok(peers.holds(POD, 'a.example', '192.0.2.1', NOW + 4000));
    peers.add('10.0.1.6', 'a.example', '192.0.2.1', NOW + 5000, NOW);
    assert.equal(peers.size, 2);
    peers.forgetSources([POD, '10.0.9.9']);
    assert.equal(peers.size, 1);
    assert.equal(peers.holds(POD, 'a.example', '192.0.2.1', NOW), false);
    assert.ok(peers.holds('10.0.1.6', 'a.example', '192.0.2.1', NOW));
  });

  test('bounded: a full view refuses new entries, and makes room from expired ones at most once a second', () => {
    const peers = new PeerEntries(2);
    assert.ok(peers.add(POD, 'a.example', '192.0.2.1', NOW + 100, NOW));
    assert.ok(peers.add(POD, 'b.example', '192.0.2.2', NOW + 5000, NOW));
    assert.equal(peers.add(POD, 'c.example', '192.0.2.3', NOW + 5000, NOW), false, 'nothing expired yet');
    assert.equal(peers.add(POD, 'c.example', '192.0.2.3', NOW + 5000, NOW + 200), false, 'swept < 1 s ago');
    assert.ok(peers.add(POD, 'c.example', '192.0.2.3', NOW + 5000, NOW + 1000), 'the expired one made room');
    assert.equal(peers.size, 2);
    assert.equal(peers.holds(POD, 'a.example', '192.0.2.1', NOW), false);
  });

  test('property: the size never passes the cap and holds agrees with a model', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 1, max: 3000 })), {
          maxLength: 60,
        }),
        (ops) => {
          const peers = new PeerEntries(4);
          const model = new Map<number, number>();
          let now = NOW;
          for (const [k, life] of ops) {
            now += 100;
            const took = peers.add(POD, `n${k}.example`, '192.0.2.1', now + life, now);
            assert.ok(peers.size <= 4);
            if (took) model.set(k, Math.max(model.get(k) ?? 0, now + life));
            for (const [mk, exp] of model)
              if (exp > now) assert.ok(peers.holds(POD, `n${mk}.example`, '192.0.2.1', now));
          }
        },
      ),
    );
  });
});
