/**
 * An in-memory Datapath for unit tests and `namegate dns` trials: it records every call and
 * keeps the state a kernel would hold, with expiry read from the given clock. Failures and
 * delays can be injected to test the DNS proxy's hold and fail-closed paths.
 */
import { type Clock, systemClock } from '../core/clock.ts';
import { ErrorCode, NamegateError } from '../core/errors.ts';
import type { AllowElement, Datapath, ElementKey, ForgetResult, StaticState } from './datapath.ts';

export type RecordedCall =
  | { readonly op: 'reconcile'; readonly state: StaticState }
  | { readonly op: 'learn'; readonly elements: readonly AllowElement[] }
  | { readonly op: 'forget'; readonly elements: readonly ElementKey[] };

export class RecordingDatapath implements Datapath {
  state: StaticState = { sources: [], cidrs: [], verify: [] };
  /** Delay before learn() resolves (ms); simulates a slow kernel. */
  learnDelayMs = 0;
  /** When set, learn() rejects with this message (simulates a full set or nft failure). */
  failLearn: string | null = null;
  /**
   * Held elements by (source, destination), then by protocol and ports: allows() reads only the
   * elements of one pair, so a check costs the same with 10 or 100,000 elements held.
   */
  readonly #learned = new Map<string, Map<string, Held>>();
  #held = 0;
  /** Expired elements are dropped when the count doubles since the last sweep (amortized O(1)). */
  #sweepAt = SWEEP_MIN;
  readonly #clock: Clock;
  /**
   * The last calls, oldest first, in a ring: a long `namegate dns` trial keeps at most
   * `maxCalls` of them, and recording one costs O(1) however many are kept.
   */
  readonly #ring: (RecordedCall | undefined)[] = [];
  #next = 0;
  readonly #maxCalls: number;

  constructor(clock: Clock = systemClock, maxCalls = 10_000) {
    this.#clock = clock;
    this.#maxCalls = Math.max(1, maxCalls);
  }

  /** The recorded calls, oldest first (at most maxCalls; a copy). */
  get calls(): RecordedCall[] {
    const ring = this.#ring;
    if (ring.length < this.#maxCalls) return ring.slice() as RecordedCall[];
    return [...ring.slice(this.#next), ...ring.slice(0, this.#next)] as RecordedCall[];
  }

  #record(call: RecordedCall): void {
    if (this.#ring.length < this.#maxCalls) {
      this.#ring.push(call);
      return;
    }
    this.#ring[this.#next] = call;
    this.#next = (this.#next + 1) % this.#maxCalls;
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
    }
    const now = this.#clock.now();
    for (const e of elements) {
      const pair = pairKey(e);
      let ports = this.#learned.get(pair);
      if (!ports) {
        ports = new Map();
        this.#learned.set(pair, ports);
      }
      const key = portKey(e);
      if (!ports.has(key)) this.#held++;
      ports.set(key, { element: e, expiresAt: now + e.timeoutMs });
    }
    if (this.#held >= this.#sweepAt) {
      this.#sweep(now);
      this.#sweepAt = Math.max(SWEEP_MIN, 2 * this.#held);
    }
  }

  async forget(elements: readonly ElementKey[]): Promise<ForgetResult> {
    this.#record({ op: 'forget', elements });
    for (const e of elements) {
      const pair = pairKey(e);
      const ports = this.#learned.get(pair);
      if (ports?.delete(portKey(e))) {
        this.#held--;
        if (ports.size === 0) this.#learned.delete(pair);
      }
    }
    return { flows: 0 };
  }

  async listLearned(): Promise<AllowElement[]> {
    return this.learned();
  }

  /** Unexpired learned elements, with their remaining timeout. */
  learned(): AllowElement[] {
    const now = this.#clock.now();
    this.#sweep(now);
    const out: AllowElement[] = [];
    for (const ports of this.#learned.values()) {
      for (const { element, expiresAt } of ports.values())
        out.push({ ...element, timeoutMs: expiresAt - now });
    }
    return out;
  }

  /** Would the kernel let `source` open `destination` on this port now? */
  allows(source: string, destination: string, protocol: AllowElement['protocol'], port: number): boolean {
    const ports = this.#learned.get(`${source}|${destination}`);
    if (!ports) return false;
    const now = this.#clock.now();
    for (const { element: e, expiresAt } of ports.values()) {
      if (expiresAt > now && e.protocol === protocol && port >= e.portFrom && port <= e.portTo) return true;
    }
    return false;
  }

  /** Drop expired elements. */
  #sweep(now: number): void {
    for (const [pair, ports] of this.#learned) {
      for (const [key, held] of ports) {
        if (held.expiresAt <= now) {
          ports.delete(key);
          this.#held--;
        }
      }
      if (ports.size === 0) this.#learned.delete(pair);
    }
  }

  async close(): Promise<void> {}
}

interface Held {
  readonly element: AllowElement;
  readonly expiresAt: number;
}

const SWEEP_MIN = 1024;

function pairKey(e: ElementKey): string {
  return `${e.source}|${e.destination}`;
}

/** With pairKey, the same identity as elementKey(). */
function portKey(e: ElementKey): string {
  return `${e.protocol}|${e.portFrom}-${e.portTo}`;
}
