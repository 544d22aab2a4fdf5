import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ManualClock } from '../../../src/core/clock.ts';
import {
  decodeCheckpoint,
  encodeCheckpoint,
  readCheckpoint,
  restoreEntries,
  writeCheckpoint,
} from '../../../src/store/checkpoint.ts';
import { LearnedStore } from '../../../src/store/learned-store.ts';

const TTL = { minTtlSeconds: 30, maxTtlSeconds: 3600, graceSeconds: 20 };
const LIMITS = { maxBytes: 1024 * 1024, maxEntries: 1000 };

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'namegate-ckpt-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function filled(clock: ManualClock): LearnedStore {
  const s = new LearnedStore({ ttl: TTL });
  s.learn('10.0.1.5', 'api.example.com', [{ ip: '198.51.100.10', ttl: 300 }], clock.now());
  s.learn('10.0.1.5', 'cdn.example.net', [{ ip: '2001:db8::1', ttl: 60 }], clock.now());
  s.learn('fd00::5', 'api.example.com', [{ ip: '198.51.100.11', ttl: 3000 }], clock.now());
  return s;
}

function sealed(body: string): Buffer {
  const b = Buffer.from(body);
  return Buffer.concat([
    Buffer.from(`namegate-store 1 ${createHash('sha256').update(b).digest('hex')} ${b.length}\n`),
    b,
  ]);
}

describe('checkpoint (REL-03)', () => {
  test('write then read restores the same entries with their remaining lifetime', async (t) => {
    const dir = await tempDir(t);
    const file = path.join(dir, 'store.ckpt');
    const clock = new ManualClock();
    const s = filled(clock);
    clock.advance(10_000);
    assert.deepEqual(await writeCheckpoint(file, s, clock, LIMITS), {
      entries: 3,
      bytes: (await readFile(file)).length,
    });
    assert.deepEqual(await readdir(dir), ['store.ckpt'], 'no temporary file left');

    // A new process: another monotonic origin, the wall clock moved on by 5 s.
    const later = new ManualClock(42, clock.wallNow() + 5_000);
    const fresh = new LearnedStore({ ttl: TTL });
    const read = await readCheckpoint(file, later, fresh, LIMITS);
    assert.ok(read.ok);
    assert.equal(restoreEntries(fresh, read.entries, later.now()), 3);
    const remaining = fresh.expiryFor('10.0.1.5', '198.51.100.10') - later.now();
    assert.equal(remaining, 320_000 - 15_000);
    assert.deepEqual(fresh.lookup('fd00::5', 'api.example.com', later.now()), ['198.51.100.11']);
  });

  test('entries expired by the time of reading are skipped', async (t) => {
    const dir = await tempDir(t);
    const file = path.join(dir, 'store.ckpt');
    const clock = new ManualClock();
    await writeCheckpoint(file, filled(clock), clock, LIMITS);
    const later = new ManualClock(0, clock.wallNow() + 100_000); // the 80 s entry is gone
    const read = await readCheckpoint(file, later, new LearnedStore({ ttl: TTL }), LIMITS);
    assert.ok(read.ok);
    assert.equal(read.entries.length, 2);
  });

  test('TIME-08: a wall clock stepped backwards cannot make entries outlive maxTTL + grace', () => {
    const clock = new ManualClock();
    const { data } = encodeCheckpoint(filled(clock), clock, LIMITS);
    const back = new ManualClock(0, clock.wallNow() - 10 * 86_400_000);
    const read = decodeCheckpoint(data, back, 3_620_000, LIMITS);
    assert.ok(read.ok);
    for (const e of read.entries) assert.ok(e.expiresAt - back.now() <= 3_620_000);
  });

  test('a missing file is reported as missing, not corrupt', async (t) => {
    const dir = await tempDir(t);
    const read = await readCheckpoint(
      path.join(dir, 'none'),
      new ManualClock(),
      new LearnedStore({ ttl: TTL }),
      LIMITS,
    );
    assert.ok(!read.ok && read.missing);
  });

  const clock = new ManualClock();
  const good = encodeCheckpoint(filled(clock), clock, LIMITS).data;
  const corrupt: Array<[string, Buffer]> = [
    ['empty file', Buffer.alloc(0)],
    ['no header', Buffer.from('{"written":0,"entries":[]}')],
    ['other version', Buffer.from(good.toString().replace('namegate-store 1 ', 'namegate-store 2 '))],
    ['flipped body byte', Buffer.from(good.toString().replace('api.example.com', 'api.example.con'))],
    ['truncated', good.subarray(0, good.length - 3)],
    ['length mismatch', Buffer.concat([good, Buffer.from(' ')])],
    ['body not JSON', sealed('not json')],
    ['entries not an array', sealed('{"written":0,"entries":{}}')],
    ['bad source IP', sealed('{"written":0,"entries":[["10.0.0.300","a.example","192.0.2.1",1,1]]}')],
    ['non-canonical IPv6', sealed('{"written":0,"entries":[["10.0.0.1","a.example","2001:DB8::1",1,1]]}')],
    ['non-canonical name', sealed('{"written":0,"entries":[["10.0.0.1","A.example","192.0.2.1",1,1]]}')],
    ['expiry not a number', sealed('{"written":0,"entries":[["10.0.0.1","a.example","192.0.2.1","x",1]]}')],
    ['short row', sealed('{"written":0,"entries":[["10.0.0.1","a.example","192.0.2.1",1]]}')],
  ];
  for (const [name, data] of corrupt) {
    test(`corrupt checkpoint ignored: ${name}`, () => {
      const read = decodeCheckpoint(data, new ManualClock(), 3_620_000, LIMITS);
      assert.ok(!read.ok, 'not accepted');
      assert.equal(read.error.code, 'NG_CHECKPOINT_INVALID');
    });
  }

  test('too many entries or bytes: ignored', () => {
    const rows = Array.from({ length: 11 }, (_, i) => `["10.0.0.1","a.example","192.0.2.${i}",1,1]`);
    const data = sealed(`{"written":0,"entries":[${rows.join(',')}]}`);
    assert.ok(!decodeCheckpoint(data, new ManualClock(), 1000, { maxBytes: 1 << 20, maxEntries: 10 }).ok);
    assert.ok(!decodeCheckpoint(data, new ManualClock(), 1000, { maxBytes: 100, maxEntries: 100 }).ok);
  });

  test('a store larger than maxBytes is not written; the old checkpoint stays', async (t) => {
    const dir = await tempDir(t);
    const file = path.join(dir, 'store.ckpt');
    const c = new ManualClock();
    await writeFile(file, good);
    await assert.rejects(writeCheckpoint(file, filled(c), c, { maxBytes: 64, maxEntries: 10 }), {
      code: 'NG_LIMIT_EXCEEDED',
    });
    assert.deepEqual(await readFile(file), good);
    assert.deepEqual(await readdir(dir), ['store.ckpt']);
  });

  test('property: random bytes never throw and are never accepted', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        const read = decodeCheckpoint(Buffer.from(bytes), new ManualClock(), 1000, LIMITS);
        assert.ok(!read.ok);
      }),
      { numRuns: 2000 },
    );
  });
});
