import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AddonExecutor, type NftAddon } from '../../../src/datapath/nft-executor-addon.ts';

/** A fake addon that logs how each command ran; async runs finish when released. */
function fakeAddon(withSync: boolean) {
  const log: string[] = [];
  const held: (() => void)[] = [];
  const addon = {
    open: () => ({ __brand: 'nft-handle' as const }),
    run: (_h: unknown, commands: string) =>
      new Promise<{ rc: number; out: string; err: string }>((resolve) => {
        held.push(() => {
          log.push(`pool ${commands.slice(0, 11)}`);
          resolve({ rc: 0, out: '', err: '' });
        });
      }),
    close: () => undefined,
    ...(withSync
      ? {
          runSync: (_h: unknown, commands: string) => {
            log.push(`sync ${commands.slice(0, 11)}`);
            return { rc: commands.includes('bad') ? 1 : 0, out: '', err: 'Error: bad\n' };
          },
        }
      : {}),
  } as NftAddon;
  /** Let queued pool runs start, then finish them. */
  const release = async () => {
    await new Promise((r) => setImmediate(r));
    for (const f of held.splice(0)) f();
  };
  return { addon, log, release };
}

test('small writes run in place; listings and big writes on the pool; order is kept', async () => {
  const f = fakeAddon(true);
  const ex = new AddonExecutor(f.addon, { syncWrites: true });
  assert.deepEqual(await ex.run('add element a'), { ok: true, out: '', err: 'Error: bad' });
  assert.equal((await ex.run('add element bad')).ok, false);
  const list = ex.run('list set inet namegate allow4', { json: true });
  // While a pool run is pending, a write queues behind it (no overtaking).
  const after = ex.run('add element b');
  await f.release();
  await list;
  await f.release();
  await after;
  const bigRun = ex.run(`add element ${'x'.repeat(20_000)}`);
  await f.release();
  await bigRun;
  assert.deepEqual(f.log, [
    'sync add element',
    'sync add element',
    'pool list set in',
    'pool add element',
    'pool add element',
  ]);
  await ex.close();
});

test('without runSync (older build) or syncWrites off, everything runs on the pool', async () => {
  for (const [withSync, syncWrites] of [
    [false, true],
    [true, false],
  ] as const) {
    const f = fakeAddon(withSync);
    const ex = new AddonExecutor(f.addon, { syncWrites });
    const r = ex.run('add element a');
    await f.release();
    await r;
    assert.deepEqual(f.log, ['pool add element']);
    await ex.close();
  }
});
