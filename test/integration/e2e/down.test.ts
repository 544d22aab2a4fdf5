/**
 * End to end, cleaning up (root, own lab): after `namegate lab down` on a lab whose agent
 * enforced and learned, nothing is left: no namespace, no process, no state dir, and no
 * `inet namegate` table anywhere (the lab's lived in the node namespace and went with it; the
 * root namespace never had one). A second `lab down` is a no-op.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { siteFor } from '../../../src/lab/plan.ts';
import { run } from '../../../src/lab/run.ts';
import {
  agentPid,
  assertServed,
  downLab,
  hasElement,
  http,
  isRunning,
  labProcessesLeft,
  rootHasNamegateTable,
  skip,
  uniqueLabName,
  upLab,
} from './helpers.ts';

const NAME = uniqueLabName('down');
const CLI = fileURLToPath(new URL('../../../src/cli/main.ts', import.meta.url));

describe('end to end: lab down', { skip }, () => {
  after(() => downLab(NAME));

  it('leaves no namespace, nft table, process or state dir behind', async () => {
    const rootBefore = await rootHasNamegateTable();
    const plan = await upLab(NAME);
    // The lab really enforced: a table in the node namespace, an agent, learned elements.
    assertServed(await http(plan, 'payments-api', 'api.stripe.com'), 'api.stripe.com', 'payments-api');
    const stripe = siteFor(plan, 'api.stripe.com')?.ipv4[0];
    assert.ok(stripe && (await hasElement(plan, plan.pods[0]!.ipv4, stripe, 443)), 'an element was learned');
    const table = await run(['ip', 'netns', 'exec', plan.nodeNetns, 'nft', 'list', 'tables']);
    assert.match(table.stdout, /^table inet namegate$/m, 'the node namespace has the table');
    const pid = await agentPid(plan);
    assert.ok(isRunning(pid), 'the agent runs');
    assert.ok(labProcessesLeft(plan).length > 0, 'lab processes run');

    const down = await run([process.execPath, CLI, 'lab', 'down', '--name', NAME], { timeoutMs: 60_000 });
    assert.equal(down.code, 0, `lab down: ${down.stderr}`);

    const netns = await run(['ip', 'netns', 'list']);
    assert.deepEqual(
      netns.stdout.split('\n').filter((l) => l.startsWith(`ng-${NAME}-`)),
      [],
      'ip netns list shows none of the lab',
    );
    assert.equal(isRunning(pid), false, 'the agent is gone');
    assert.deepEqual(labProcessesLeft(plan), [], 'no lab process');
    const pgrep = await run(['pgrep', '-a', '-f', plan.stateDir]);
    assert.equal(pgrep.stdout.trim(), '', 'pgrep finds nothing naming the state dir');
    assert.equal(existsSync(plan.stateDir), false, `${plan.stateDir} removed`);
    for (const ns of plan.namespaces)
      assert.equal(existsSync(`/etc/netns/${ns}`), false, `/etc/netns/${ns} removed`);
    const inNode = await run(['ip', 'netns', 'exec', plan.nodeNetns, 'nft', 'list', 'tables']);
    assert.notEqual(inNode.code, 0, 'the node namespace (and its table) no longer exists');
    assert.equal(await rootHasNamegateTable(), false, 'no table inet namegate in the root namespace');
    assert.equal(rootBefore, false, 'nor was there one before');

    // Idempotent, and the helper's own checks agree.
    const again = await run([process.execPath, CLI, 'lab', 'down', '--name', NAME], { timeoutMs: 60_000 });
    assert.equal(again.code, 0, again.stderr);
    await downLab(NAME);
  });
});
