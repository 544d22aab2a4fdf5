/**
 * What a started agent must undo, in reverse order of starting: each step registers its own
 * cleanup as soon as the thing exists, so a failed start undoes exactly what it did.
 */
import { errorMessage } from '../core/errors.ts';
import { F } from '../observe/fields.ts';
import type { Logger } from '../observe/log.ts';

export class Cleanups {
  readonly #steps: Array<() => Promise<void> | void> = [];

  add(step: () => Promise<void> | void): void {
    this.#steps.push(step);
  }

  /** Run every step, last first; a failing step is logged and the rest still run. */
  async run(log: Logger): Promise<void> {
    while (this.#steps.length > 0) {
      const step = this.#steps.pop()!;
      try {
        await step();
      } catch (err) {
        log.warn({ [F.event]: 'agent', [F.error]: errorMessage(err) }, 'cleanup step failed');
      }
    }
  }
}
