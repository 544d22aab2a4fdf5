/**
 * Time, passed in rather than read deep inside state. `now()` is monotonic (an NTP step must not
 * expire or immortalize learned entries); `wallNow()` is only for logs and checkpoints, which
 * must survive a restart and so cannot use the monotonic origin.
 */
import { performance } from 'node:perf_hooks';

export interface Clock {
  /** Monotonic milliseconds; only differences are meaningful. */
  now(): number;
  /** Wall-clock milliseconds since the epoch. */
  wallNow(): number;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
};

/** A clock that moves only when told to; for tests of TTL logic without sleeps. */
export class ManualClock implements Clock {
  #mono: number;
  #wall: number;

  constructor(start = 1_000_000, wallStart = Date.UTC(2026, 0, 1)) {
    this.#mono = start;
    this.#wall = wallStart;
  }

  now(): number {
    return this.#mono;
  }

  wallNow(): number {
    return this.#wall;
  }

  advance(ms: number): void {
    this.#mono += ms;
    this.#wall += ms;
  }

  /** Move only the wall clock, as an NTP step would. */
  stepWall(ms: number): void {
    this.#wall += ms;
  }
}
