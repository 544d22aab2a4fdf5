/**
 * The resolver loop against a scripted resolver: every name resolved with bounded concurrency,
 * denied ranges never learned, a failure keeps the last good set (bounded by the window), a
 * rotating name's addresses accumulate, the cap is counted and logged, and re-resolution happens
 * before the answer expires.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../../src/core/clock.ts';
import type { NameResolution } from '../../../src/dns/resolve.ts';
import { createRegistry } from '../../../src/observe/metrics.ts';
import { ResolverLoop } from '../../../src/sync/loop.ts';
import { createSyncMetrics } from '../../../src/sync/metrics.ts';
import { capturedLog, FAILED, resolution, SETTINGS } from './helpers.ts';

function loop(answers: (name: string) => NameResolution | Promise<NameResolution>, settings = {}) {
  const clock = new ManualClock();
  const { log, lines } = capturedLog();
  const registry = createRegistry();
  const metrics = createSyncMetrics(registry);
  let changes = 0;
  const l = new ResolverLoop({
    settings: { ...SETTINGS, ...settings },
    resolve: async (name) => answers(name),
    clock,
    log,
    metrics,
    random: () => 0,
    onChange: () => changes++,
  });
  return { l, clock, lines, registry, changes: () => changes };
}

test('answers in denied ranges are not learned; public ones are; a change is announced', async () => {
  const { l, lines, changes } = loop(() => resolution(['203.0.113.5', '10.0.0.5', '2001:db8::5', 'fe80::1']));
  l.setNames(['mixed.example']);
  await l.resolveAll();
  assert.deepEqual(l.addresses('mixed.example'), ['203.0.113.5', '2001:db8::5']);
  assert.ok(changes() > 0);
  const denied = lines().find((x) => x['reason'] === 'denied_range');
  assert.deepEqual(denied?.['ips'], ['10.0.0.5', 'fe80::1']);
});

test('a failed resolution keeps the last good set until the window passes, and is reported', async () => {
  let fail = false;
  const { l, clock, lines, registry } = loop(
    () => (fail ? { a: FAILED, aaaa: FAILED } : resolution(['203.0.113.7'])),
    {
      windowMs: 60_000,
    },
  );
  l.setNames(['flaky.example']);
  await l.resolveAll();
  fail = true;
  clock.advance(30_000);
  await l.resolveAll();
  assert.deepEqual(l.addresses('flaky.example'), ['203.0.113.7'], 'never emptied by a failure');
  const state = l.states()[0];
  assert.equal(state?.failures, 1);
  assert.match(state?.lastError ?? '', /upstream_timeout/);
  assert.ok(lines().some((x) => x['reason'] === 'resolve_failed' && x['kept'] === 1));
  assert.match(await registry.metrics(), /namegate_sync_failing_names 1/);
  clock.advance(30_000);
  assert.equal(l.prune(), 1, 'bounded by the window: gone 60 s after it was last seen');
  assert.deepEqual(l.addresses('flaky.example'), []);
});

test('a rotating name accumulates every address it was seen with', async () => {
  let turn = 0;
  const pool = Array.from({ length: 20 }, (_, i) => `203.0.113.${100 + i}`);
  const { l, clock } = loop(() => {
    const start = (turn++ * 3) % 20;
    return resolution(
      [0, 1, 2, 3].map((k) => pool[(start + k) % 20] as string),
      5,
    );
  });
  l.setNames(['rotating.example']);
  for (let i = 0; i < 8; i++) {
    await l.resolveAll();
    clock.advance(5000);
  }
  assert.equal(l.addresses('rotating.example').length, 20);
});

test('the per-name cap is counted and logged', async () => {
  let n = 0;
  const { l, lines, registry } = loop(() => resolution([`203.0.113.${++n}`, `203.0.113.${++n}`]), {
    maxAddressesPerName: 3,
  });
  l.setNames(['big.example']);
  await l.resolveAll();
  await l.resolveAll();
  assert.equal(l.addresses('big.example').length, 3);
  assert.ok(lines().some((x) => x['reason'] === 'name_cap' && x['qname'] === 'big.example'));
  assert.match(await registry.metrics(), /namegate_sync_cap_evictions_total 1/);
});

test('resolveAll never has more than `concurrency` resolutions in flight', async () => {
  let inFlight = 0;
  let peak = 0;
  const { l } = loop(
    async () => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise((r) => setImmediate(r));
      inFlight--;
      return resolution(['203.0.113.1']);
    },
    { concurrency: 3 },
  );
  l.setNames(Array.from({ length: 20 }, (_, i) => `n${i}.example`));
  await l.resolveAll();
  assert.equal(peak, 3);
  assert.equal(l.states().filter((s) => s.lastSuccess !== null).length, 20);
});

test('names no policy names any more are forgotten (their addresses leave at once)', async () => {
  const { l } = loop(() => resolution(['203.0.113.1']));
  l.setNames(['a.example', 'b.example']);
  await l.resolveAll();
  l.setNames(['a.example']);
  assert.deepEqual(
    l.states().map((s) => s.name),
    ['a.example'],
  );
  assert.deepEqual(l.addresses('b.example'), []);
});

test('running, a name is resolved again at its TTL (timers mocked, no sleeping)', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  const clock = { now: () => Date.now(), wallNow: () => Date.now() };
  const { log } = capturedLog();
  const seen: number[] = [];
  const l = new ResolverLoop({
    settings: { ...SETTINGS, jitter: 0 },
    resolve: async () => {
      seen.push(Date.now());
      return resolution(['203.0.113.1'], 7);
    },
    clock,
    log,
    random: () => 0,
  });
  l.setNames(['ttl.example']);
  l.start();
  const settle = async () => {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  };
  await settle();
  for (let i = 0; i < 3; i++) {
    t.mock.timers.tick(7000);
    await settle();
  }
  l.stop();
  assert.deepEqual(seen, [0, 7000, 14_000, 21_000]);
});
