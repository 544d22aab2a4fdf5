/**
 * Coalesce learned elements into datapath batches. While one learn() is in flight, new elements
 * gather for the next one; each answer waits for the batch that carries its elements. An answer
 * whose addresses were learned by an earlier answer still in flight waits for that batch too
 * (by (source, ip)), so no answer is released before the kernel holds what it points at.
 */
import type { AllowElement, Datapath } from '../datapath/datapath.ts';

interface Batch {
  readonly elements: AllowElement[];
  readonly keys: string[];
  readonly promise: Promise<void>;
  resolve(): void;
  reject(err: unknown): void;
}

export function holdKey(source: string, ip: string): string {
  return `${source}|${ip}`;
}

export class CommitBatcher {
  readonly #datapath: Datapath;
  #next: Batch | null = null;
  #inFlight = false;
  #scheduled = false;
  readonly #pending = new Map<string, Promise<void>>();
  /** Observes each batch's commit time (ms) and size. */
  readonly #onCommit: (ms: number, elements: number, ok: boolean) => void;
  readonly #now: () => number;

  constructor(
    datapath: Datapath,
    now: () => number,
    onCommit: (ms: number, elements: number, ok: boolean) => void = () => {},
  ) {
    this.#datapath = datapath;
    this.#now = now;
    this.#onCommit = onCommit;
  }

  /** Queue elements; resolves when the batch carrying them is committed. */
  submit(elements: readonly AllowElement[], keys: readonly string[]): Promise<void> {
    let batch = this.#next;
    if (!batch) {
      let resolve!: () => void;
      let reject!: (err: unknown) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      // Holders attach their own handlers; this one keeps a batch nobody waits for any more
      // (all holds timed out) from becoming an unhandled rejection.
      promise.catch(() => {});
      batch = { elements: [], keys: [], promise, resolve, reject };
      this.#next = batch;
    }
    for (const e of elements) batch.elements.push(e);
    for (const k of keys) {
      batch.keys.push(k);
      this.#pending.set(k, batch.promise);
    }
    this.#schedule();
    return batch.promise;
  }

  /** The commit in progress (or queued) for (source, ip), if any. */
  pendingFor(key: string): Promise<void> | undefined {
    return this.#pending.get(key);
  }

  get pendingKeys(): number {
    return this.#pending.size;
  }

  #schedule(): void {
    if (this.#inFlight || this.#scheduled) return;
    this.#scheduled = true;
    // setImmediate: answers that arrive in the same I/O turn join one batch.
    setImmediate(() => {
      this.#scheduled = false;
      this.#flush();
    });
  }

  #flush(): void {
    const batch = this.#next;
    if (!batch || this.#inFlight) return;
    this.#next = null;
    this.#inFlight = true;
    const started = this.#now();
    const done = (ok: boolean) => {
      this.#onCommit(this.#now() - started, batch.elements.length, ok);
      this.#inFlight = false;
      for (const k of batch.keys) if (this.#pending.get(k) === batch.promise) this.#pending.delete(k);
      if (this.#next) this.#schedule();
    };
    let learning: Promise<void>;
    try {
      learning = this.#datapath.learn(batch.elements);
    } catch (err) {
      learning = Promise.reject(err);
    }
    learning.then(
      () => {
        done(true);
        batch.resolve();
      },
      (err: unknown) => {
        done(false);
        batch.reject(err);
      },
    );
  }
}
