/**
 * List + watch one resource into an in-memory store, and keep it right across everything a
 * watch can go through:
 * - the server ends the watch (timeoutSeconds): watch again from the last resourceVersion;
 * - 410 Gone (the resourceVersion was compacted away) or any error: relist, with capped
 *   exponential backoff and jitter so a broken API server is not hammered;
 * - a silent stall (no event, no bookmark, no byte for `stallMs`): the watchdog aborts the
 *   stream and relists (client-node's informer can hang forever here);
 * - the resource is not served (its CRD is not installed): the store is empty, the reflector
 *   counts as synced, and it looks again every `absentRetryMs`.
 * A relist replaces the store by diff: listeners get added/modified/deleted events for exactly
 * what changed while the watch was down, so nothing is lost and nothing is replayed twice.
 * `synced` resolves after the first complete list; readiness waits on it.
 */
import type { Logger } from '../observe/log.ts';
import {
  type KubeApi,
  KubeApiError,
  type KubeList,
  type KubeObject,
  type ResourceType,
  resourcePath,
} from './api.ts';
import type { K8sMetrics } from './metrics.ts';

export type ReflectorEvent<T> =
  | { readonly type: 'added'; readonly key: string; readonly object: T }
  | { readonly type: 'modified'; readonly key: string; readonly object: T; readonly old: T }
  | { readonly type: 'deleted'; readonly key: string; readonly object: T };

export type ReflectorState = 'starting' | 'synced' | 'absent' | 'stopped';

export interface ReflectorOptions<T> {
  readonly api: KubeApi;
  readonly resource: ResourceType;
  /** Keep only what the consumer needs (memory: a Pod carries managedFields and much more). */
  readonly transform: (raw: KubeObject) => T;
  readonly logger: Logger;
  readonly metrics: K8sMetrics;
  /** Metric and log label; defaults to the plural. */
  readonly name?: string;
  readonly namespace?: string;
  readonly fieldSelector?: string;
  readonly labelSelector?: string;
  readonly pageSize?: number;
  /** The server ends each watch after this many seconds, jittered up to twice that. */
  readonly watchTimeoutSeconds?: number;
  /** Watchdog: no byte on the watch for this long means the stream is dead. */
  readonly stallMs?: number;
  readonly backoffInitialMs?: number;
  readonly backoffMaxMs?: number;
  readonly absentRetryMs?: number;
  /**
   * Ask for bookmarks (default true): they keep the resourceVersion fresh on quiet resources, so
   * a re-watch rarely meets a 410. Off, the watch resumes from the last object's version.
   */
  readonly bookmarks?: boolean;
}

interface Entry<T> {
  readonly object: T;
  readonly rv: string;
}

class StallError extends Error {}

/** "namespace/name", or "name" for cluster-scoped objects. */
export function objectKey(obj: KubeObject): string {
  const m = obj.metadata ?? {};
  return m.namespace ? `${m.namespace}/${m.name ?? ''}` : (m.name ?? '');
}

export class Reflector<T> {
  readonly name: string;
  readonly synced: Promise<void>;
  readonly #o: ReflectorOptions<T>;
  readonly #path: string;
  #store = new Map<string, Entry<T>>();
  #rv = '';
  #state: ReflectorState = 'starting';
  #listeners: Array<(events: ReflectorEvent<T>[]) => void> = [];
  #resolveSynced: () => void = () => {};
  #stopped = false;
  #abort: AbortController | null = null;
  #wake: (() => void) | null = null;
  #loop: Promise<void> | null = null;
  #lastError = '';

  constructor(options: ReflectorOptions<T>) {
    this.#o = options;
    this.name = options.name ?? options.resource.plural;
    this.#path = resourcePath(options.resource, { namespace: options.namespace });
    this.synced = new Promise((resolve) => {
      this.#resolveSynced = resolve;
    });
  }

  get state(): ReflectorState {
    return this.#state;
  }

  /** Why the reflector is not synced yet (for /readyz), or null. */
  notReadyReason(): string | null {
    if (this.#state === 'synced' || this.#state === 'absent') return null;
    return `${this.name}: not synced${this.#lastError ? ` (${this.#lastError})` : ''}`;
  }

  get size(): number {
    return this.#store.size;
  }

  get(key: string): T | undefined {
    return this.#store.get(key)?.object;
  }

  *values(): IterableIterator<T> {
    for (const e of this.#store.values()) yield e.object;
  }

  *entries(): IterableIterator<[string, T]> {
    for (const [k, e] of this.#store) yield [k, e.object];
  }

  /** Listeners get one batch per watch event and one per relist (possibly empty). */
  onChange(listener: (events: ReflectorEvent<T>[]) => void): () => void {
    this.#listeners.push(listener);
    return () => {
      this.#listeners = this.#listeners.filter((l) => l !== listener);
    };
  }

  start(): void {
    if (this.#loop) return;
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#abort?.abort(new Error('reflector stopped'));
    this.#wake?.();
    await this.#loop;
    this.#state = 'stopped';
  }

  async #run(): Promise<void> {
    const m = this.#o.metrics;
    let failures = 0;
    let needList = true;
    while (!this.#stopped) {
      let reason: string;
      const started = Date.now();
      try {
        if (needList) {
          await this.#relist();
          needList = false;
        }
        reason = await this.#watchOnce();
        if (reason === 'gone') needList = true;
        failures = Date.now() - started < 1000 ? failures + 1 : 0;
      } catch (err) {
        if (this.#stopped) break;
        if (err instanceof KubeApiError && err.status === 404 && needList) {
          this.#becomeAbsent();
          m.watchRestarts.inc({ resource: this.name, reason: 'absent' });
          await this.#sleep(this.#o.absentRetryMs ?? 30_000);
          continue;
        }
        needList = true;
        if (err instanceof KubeApiError && err.status === 410) {
          // The server may refuse a too-old resourceVersion with HTTP 410 instead of an ERROR
          // event (watches served from etcd do): same meaning, relist at once.
          reason = 'gone';
        } else {
          reason = err instanceof StallError ? 'stall' : 'error';
          this.#lastError = err instanceof Error ? err.message : String(err);
          this.#o.logger.warn(
            { event: 'k8s', reason: `watch_${reason}`, resource: this.name, err: this.#lastError },
            'watch failed; relisting',
          );
          failures++;
        }
      }
      if (this.#stopped) break;
      m.watchRestarts.inc({ resource: this.name, reason });
      if (failures > 0) await this.#sleep(this.#backoff(failures));
    }
  }

  #backoff(failures: number): number {
    const initial = this.#o.backoffInitialMs ?? 250;
    const max = this.#o.backoffMaxMs ?? 30_000;
    const base = Math.min(max, initial * 2 ** Math.min(failures - 1, 20));
    return base / 2 + Math.random() * (base / 2);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = () => {
        this.#wake = null;
        done();
      };
    });
  }

  async #relist(): Promise<void> {
    const o = this.#o;
    const next = new Map<string, Entry<T>>();
    let cont: string | undefined;
    let rv = '';
    do {
      this.#abort = new AbortController();
      const list = await o.api.request<KubeList>('GET', this.#path, {
        query: {
          limit: o.pageSize ?? 500,
          continue: cont,
          fieldSelector: o.fieldSelector,
          labelSelector: o.labelSelector,
        },
        signal: this.#abort.signal,
      });
      for (const raw of list.items ?? []) {
        next.set(objectKey(raw), { object: o.transform(raw), rv: raw.metadata?.resourceVersion ?? '' });
      }
      rv = list.metadata?.resourceVersion ?? rv;
      cont = list.metadata?.continue || undefined;
      if (this.#stopped) return;
    } while (cont !== undefined);

    const events: ReflectorEvent<T>[] = [];
    for (const [key, e] of next) {
      const old = this.#store.get(key);
      if (!old) events.push({ type: 'added', key, object: e.object });
      else if (old.rv !== e.rv) events.push({ type: 'modified', key, object: e.object, old: old.object });
    }
    for (const [key, e] of this.#store)
      if (!next.has(key)) events.push({ type: 'deleted', key, object: e.object });
    this.#store = next;
    this.#rv = rv;
    this.#lastError = '';
    o.metrics.relists.inc({ resource: this.name });
    o.metrics.objects.set({ resource: this.name }, next.size);
    this.#markSynced('synced');
    this.#emit(events);
  }

  #becomeAbsent(): void {
    const events: ReflectorEvent<T>[] = [];
    for (const [key, e] of this.#store) events.push({ type: 'deleted', key, object: e.object });
    this.#store = new Map();
    this.#rv = '';
    this.#o.metrics.objects.set({ resource: this.name }, 0);
    if (this.#state !== 'absent') {
      this.#o.logger.info(
        { event: 'k8s', reason: 'resource_absent', resource: this.name },
        'resource not served (CRD not installed?); will look again',
      );
    }
    this.#markSynced('absent');
    this.#emit(events);
  }

  #markSynced(state: 'synced' | 'absent'): void {
    this.#state = state;
    this.#o.metrics.synced.set({ resource: this.name }, 1);
    this.#resolveSynced();
  }

  #emit(events: ReflectorEvent<T>[]): void {
    for (const l of this.#listeners) {
      try {
        l(events);
      } catch (err) {
        this.#o.logger.error(
          {
            event: 'k8s',
            reason: 'listener_failed',
            resource: this.name,
            err: err instanceof Error ? err.message : String(err),
          },
          'a reflector listener threw',
        );
      }
    }
  }

  /** One watch from the current resourceVersion. Resolves 'closed' or 'gone'; throws otherwise. */
  async #watchOnce(): Promise<string> {
    const o = this.#o;
    const abort = new AbortController();
    this.#abort = abort;
    const stallMs = o.stallMs ?? 150_000;
    let stalled = false;
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        stalled = true;
        abort.abort(new StallError(`no data on the watch for ${stallMs} ms`));
      }, stallMs);
    };
    const base = o.watchTimeoutSeconds ?? 300;
    let gone = false;
    arm();
    try {
      await o.api.watch(
        this.#path,
        {
          resourceVersion: this.#rv,
          allowWatchBookmarks: o.bookmarks ?? true,
          timeoutSeconds: Math.round(base * (1 + Math.random())),
          fieldSelector: o.fieldSelector,
          labelSelector: o.labelSelector,
        },
        (event) => {
          if (gone) return;
          o.metrics.lastEvent.set({ resource: this.name }, Date.now() / 1000);
          if (event.type === 'ERROR') {
            const status = event.object as { code?: number; message?: string };
            if (status.code === 410) {
              gone = true;
              abort.abort(new Error('410 Gone'));
              return;
            }
            throw new KubeApiError(status.code ?? 0, 'WatchError', status.message ?? 'watch error event');
          }
          this.#apply(event.type, event.object);
        },
        { signal: abort.signal, onActivity: arm },
      );
      return gone ? 'gone' : 'closed';
    } catch (err) {
      if (gone) return 'gone';
      if (stalled) throw new StallError(`no data on the watch for ${stallMs} ms`);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  #apply(type: string, raw: KubeObject): void {
    const rv = raw.metadata?.resourceVersion ?? '';
    if (type === 'BOOKMARK') {
      if (rv !== '') this.#rv = rv;
      return;
    }
    const key = objectKey(raw);
    const old = this.#store.get(key);
    let event: ReflectorEvent<T> | null = null;
    if (type === 'DELETED') {
      if (old) {
        this.#store.delete(key);
        event = { type: 'deleted', key, object: old.object };
      }
    } else if (type === 'ADDED' || type === 'MODIFIED') {
      const object = this.#o.transform(raw);
      this.#store.set(key, { object, rv });
      event = old ? { type: 'modified', key, object, old: old.object } : { type: 'added', key, object };
    }
    if (rv !== '') this.#rv = rv;
    this.#o.metrics.objects.set({ resource: this.name }, this.#store.size);
    if (event) this.#emit([event]);
  }
}
