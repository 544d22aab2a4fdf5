/**
 * Run a started agent until SIGTERM or SIGINT, and reload its policy files on SIGHUP: the part
 * of `namegate agent`, `namegate dns` and `namegate sync` that belongs to a process, not to the
 * wiring.
 */
import { errorMessage } from '../core/errors.ts';
import type { Logger } from '../observe/log.ts';
import { Exit } from './output.ts';

/** What runs until a signal: the agent (`RunningAgent`), the sync (`RunningSync`). */
export interface Running {
  /** Read the policy files again now; no-op when policies come from elsewhere. */
  reloadPolicies(): Promise<void>;
  stop(): Promise<void>;
}

export async function runUntilSignal(
  log: Logger,
  start: () => Promise<Running>,
  event = 'agent',
): Promise<void> {
  let agent: Running;
  try {
    agent = await start();
  } catch (err) {
    log.fatal({ event, err: errorMessage(err) }, `${event} did not start`);
    process.exitCode = Exit.Failure;
    return;
  }
  const onHup = () => {
    log.info({ event, signal: 'SIGHUP' }, 'reloading policies');
    void agent.reloadPolicies();
  };
  process.on('SIGHUP', onHup);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ event, signal }, 'stopping');
      agent.stop().then(resolve, (err: unknown) => {
        log.error({ event, err: errorMessage(err) }, 'stop failed');
        resolve();
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  process.off('SIGHUP', onHup);
  process.exitCode = Exit.Ok;
}
