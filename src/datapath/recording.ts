/**
 * An in-memory Datapath for unit tests and `namegate dns` trials: it records every call and
 * keeps the state a kernel would hold, with expiry read from the given clock. Failures and
 * delays can be injected to test the DNS proxy's hold and fail-closed paths.
 */
import { type Clock, systemClock } from '../core/clock.ts';
import { ErrorCode, NamegateError } from '../core/errors.ts';
import {
  type AllowElement,
  type Datapath,
  type ElementKey,
  elementKey,
  type StaticState,
} from './datapath.ts';

export type RecordedCall =
  | { readonly op: 'reconcile'; readonly state: StaticState }
  | { readonly op: 'learn'; readonly elements: readonly AllowElement[] }
  | { readonly op: 'forget'; readonly elements: readonly ElementKey[] };

export class RecordingDatapath implements Datapath {
  readonly calls: RecordedCall[] = [];
  state: StaticState = { sources: [], cidrs: [], verify: [] };
  /** Delay before learn() resolves (ms); simulates a slow kernel. */
  learnDelayMs = 0;
  /** When set, learn() rejects with this message (simulates a full set or nft failure). */
  failLearn: string | null = null;
  readonly #learned = new Map<string, { element: AllowElement; expiresAt: number }>();
  readonly #clock: Clock;
  /** Keep at most this many calls (a long `namegate dns` trial must not grow without bound). */
  readonly #maxCalls: number;

  constructor(clock: Clock = systemClock, maxCalls = 10_000) {
    this.#clock = clock;
    this.#maxCalls = maxCalls;
  }

  #record(call: RecordedCall): void {
    if (this.calls.length >= this.#maxCalls) this.calls.shift();
    this.calls.push(call);
  }

  async reconcile(state: StaticState): Promise<void> {
    this.#record({ op: 'reconcile', state });
    this.state = state;
  }

  async learn(elements: readonly AllowElement[]): Promise<void> {
    this.#record({ op: 'learn', elements });
    if (this.learnDelayMs > 0) await new Promise((r) => setTimeout(r, this.learnDelayMs));
    if (this.failLearn !== null) throw new NamegateError(ErrorCode.DatapathCommit, this.failLearn);
    for (const e of elements) {
      if (!(e.timeoutMs > 0))
        throw new NamegateError(ErrorCode.DatapathCommit, `timeout ${e.timeoutMs} is not > 0`);
      this.#learned.set(elementKey(e), { element: e, expiresAt: this.#clock.now() + e.timeoutMs });
    }
  }

  async forget(elements: readonly ElementKey[]): Promise<void> {
    this.#record({ op: 'forget', elements });
    for (const e of elements) this.#learned.delete(elementKey(e));
  }

  async listLearned(): Promise<AllowElement[]> {
    return this.learned();
  }

  /** Unexpired learned elements, with their remaining timeout. */
  learned(): AllowElement[] {
    const now = this.#clock.now();
    const out: AllowElement[] = [];
    for (const [key, { element, expiresAt }] of this.#learned) {
      if (expiresAt <= now) this.#learned.delete(key);
      else out.push({ ...element, timeoutMs: expiresAt - now });
    }
    return out;
  }

  /** Would the kernel let `source` open `destination` on this port now? */
  allows(source: string, destination: string, protocol: AllowElement['protocol'], port: number): boolean {
    return this.learned().some(
      (e) =>
        e.source === source &&
        e.destination === destination &&
        e.protocol === protocol &&
        port >= e.portFrom &&
        port <= e.portTo,
    );
  }

  async close(): Promise<void> {}
}
