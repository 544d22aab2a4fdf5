/**
 * The cluster-wide controller: while it holds the Lease it writes the status of every
 * EgressPolicy and ClusterEgressPolicy (Accepted with the validation message, Programmed,
 * observedGeneration, the number of rules and of governed pods) through the status subresource.
 * Standbys keep their caches warm and write nothing. Writes happen only when the status differs
 * from what the object carries, so the controller's own updates converge instead of looping.
 */
import { type Clock, systemClock } from '../core/clock.ts';
import { makeIdentity } from '../identity/identity.ts';
import type { Logger } from '../observe/log.ts';
import { CompiledPolicies } from '../policy/compile.ts';
import type { Policy } from '../policy/model.ts';
import { type KubeApi, KubeApiError, type KubeObject, type ResourceType, resourcePath } from './api.ts';
import { CLUSTER_EGRESS_POLICY, EGRESS_POLICY } from './crd.ts';
import {
  NAMESPACES,
  type NamespaceInfo,
  namespaceInfo,
  PODS,
  type PodInfo,
  podHoldsIps,
  podInfo,
} from './identity.ts';
import { LeaderElector } from './lease.ts';
import type { K8sMetrics } from './metrics.ts';
import { evaluatePolicyObject, type PolicyObject, policyObject } from './policy-source.ts';
import { Reflector } from './reflector.ts';
import { desiredStatus, rfc3339, statusEqual } from './status.ts';

interface StatusObject extends PolicyObject {
  readonly status: unknown;
}

export interface ControllerOptions {
  readonly api: KubeApi;
  readonly logger: Logger;
  readonly metrics: K8sMetrics;
  /** Namespace and name of the Lease. */
  readonly leaseNamespace: string;
  readonly leaseName: string;
  /** Unique per replica (the pod name). */
  readonly identity: string;
  readonly clock?: Clock;
  readonly leaseDurationSeconds?: number;
  readonly retryMs?: number;
  /** Coalesce bursts of events into one status pass. */
  readonly debounceMs?: number;
  readonly stallMs?: number;
}

export class PolicyController {
  readonly elector: LeaderElector;
  readonly policies: readonly Reflector<StatusObject>[];
  readonly pods: Reflector<PodInfo>;
  readonly namespaces: Reflector<NamespaceInfo>;
  readonly synced: Promise<void>;
  readonly #o: ControllerOptions;
  readonly #clock: Clock;
  #timer: NodeJS.Timeout | null = null;
  #retryTimer: NodeJS.Timeout | null = null;
  #pass: Promise<void> | null = null;
  #again = false;
  #stopped = false;
  #passListeners: Array<() => void> = [];

  constructor(options: ControllerOptions) {
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    const common = {
      api: options.api,
      logger: options.logger,
      metrics: options.metrics,
      ...(options.stallMs !== undefined ? { stallMs: options.stallMs } : {}),
    };
    const statusObject =
      (r: ResourceType) =>
      (raw: KubeObject): StatusObject => ({ ...policyObject(r)(raw), status: raw['status'] });
    this.policies = [EGRESS_POLICY, CLUSTER_EGRESS_POLICY].map(
      (resource) => new Reflector<StatusObject>({ ...common, resource, transform: statusObject(resource) }),
    );
    this.pods = new Reflector({ ...common, resource: PODS, transform: podInfo });
    this.namespaces = new Reflector({ ...common, resource: NAMESPACES, transform: namespaceInfo });
    for (const r of [...this.policies, this.pods, this.namespaces]) {
      (r as Reflector<unknown>).onChange(() => this.#schedule());
    }
    this.elector = new LeaderElector({
      api: options.api,
      namespace: options.leaseNamespace,
      name: options.leaseName,
      identity: options.identity,
      logger: options.logger,
      metrics: options.metrics,
      clock: this.#clock,
      ...(options.leaseDurationSeconds !== undefined
        ? { leaseDurationSeconds: options.leaseDurationSeconds }
        : {}),
      ...(options.retryMs !== undefined ? { retryMs: options.retryMs } : {}),
    });
    this.elector.onChange((leading) => {
      if (leading) this.#schedule();
    });
    this.synced = Promise.all([...this.policies, this.pods, this.namespaces].map((r) => r.synced)).then(
      () => {},
    );
  }

  start(): void {
    for (const r of [...this.policies, this.pods, this.namespaces]) r.start();
    this.elector.start();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    await this.#pass;
    await this.elector.stop();
    await Promise.all([...this.policies, this.pods, this.namespaces].map((r) => r.stop()));
  }

  notReadyReason(): string | null {
    for (const r of [...this.policies, this.pods, this.namespaces]) {
      const why = r.notReadyReason();
      if (why) return why;
    }
    return null;
  }

  /** Called after every completed status pass (tests and benchmarks wait on it). */
  onPass(listener: () => void): () => void {
    this.#passListeners.push(listener);
    return () => {
      this.#passListeners = this.#passListeners.filter((l) => l !== listener);
    };
  }

  #schedule(): void {
    if (this.#stopped) return;
    if (this.#pass) {
      this.#again = true;
      return;
    }
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#pass = this.#reconcile().finally(() => {
        this.#pass = null;
        for (const l of this.#passListeners) l();
        if (this.#again) {
          this.#again = false;
          this.#schedule();
        }
      });
    }, this.#o.debounceMs ?? 50);
  }

  async #reconcile(): Promise<void> {
    if (!this.elector.isLeader()) return;
    if ([...this.policies, this.pods, this.namespaces].some((r) => r.notReadyReason() !== null)) return;
    const objects: Array<{ resource: ResourceType; object: StatusObject }> = [];
    this.policies.forEach((reflector, i) => {
      const resource = i === 0 ? EGRESS_POLICY : CLUSTER_EGRESS_POLICY;
      for (const object of reflector.values()) objects.push({ resource, object });
    });
    const verdicts = objects.map(({ object }) => evaluatePolicyObject(object, { istioRegistryOnly: true }));
    const valid: Policy[] = [];
    for (const v of verdicts) if (v.errors.length === 0) valid.push(...v.policies);
    const counts = this.#governedCounts(valid);
    const now = rfc3339(this.#clock.wallNow());

    for (let i = 0; i < objects.length; i++) {
      if (!this.elector.isLeader() || this.#stopped) return;
      const { resource, object } = objects[i]!;
      const verdict = verdicts[i]!;
      const policy = verdict.policies[0];
      const desired = desiredStatus({
        generation: object.metadata.generation,
        errors: verdict.errors,
        rules: policy?.rules.length ?? 0,
        governedPods: policy ? (counts.get(refKey(policy)) ?? 0) : 0,
        previous: object.status,
        now,
      });
      if (statusEqual(object.status, desired)) continue;
      const path = resourcePath(resource, {
        namespace: object.metadata.namespace,
        name: object.metadata.name,
        subresource: 'status',
      });
      try {
        await this.#o.api.request('PATCH', path, {
          body: { status: desired },
          contentType: 'application/merge-patch+json',
        });
        this.#o.metrics.statusWrites.inc({ result: 'ok' });
      } catch (err) {
        const gone = err instanceof KubeApiError && err.status === 404;
        this.#o.metrics.statusWrites.inc({ result: gone ? 'gone' : 'error' });
        if (!gone) {
          this.#o.logger.warn(
            {
              event: 'controller',
              reason: 'status_write_failed',
              policy: verdict.object,
              err: err instanceof Error ? err.message : String(err),
            },
            'could not write policy status',
          );
          this.#retry();
        }
      }
    }
  }

  /** Try again later (not at once: a lasting failure such as a 403 must not spin). */
  #retry(): void {
    if (this.#retryTimer || this.#stopped) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      this.#schedule();
    }, 2000);
  }

  /** Policy ref -> pods with an address that the policy selects (any node). */
  #governedCounts(policies: Policy[]): Map<string, number> {
    const set = new CompiledPolicies(policies);
    const counts = new Map<string, number>();
    for (const pod of this.pods.values()) {
      if (!podHoldsIps(pod)) continue;
      const identity = makeIdentity(
        `pod:${pod.key}`,
        pod.namespace,
        pod.labels,
        this.namespaces.get(pod.namespace)?.labels ?? {},
      );
      for (let p = 0; p < set.size; p++) {
        if (!set.selects(p, identity)) continue;
        const key = refKey(set.policies[p]!);
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
    }
    return counts;
  }
}

function refKey(p: Policy): string {
  return `${p.ref.kind}/${p.ref.namespace ?? ''}/${p.ref.name}`;
}
