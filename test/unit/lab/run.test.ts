import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isNamegateError } from '../../../src/core/errors.ts';
import { commandText, inNetns, must, requireTools, run } from '../../../src/lab/run.ts';

describe('running lab commands', () => {
  it('bounds time and output', async () => {
    const slow = await run(['sleep', '5'], { timeoutMs: 100 });
    assert.equal(slow.timedOut, true);
    assert.equal(slow.code, null);
    const big = await run(['head', '-c', '100000', '/dev/zero'], { maxBytes: 1000 });
    assert.equal(big.code, 0);
    assert.equal(big.stdout.length, 1000);
    const echo = await run(['cat'], { input: 'hello' });
    assert.equal(echo.stdout, 'hello');
  });

  it('turns failures into NG_COMMAND_FAILED with the command and its stderr', async () => {
    await assert.rejects(
      must(['sh', '-c', 'echo broken >&2; exit 3']),
      (e: unknown) =>
        isNamegateError(e, 'NG_COMMAND_FAILED') && /exit code 3\nbroken/.test((e as Error).message),
    );
    const missing = await run(['/nonexistent/tool']);
    assert.equal(missing.code, 127);
  });

  it('says which tools are missing and how to get them', () => {
    assert.throws(
      () => requireTools(['definitely-not-a-tool-xyz']),
      (e: unknown) => isNamegateError(e, 'NG_COMMAND_FAILED') && /run make deps/.test((e as Error).message),
    );
    assert.doesNotThrow(() => requireTools(['sh']));
  });

  it('quotes commands for messages and wraps them for a namespace', () => {
    assert.equal(commandText(['dig', '@1.2.3.4', 'a b', "it's"]), `dig @1.2.3.4 'a b' 'it'\\''s'`);
    assert.deepEqual(inNetns('ng-x-node', ['ss', '-l']), ['ip', 'netns', 'exec', 'ng-x-node', 'ss', '-l']);
  });
});
