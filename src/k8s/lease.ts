/**
 * Leader election through a coordination.k8s.io/v1 Lease, with the semantics of client-go's
 * leaderelection: a candidate takes the Lease when it is free or when its holder has not renewed
 * it for leaseDuration (measured on the candidate's own monotonic clock from the last change it
 * saw, so clock skew between nodes does not matter); the holder renews every retry period and
 * steps down by itself when it could not renew for renewDeadline, before anyone else may take
 * over. Writes carry the resourceVersion read, so two candidates never both win one round.
 */
import { type Clock, systemClock } from '../core/clock.ts';
import type { Logger } from '../observe/log.ts';
import { type KubeApi, KubeApiError, type KubeObject, type ResourceType, resourcePath } from './api.ts';
import type { K8sMetrics } from './metrics.ts';

export const LEASES: ResourceType = {
  group: 'coordination.k8s.io',
  version: 'v1',
  plural: 'leases',
  kind: 'Lease',
  namespaced: true,
};

interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

interface Lease extends KubeObject {
  spec?: LeaseSpec;
}

export interface LeaderElectorOptions {
  readonly api: KubeApi;
  readonly namespace: string;
  readonly name: string;
  readonly identity: string;
  readonly logger: Logger;
  readonly metrics: K8sMetrics;
  readonly clock?: Clock;
  readonly leaseDurationSeconds?: number;
  /** Step down when renewals have failed for this long; below leaseDuration. */
  readonly renewDeadlineMs?: number;
  readonly retryMs?: number;
}

/** metav1.MicroTime: RFC 3339 with six fractional digits. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export class LeaderElector {
  readonly #o: LeaderElectorOptions;
  readonly #clock: Clock;
  readonly #durationMs: number;
  readonly #renewDeadlineMs: number;
  readonly #retryMs: number;
  #leading = false;
  #lastRenew = -Infinity;
  #observed: { key: string; at: number } | null = null;
  #listeners: Array<(leading: boolean) => void> = [];
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  #stopped = false;

  constructor(options: LeaderElectorOptions) {
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    this.#durationMs = (options.leaseDurationSeconds ?? 15) * 1000;
    this.#renewDeadlineMs = options.renewDeadlineMs ?? Math.round((this.#durationMs * 2) / 3);
    this.#retryMs = options.retryMs ?? Math.max(500, Math.round(this.#durationMs / 7.5));
  }

  get identity(): string {
    return this.#o.identity;
  }

  /** True while this candidate holds the Lease and renewed it within renewDeadline. */
  isLeader(): boolean {
    return this.#leading && this.#clock.now() - this.#lastRenew < this.#renewDeadlineMs;
  }

  onChange(listener: (leading: boolean) => void): () => void {
    this.#listeners.push(listener);
    return () => {
      this.#listeners = this.#listeners.filter((l) => l !== listener);
    };
  }

  start(): void {
    if (this.#running || this.#stopped) return;
    const tick = (): void => {
      this.#running = this.#tryAcquireOrRenew().finally(() => {
        this.#running = null;
        if (!this.#stopped) this.#timer = setTimeout(tick, this.#retryMs);
      });
    };
    tick();
  }

  /** Stop; a holder releases the Lease so a standby takes over at once. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#running;
    if (this.#leading) {
      try {
        const lease = await this.#get();
        if (lease?.spec?.holderIdentity === this.#o.identity) {
          await this.#o.api.request('PUT', this.#path(this.#o.name), {
            body: { ...lease, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1 } },
          });
        }
      } catch (err) {
        this.#o.logger.warn(
          {
            event: 'lease',
            reason: 'lease_release_failed',
            err: err instanceof Error ? err.message : String(err),
          },
          'could not release the lease; it expires by itself',
        );
      }
      this.#setLeading(false);
    }
  }

  #path(name?: string): string {
    return resourcePath(LEASES, { namespace: this.#o.namespace, name });
  }

  async #get(): Promise<Lease | null> {
    try {
      return await this.#o.api.get<Lease>(this.#path(this.#o.name));
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return null;
      throw err;
    }
  }

  async #tryAcquireOrRenew(): Promise<void> {
    const o = this.#o;
    const now = this.#clock.now();
    const wall = microTime(this.#clock.wallNow());
    const durationSeconds = Math.round(this.#durationMs / 1000);
    try {
      const lease = await this.#get();
      if (!lease) {
        await o.api.request('POST', this.#path(), {
          body: {
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            metadata: { name: o.name, namespace: o.namespace },
            spec: {
              holderIdentity: o.identity,
              leaseDurationSeconds: durationSeconds,
              acquireTime: wall,
              renewTime: wall,
              leaseTransitions: 0,
            },
          },
        });
        this.#renewed(now);
        return;
      }
      const spec = lease.spec ?? {};
      const holder = spec.holderIdentity ?? '';
      const seen = `${holder}|${spec.renewTime ?? ''}|${lease.metadata?.resourceVersion ?? ''}`;
      if (!this.#observed || this.#observed.key !== seen) this.#observed = { key: seen, at: now };
      const theirDurationMs = (spec.leaseDurationSeconds ?? durationSeconds) * 1000;
      const expired = now - this.#observed.at > theirDurationMs;
      if (holder !== o.identity && holder !== '' && !expired) {
        this.#setLeading(false);
        return;
      }
      const taking = holder !== o.identity;
      await o.api.request('PUT', this.#path(o.name), {
        body: {
          ...lease,
          spec: {
            ...spec,
            holderIdentity: o.identity,
            leaseDurationSeconds: durationSeconds,
            renewTime: wall,
            ...(taking ? { acquireTime: wall, leaseTransitions: (spec.leaseTransitions ?? 0) + 1 } : {}),
          },
        },
      });
      this.#renewed(now);
    } catch (err) {
      // A conflict means someone else wrote first: not ours this round.
      if (!(err instanceof KubeApiError && err.status === 409)) {
        o.logger.warn(
          {
            event: 'lease',
            reason: 'lease_renew_failed',
            err: err instanceof Error ? err.message : String(err),
          },
          'could not acquire or renew the lease',
        );
      }
      if (!this.isLeader()) this.#setLeading(false);
    }
  }

  #renewed(now: number): void {
    this.#lastRenew = now;
    this.#setLeading(true);
  }

  #setLeading(leading: boolean): void {
    if (this.#leading === leading) return;
    this.#leading = leading;
    this.#o.metrics.leader.set(leading ? 1 : 0);
    this.#o.logger.info(
      {
        event: 'lease',
        reason: leading ? 'lease_acquired' : 'lease_lost',
        identity: this.#o.identity,
        lease: `${this.#o.namespace}/${this.#o.name}`,
      },
      leading ? 'leading' : 'not leading',
    );
    for (const l of this.#listeners) l(leading);
  }
}
