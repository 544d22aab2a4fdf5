/**
 * The long-lived batching writer. Callers submit items (a learn or forget call each); while a
 * transaction is in flight, new items wait and all of them join the next transaction (up to
 * maxBatch elements). Each caller's promise settles when the transaction carrying its items
 * committed or failed: never before, never silently. When a transaction with several callers
 * fails, it is split in halves and retried, so one caller's bad element does not fail the
 * others (unless the failure is one every transaction would hit, such as a full set).
 * The queue is bounded in elements: past it, submit rejects at once with NG_LIMIT_EXCEEDED.
 * Exclusive tasks (reconcile, model load) run alone, in queue order.
 */
import { ErrorCode, NamegateError } from '../core/errors.ts';

export interface WriterItem {
  /** Elements this item carries (its share of the queue and batch bounds). */
  readonly weight: number;
}

export interface WriterOptions<T extends WriterItem> {
  readonly maxQueued: number;
  readonly maxBatch: number;
  /** Run one transaction for these items; throw to fail them all. */
  readonly commit: (items: readonly T[]) => Promise<void>;
  /** Whether retrying a failed transaction in halves can help. */
  readonly shouldSplit?: (err: unknown) => boolean;
  readonly onQueueChange?: (queuedWeight: number) => void;
  readonly onReject?: () => void;
  /**
   * When an idle writer starts its next transaction: `now` (in the submitting call), or
   * `immediate` (setImmediate: after the callbacks of the current event-loop phase, so calls
   * made in one burst, e.g. several DNS answers read in one poll, share one transaction).
   */
  readonly start?: 'now' | 'immediate';
}

type Entry<T> =
  | {
      readonly kind: 'item';
      readonly item: T;
      readonly resolve: () => void;
      readonly reject: (e: unknown) => void;
    }
  | {
      readonly kind: 'task';
      readonly run: () => Promise<unknown>;
      readonly resolve: (v: unknown) => void;
      readonly reject: (e: unknown) => void;
    };

export class BatchWriter<T extends WriterItem> {
  readonly #opts: WriterOptions<T>;
  readonly #queue: Entry<T>[] = [];
  #queuedWeight = 0;
  #running = false;
  #closed = false;
  #idle: (() => void)[] = [];

  constructor(options: WriterOptions<T>) {
    this.#opts = options;
  }

  get queuedWeight(): number {
    return this.#queuedWeight;
  }

  submit(item: T): Promise<void> {
    if (this.#closed)
      return Promise.reject(new NamegateError(ErrorCode.DatapathCommit, 'datapath writer is closed'));
    if (this.#queuedWeight + item.weight > this.#opts.maxQueued) {
      this.#opts.onReject?.();
      return Promise.reject(
        new NamegateError(
          ErrorCode.LimitExceeded,
          `datapath queue is full (${this.#queuedWeight} elements queued, limit ${this.#opts.maxQueued})`,
        ),
      );
    }
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ kind: 'item', item, resolve, reject });
      this.#queuedWeight += item.weight;
      this.#opts.onQueueChange?.(this.#queuedWeight);
      this.#kick();
    });
  }

  exclusive<R>(run: () => Promise<R>): Promise<R> {
    if (this.#closed)
      return Promise.reject(new NamegateError(ErrorCode.DatapathCommit, 'datapath writer is closed'));
    return new Promise<R>((resolve, reject) => {
      this.#queue.push({ kind: 'task', run, resolve: resolve as (v: unknown) => void, reject });
      this.#kick();
    });
  }

  /** Resolves when the queue is empty and nothing is in flight. */
  idle(): Promise<void> {
    if (!this.#running && this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** No more submissions; what is queued still runs. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.idle();
  }

  #kick(): void {
    if (this.#running) return;
    this.#running = true;
    if (this.#opts.start === 'immediate') setImmediate(() => void this.#loop());
    else void this.#loop();
  }

  async #loop(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const head = this.#queue[0] as Entry<T>;
        if (head.kind === 'task') {
          this.#queue.shift();
          try {
            head.resolve(await head.run());
          } catch (err) {
            head.reject(err);
          }
          continue;
        }
        const batch: Extract<Entry<T>, { kind: 'item' }>[] = [];
        let weight = 0;
        while (this.#queue.length > 0) {
          const e = this.#queue[0] as Entry<T>;
          if (e.kind !== 'item') break;
          if (batch.length > 0 && weight + e.item.weight > this.#opts.maxBatch) break;
          this.#queue.shift();
          batch.push(e);
          weight += e.item.weight;
        }
        this.#queuedWeight -= weight;
        this.#opts.onQueueChange?.(this.#queuedWeight);
        await this.#commit(batch);
      }
    } finally {
      this.#running = false;
      const waiters = this.#idle;
      this.#idle = [];
      for (const w of waiters) w();
      if (this.#queue.length > 0) this.#kick();
    }
  }

  async #commit(batch: readonly Extract<Entry<T>, { kind: 'item' }>[]): Promise<void> {
    try {
      await this.#opts.commit(batch.map((e) => e.item));
      for (const e of batch) e.resolve();
    } catch (err) {
      if (batch.length > 1 && (this.#opts.shouldSplit?.(err) ?? true)) {
        const mid = Math.ceil(batch.length / 2);
        await this.#commit(batch.slice(0, mid));
        await this.#commit(batch.slice(mid));
        return;
      }
      for (const e of batch) e.reject(err);
    }
  }
}
