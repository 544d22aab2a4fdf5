/** `namegate datapath status` and `uninstall` against a real table. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Netns, NODE } from '../netns.ts';
import { DriverClient } from './topology.ts';

test('datapath status shows sets and counters; uninstall removes the table', async (t) => {
  const ns = await Netns.create(t);
  const dp = await DriverClient.start(ns);
  t.after(() => dp.close());
  await dp.call('reconcile', { sources: [{ ip: '10.0.0.1', mode: 'Audit' }], cidrs: [], verify: [] });
  await dp.call('learn', [
    {
      source: '10.0.0.1',
      destination: '203.0.113.1',
      protocol: 'TCP',
      portFrom: 443,
      portTo: 443,
      timeoutMs: 60_000,
    },
  ]);
  const status = JSON.parse(await ns.run([NODE, 'src/cli/main.ts', 'datapath', 'status', '--json']));
  assert.equal(status.present, true);
  assert.equal(status.sets.find((s: { name: string }) => s.name === 'allow4').elements, 1);
  assert.deepEqual(status.drops, [{ source: '10.0.0.1', range: '10.0.0.1', mode: 'Audit', packets: 0 }]);
  const text = await ns.run([NODE, 'src/cli/main.ts', 'datapath', 'status']);
  assert.match(text, /set allow4/);
  assert.match(await ns.run([NODE, 'src/cli/main.ts', 'datapath', 'uninstall']), /deleted/);
  assert.match(await ns.run([NODE, 'src/cli/main.ts', 'datapath', 'uninstall']), /was not present/);
  const list = await ns.exec(['nft', 'list', 'table', 'inet', 'namegate']);
  assert.notEqual(list.code, 0);
});
