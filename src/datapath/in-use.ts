/**
 * "Is there live traffic from this source to this address?", from conntrack, for the learned
 * store's eviction (an entry in use is never evicted: evicting it would end live connections).
 *
 * The store decides synchronously, so the answer is read ahead: `prepare(source)` lists the
 * source's flows (`conntrack -L -s`, the source and its sibling addresses) at most once per
 * `maxAgeMs`, bounded in time, and `inUse` answers from that listing. The DNS proxy calls
 * prepare only for an answer that has to make room (a cap is reached), so a source that never
 * reaches a cap costs nothing.
 *
 * Fail safe: with no fresh listing (conntrack failed, timed out or is missing) every candidate
 * counts as in use, so nothing is evicted and the new address is rejected, as the store does
 * when every entry is in use (its connections drop: fail closed). Counted in
 * `namegate_datapath_in_use_reads_total{result}` and logged with reason `in_use_unknown`.
 */
import type { Clock } from '../core/clock.ts';
import { F } from '../observe/fields.ts';
import type { Logger } from '../observe/log.ts';
import type { Conntrack } from './conntrack.ts';

export interface InUseOptions {
  readonly conntrack: Pick<Conntrack, 'liveDestinations'>;
  readonly clock: Clock;
  readonly log: Logger;
  /** The addresses whose flows count for a source (the source and its siblings); default itself. */
  readonly sourcesOf?: (source: string) => readonly string[];
  /** A listing answers for this long (ms); default 1000. */
  readonly maxAgeMs?: number;
  /** Listings kept at most (one per source that reached a cap recently); default 1024. */
  readonly maxSources?: number;
  /** Counts listings by result (ok, error). */
  readonly reads?: { inc(labels: { result: 'ok' | 'error' }): void };
}

interface Listing {
  readonly at: number;
  /** null: the listing failed (fail safe: everything counts as in use). */
  readonly destinations: ReadonlySet<string> | null;
}

export class ConntrackInUse {
  readonly #o: InUseOptions;
  readonly #maxAgeMs: number;
  readonly #maxSources: number;
  readonly #listings = new Map<string, Listing>();
  readonly #reading = new Map<string, Promise<void>>();

  constructor(options: InUseOptions) {
    this.#o = options;
    this.#maxAgeMs = options.maxAgeMs ?? 1000;
    this.#maxSources = options.maxSources ?? 1024;
  }

  /** Make `inUse` answer for `source` from a listing at most maxAgeMs old. Never rejects. */
  prepare(source: string): Promise<void> {
    const have = this.#listings.get(source);
    if (have && this.#o.clock.now() - have.at < this.#maxAgeMs) return Promise.resolve();
    let reading = this.#reading.get(source);
    if (!reading) {
      reading = this.#read(source).finally(() => this.#reading.delete(source));
      this.#reading.set(source, reading);
    }
    return reading;
  }

  /** The store's predicate: in use unless a fresh listing says otherwise. */
  readonly inUse = (source: string, ip: string): boolean => {
    const l = this.#listings.get(source);
    if (!l || l.destinations === null || this.#o.clock.now() - l.at >= this.#maxAgeMs) return true;
    return l.destinations.has(ip);
  };

  async #read(source: string): Promise<void> {
    const { conntrack, clock, log, reads } = this.#o;
    const sources = this.#o.sourcesOf?.(source) ?? [source];
    let destinations: ReadonlySet<string> | null = null;
    try {
      const r = await conntrack.liveDestinations(sources.length > 0 ? sources : [source]);
      if (r.ok) destinations = r.destinations;
      else throw new Error(r.error);
      reads?.inc({ result: 'ok' });
    } catch (err) {
      reads?.inc({ result: 'error' });
      log.warn(
        {
          [F.event]: 'datapath',
          [F.reason]: 'in_use_unknown',
          [F.sourceIp]: source,
          [F.error]: err instanceof Error ? err.message : String(err),
        },
        'conntrack could not be read: every address of this source counts as in use (none is evicted)',
      );
    }
    this.#listings.delete(source);
    this.#listings.set(source, { at: clock.now(), destinations });
    // Oldest listing first out (a Map keeps insertion order).
    while (this.#listings.size > this.#maxSources) {
      const oldest = this.#listings.keys().next().value;
      if (oldest === undefined) break;
      this.#listings.delete(oldest);
    }
  }
}
