import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NamegateError } from '../../../src/core/errors.ts';
import { BatchWriter } from '../../../src/datapath/nft-writer.ts';

interface Item {
  readonly weight: number;
  readonly id: number;
  readonly bad?: boolean;
}

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

test('calls arriving during a transaction join the next one', async () => {
  const batches: number[][] = [];
  const gate = deferred();
  const w = new BatchWriter<Item>({
    maxQueued: 100,
    maxBatch: 100,
    commit: async (items) => {
      batches.push(items.map((i) => i.id));
      if (batches.length === 1) await gate.promise;
    },
  });
  const first = w.submit({ weight: 1, id: 0 });
  const rest = [1, 2, 3, 4].map((id) => w.submit({ weight: 1, id }));
  gate.resolve();
  await Promise.all([first, ...rest]);
  assert.deepEqual(batches, [[0], [1, 2, 3, 4]]);
});

test('batches respect maxBatch; a single big call is not split', async () => {
  const batches: number[][] = [];
  const w = new BatchWriter<Item>({
    maxQueued: 100,
    maxBatch: 3,
    commit: async (items) => {
      batches.push(items.map((i) => i.id));
    },
  });
  await Promise.all([
    w.submit({ weight: 5, id: 0 }),
    w.submit({ weight: 2, id: 1 }),
    w.submit({ weight: 2, id: 2 }),
  ]);
  assert.deepEqual(batches, [[0], [1], [2]]);
});

test('a failed batch is split so that only the bad caller fails', async () => {
  const w = new BatchWriter<Item>({
    maxQueued: 100,
    maxBatch: 100,
    commit: async (items) => {
      if (items.some((i) => i.bad)) throw new NamegateError('NG_DATAPATH_COMMIT', 'Error: bad element');
    },
  });
  const gate = w.exclusive(async () => undefined);
  const results = await Promise.allSettled(
    [0, 1, 2, 3, 4].map((id) => w.submit({ weight: 1, id, bad: id === 3 })),
  );
  await gate;
  assert.deepEqual(
    results.map((r) => r.status),
    ['fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled'],
  );
});

test('no split when every transaction would fail (full set): all callers rejected', async () => {
  let commits = 0;
  const w = new BatchWriter<Item>({
    maxQueued: 100,
    maxBatch: 100,
    commit: async () => {
      commits++;
      throw new Error('Too many open files in system');
    },
    shouldSplit: (e) => !/Too many open files/.test(String(e)),
  });
  const gate = w.exclusive(async () => undefined);
  const results = await Promise.allSettled([0, 1, 2, 3].map((id) => w.submit({ weight: 1, id })));
  await gate;
  assert.ok(results.every((r) => r.status === 'rejected'));
  assert.equal(commits, 1);
});

test('the queue is bounded: NG_LIMIT_EXCEEDED at once', async () => {
  let rejected = 0;
  const gate = deferred();
  const w = new BatchWriter<Item>({
    maxQueued: 3,
    maxBatch: 100,
    commit: () => gate.promise,
    onReject: () => rejected++,
  });
  const inFlight = w.submit({ weight: 1, id: 0 });
  const queued = [w.submit({ weight: 2, id: 1 }), w.submit({ weight: 1, id: 2 })];
  await assert.rejects(w.submit({ weight: 1, id: 3 }), (e: NamegateError) => e.code === 'NG_LIMIT_EXCEEDED');
  assert.equal(rejected, 1);
  gate.resolve();
  await Promise.all([inFlight, ...queued]);
  assert.equal(w.queuedWeight, 0);
});

test('exclusive tasks run alone and in order', async () => {
  const log: string[] = [];
  const w = new BatchWriter<Item>({
    maxQueued: 100,
    maxBatch: 100,
    commit: async (items) => {
      log.push(`batch ${items.map((i) => i.id).join(',')}`);
    },
  });
  const a = w.submit({ weight: 1, id: 1 });
  const t = w.exclusive(async () => log.push('task'));
  const b = w.submit({ weight: 1, id: 2 });
  await Promise.all([a, t, b]);
  assert.deepEqual(log, ['batch 1', 'task', 'batch 2']);
  await w.close();
  await assert.rejects(w.submit({ weight: 1, id: 9 }), /closed/);
});
