/**
 * NODE-09: an event-loop stall must be visible. The agent's and the DNS proxy's registries
 * (createRegistry({ defaultMetrics: true })) export prom-client's event-loop lag gauges under the
 * namegate_ prefix; a stall this test causes on purpose (a synchronous busy loop, the shape of a
 * sync regex or a huge JSON.parse) shows up in the max of the next scrape. The bound is a lower
 * bound the stall guarantees (the monitor's timer cannot fire while the loop is blocked), not a
 * timing expectation.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createRegistry } from '../../../src/observe/metrics.ts';

const LAG = [
  'namegate_nodejs_eventloop_lag_seconds',
  'namegate_nodejs_eventloop_lag_max_seconds',
  'namegate_nodejs_eventloop_lag_p99_seconds',
];

async function value(registry: ReturnType<typeof createRegistry>, name: string): Promise<number> {
  const m = registry.getSingleMetric(name);
  assert.ok(m, `${name} registered`);
  return (await m.get()).values[0]?.value ?? Number.NaN;
}

test('NODE-09: the event-loop lag gauges are exported with the namegate_ prefix', async () => {
  const registry = createRegistry({ defaultMetrics: true });
  const text = await registry.metrics();
  for (const name of LAG) assert.match(text, new RegExp(`^${name} `, 'm'), `${name} in /metrics`);
  // Without default metrics (component tests) nothing of the runtime is registered.
  assert.equal(createRegistry().getSingleMetric(LAG[0]!), undefined);
});

test('NODE-09: a 300 ms stall of the event loop shows in the lag max of the next scrape', async () => {
  const registry = createRegistry({ defaultMetrics: true });
  // Start from a clean histogram (a scrape resets it), and let the monitor's timer run once.
  await registry.metrics();
  await new Promise((r) => setTimeout(r, 50));
  const until = performance.now() + 300;
  while (performance.now() < until) {
    // a synchronous stall: nothing else runs on this thread meanwhile
  }
  await new Promise((r) => setTimeout(r, 50));
  await registry.metrics();
  const max = await value(registry, 'namegate_nodejs_eventloop_lag_max_seconds');
  assert.ok(max >= 0.25, `lag max after a 300 ms stall: ${max} s`);
});
