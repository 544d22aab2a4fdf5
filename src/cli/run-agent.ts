/**
 * Run a started agent until SIGTERM or SIGINT, and reload its policy files on SIGHUP: the part
 * of `namegate agent` and `namegate dns` that belongs to a process, not to the wiring.
 */
import type { RunningAgent } from '../agent/agent.ts';
import { errorMessage } from '../core/errors.ts';
import type { Logger } from '../observe/log.ts';
import { Exit } from './output.ts';

export async function runUntilSignal(log: Logger, start: () => Promise<RunningAgent>): Promise<void> {
  let agent: RunningAgent;
  try {
    agent = await start();
  } catch (err) {
    log.fatal({ event: 'agent', err: errorMessage(err) }, 'agent did not start');
    process.exitCode = Exit.Failure;
    return;
  }
  const onHup = () => {
    log.info({ event: 'agent', signal: 'SIGHUP' }, 'reloading policies');
    void agent.reloadPolicies();
  };
  process.on('SIGHUP', onHup);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ event: 'agent', signal }, 'stopping');
      agent.stop().then(resolve, (err: unknown) => {
        log.error({ event: 'agent', err: errorMessage(err) }, 'stop failed');
        resolve();
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  process.off('SIGHUP', onHup);
  process.exitCode = Exit.Ok;
}
