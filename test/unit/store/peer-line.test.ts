import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  encodePeerLine,
  MAX_PEER_LINE_BYTES,
  type PeerEntry,
  parsePeerLine,
  SYNCED_LINE,
} from '../../../src/store/peer-line.ts';

const NOW = Date.UTC(2026, 11, 7, 12);
const MAX = 3_600_000;

const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?$/);
const name = fc.array(label, { minLength: 1, maxLength: 4 }).map((ls) => `${ls.join('.')}.example`);
const ip = fc.oneof(fc.ipV4(), fc.constantFrom('2001:db8::1', '::1', 'fe80::1'));
const entry: fc.Arbitrary<PeerEntry> = fc.record({
  source: ip,
  name,
  ip,
  expiresAtWall: fc.integer({ min: NOW + 1, max: NOW + MAX }),
});

const line = (o: unknown): string => JSON.stringify(o);

describe('peer feed line (REL-11)', () => {
  test('every valid entry comes back as it was sent', () => {
    fc.assert(
      fc.property(entry, (e) => {
        const text = encodePeerLine(e);
        assert.ok(text.endsWith('\n'));
        assert.deepEqual(parsePeerLine(text.slice(0, -1), NOW, MAX), {
          ok: true,
          entry: { ...e },
          synced: false,
        });
      }),
    );
  });

  test('any input gives an entry, nothing, or a reason code; never a throw', () => {
    const reasons = new Set(['line_too_long', 'bad_json', 'bad_field', 'bad_name', 'bad_ip', 'bad_expiry']);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 2000 }),
          fc.json(),
          entry.map((e) => encodePeerLine(e)),
        ),
        (s) => {
          const r = parsePeerLine(s, NOW, MAX);
          if (!r.ok) assert.ok(reasons.has(r.reason), r.reason);
        },
      ),
    );
  });

  test('a changed field is refused with its reason code', () => {
    const good = { s: '10.0.1.5', n: 'api.example.com', i: '198.51.100.10', e: NOW + 1000 };
    const cases: Array<[unknown, string]> = [
      [{ ...good, n: 'API.example.com' }, 'bad_name'],
      [{ ...good, n: 'api.example.com.' }, 'bad_name'],
      [{ ...good, n: 'a..b' }, 'bad_name'],
      [{ ...good, n: 'ex\u00e4mple.com' }, 'bad_name'],
      [{ ...good, s: 'pod-a' }, 'bad_ip'],
      [{ ...good, i: '198.51.100.10/24' }, 'bad_ip'],
      [{ ...good, e: NOW + MAX + 1 }, 'bad_expiry'],
      [{ ...good, e: NOW + 1.5 }, 'bad_expiry'],
      [{ ...good, e: String(NOW + 1) }, 'bad_field'],
      [{ ...good, extra: 1 }, 'bad_field'],
      [{ s: good.s, n: good.n, i: good.i }, 'bad_field'],
      [[good.s, good.n, good.i, good.e], 'bad_json'],
      [{ synced: false }, 'bad_field'],
    ];
    for (const [o, reason] of cases)
      assert.deepEqual(parsePeerLine(line(o), NOW, MAX), { ok: false, reason }, line(o));
    assert.deepEqual(parsePeerLine('{"s":', NOW, MAX), { ok: false, reason: 'bad_json' });
    assert.deepEqual(parsePeerLine('x'.repeat(MAX_PEER_LINE_BYTES + 1), NOW, MAX), {
      ok: false,
      reason: 'line_too_long',
    });
  });

  test('an entry already expired is dropped, the feed goes on; the snapshot end is marked', () => {
    const old = { s: '10.0.1.5', n: 'api.example.com', i: '198.51.100.10', e: NOW };
    assert.deepEqual(parsePeerLine(line(old), NOW, MAX), { ok: true, entry: null, synced: false });
    assert.deepEqual(parsePeerLine(SYNCED_LINE.trim(), NOW, MAX), { ok: true, entry: null, synced: true });
  });
});
