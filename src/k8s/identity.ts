/**
 * Identity from the Kubernetes API: the pods of this node (spec.nodeName) and every namespace's
 * labels. A pod IP maps to the identity of the pod that holds it; an address no pod of this node
 * holds is unknown (lookup returns undefined: ungoverned, and nothing is learned for it).
 *
 * Address reuse: an IP leaves the map as soon as its pod is deleted, reaches a terminal phase
 * (the CNI frees the address then) or reports other IPs, and listeners hear of it (with the
 * removed entries) before any later event can hand the address to another pod, because
 * watch events arrive in resourceVersion order and are applied one at a time. Host-network pods
 * are skipped: their address is the node's, so nothing can tell their packets from the node's
 * own (L3-09). They are not silently skipped: each live one is logged once (reason
 * host_network_pod) and counted in namegate_k8s_host_network_pods, so an operator sees what
 * namegate leaves ungoverned. When two live pods claim one address (a stale status), the pod
 * that reported it last wins and the conflict is logged.
 *
 * Identity objects are reused while nothing about a pod changes: CompiledPolicies caches its
 * per-identity selection by object, so a new object means "evaluate again".
 */
import { makeIdentity } from '../identity/identity.ts';
import type { Logger } from '../observe/log.ts';
import type { Identity } from '../policy/model.ts';
import type { Labels } from '../policy/selector.ts';
import type { KubeApi, KubeObject, ResourceType } from './api.ts';
import type { K8sMetrics } from './metrics.ts';
import { Reflector, type ReflectorEvent } from './reflector.ts';

export const PODS: ResourceType = { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true };
export const NAMESPACES: ResourceType = {
  group: '',
  version: 'v1',
  plural: 'namespaces',
  kind: 'Namespace',
  namespaced: false,
};

/** What namegate keeps of a Pod. */
export interface PodInfo {
  readonly key: string;
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly labels: Labels;
  readonly ips: readonly string[];
  readonly phase: string;
  readonly hostNetwork: boolean;
  readonly nodeName: string;
  readonly created: string;
}

export interface NamespaceInfo {
  readonly name: string;
  readonly labels: Labels;
}

export function podInfo(raw: KubeObject): PodInfo {
  const m = raw.metadata ?? {};
  const spec = (raw['spec'] ?? {}) as { hostNetwork?: boolean; nodeName?: string };
  const status = (raw['status'] ?? {}) as { phase?: string; podIP?: string; podIPs?: Array<{ ip?: string }> };
  const ips = new Set<string>();
  for (const p of status.podIPs ?? []) if (p.ip) ips.add(p.ip);
  if (ips.size === 0 && status.podIP) ips.add(status.podIP);
  return {
    key: `${m.namespace ?? ''}/${m.name ?? ''}`,
    namespace: m.namespace ?? '',
    name: m.name ?? '',
    uid: m.uid ?? '',
    labels: { ...(m.labels ?? {}) },
    ips: [...ips],
    phase: status.phase ?? '',
    hostNetwork: spec.hostNetwork === true,
    nodeName: spec.nodeName ?? '',
    created: m.creationTimestamp ?? '',
  };
}

export function namespaceInfo(raw: KubeObject): NamespaceInfo {
  return { name: raw.metadata?.name ?? '', labels: { ...(raw.metadata?.labels ?? {}) } };
}

/** Does this pod hold its addresses (so they identify it)? */
export function podHoldsIps(pod: PodInfo): boolean {
  return !pod.hostNetwork && pod.ips.length > 0 && pod.phase !== 'Succeeded' && pod.phase !== 'Failed';
}

/** One change of the mapping: entries that went away (or changed identity) and entries now present. */
export interface IdentityDelta {
  readonly removed: ReadonlyArray<readonly [string, Identity]>;
  readonly added: ReadonlyArray<readonly [string, Identity]>;
}

export interface KubeIdentityOptions {
  readonly api: KubeApi;
  readonly nodeName: string;
  readonly logger: Logger;
  readonly metrics: K8sMetrics;
  readonly stallMs?: number;
  readonly watchTimeoutSeconds?: number;
}

export class KubeIdentityProvider {
  readonly pods: Reflector<PodInfo>;
  readonly namespaces: Reflector<NamespaceInfo>;
  readonly synced: Promise<void>;
  readonly #o: KubeIdentityOptions;
  /** ip -> the identity in force for it. */
  readonly #byIp = new Map<string, Identity>();
  /** ip -> keys of every live pod of this node that reports it. */
  readonly #claims = new Map<string, Set<string>>();
  /** pod key -> its identity object (reused until the pod or its namespace changes). */
  readonly #identities = new Map<string, Identity>();
  /** Keys of the live host-network pods of this node (never identities; counted and logged). */
  readonly #hostNetwork = new Set<string>();
  #listeners: Array<(delta: IdentityDelta) => void> = [];

  constructor(options: KubeIdentityOptions) {
    this.#o = options;
    const common = {
      api: options.api,
      logger: options.logger,
      metrics: options.metrics,
      ...(options.stallMs !== undefined ? { stallMs: options.stallMs } : {}),
      ...(options.watchTimeoutSeconds !== undefined
        ? { watchTimeoutSeconds: options.watchTimeoutSeconds }
        : {}),
    };
    this.pods = new Reflector({
      ...common,
      resource: PODS,
      fieldSelector: `spec.nodeName=${options.nodeName}`,
      transform: podInfo,
    });
    this.namespaces = new Reflector({ ...common, resource: NAMESPACES, transform: namespaceInfo });
    this.pods.onChange((events) => this.#onPods(events));
    this.namespaces.onChange((events) => this.#onNamespaces(events));
    this.synced = Promise.all([this.pods.synced, this.namespaces.synced]).then(() => {});
  }

  start(): void {
    // Namespaces first: pods read their namespace's labels when they arrive.
    this.namespaces.start();
    this.pods.start();
  }

  async stop(): Promise<void> {
    await Promise.all([this.pods.stop(), this.namespaces.stop()]);
  }

  /** null when both reflectors have synced, else why not (for /readyz). */
  notReadyReason(): string | null {
    return this.namespaces.notReadyReason() ?? this.pods.notReadyReason();
  }

  lookup(ip: string): Identity | undefined {
    return this.#byIp.get(ip);
  }

  entries(): Iterable<readonly [string, Identity]> {
    return this.#byIp.entries();
  }

  /** Every address of the pod that holds `ip` (its IPv4 and IPv6 addresses). */
  siblings(ip: string): readonly string[] {
    const identity = this.#byIp.get(ip);
    if (!identity) return [ip];
    const out: string[] = [];
    for (const [other, id] of this.#byIp) if (id === identity) out.push(other);
    return out;
  }

  get size(): number {
    return this.#byIp.size;
  }

  /** Keys ("namespace/name") of the live host-network pods of this node: not governed. */
  hostNetworkPods(): readonly string[] {
    return [...this.#hostNetwork];
  }

  /**
   * Called after every change with what changed. The agent removes a removed entry's elements
   * and flows before it acts on anything else, which is what keeps a reused address from
   * inheriting the previous pod's access.
   */
  onChange(listener: (delta: IdentityDelta) => void): () => void {
    this.#listeners.push(listener);
    return () => {
      this.#listeners = this.#listeners.filter((l) => l !== listener);
    };
  }

  #identityOf(pod: PodInfo): Identity {
    const known = this.#identities.get(pod.key);
    if (known) return known;
    const ns = this.namespaces.get(pod.namespace);
    const identity = makeIdentity(`pod:${pod.key}`, pod.namespace, pod.labels, ns?.labels ?? {});
    this.#identities.set(pod.key, identity);
    return identity;
  }

  #onPods(events: ReflectorEvent<PodInfo>[]): void {
    const touched = new Set<string>();
    for (const e of events) {
      const before = e.type === 'added' ? null : e.type === 'modified' ? e.old : e.object;
      const after = e.type === 'deleted' ? null : e.object;
      const keep = new Set(after && podHoldsIps(after) ? after.ips : []);
      // Only addresses the pod gave up leave its claims: a Set keeps insertion order, which
      // is the order pods reported an address in, and the latest claimant wins a conflict.
      if (before) for (const ip of before.ips) if (!keep.has(ip)) this.#claims.get(ip)?.delete(before.key);
      if (!(before && after && sameIdentity(before, after))) this.#identities.delete(e.key);
      if (after) {
        for (const ip of keep) {
          let set = this.#claims.get(ip);
          if (!set) {
            set = new Set();
            this.#claims.set(ip, set);
          }
          if (!set.has(after.key)) set.add(after.key);
        }
      }
      for (const ip of before?.ips ?? []) touched.add(ip);
      for (const ip of after?.ips ?? []) touched.add(ip);
      this.#trackHostNetwork(e.key, after);
    }
    this.#o.metrics.hostNetworkPods.set(this.#hostNetwork.size);
    this.#recompute(touched);
  }

  /** Follow one pod's host-network state; log a pod the first time it is seen live. */
  #trackHostNetwork(key: string, pod: PodInfo | null): void {
    const live = pod?.hostNetwork === true && pod.phase !== 'Succeeded' && pod.phase !== 'Failed';
    if (!live) {
      this.#hostNetwork.delete(key);
      return;
    }
    if (this.#hostNetwork.has(key)) return;
    this.#hostNetwork.add(key);
    this.#o.logger.warn(
      { event: 'identity', reason: 'host_network_pod', identity: `pod:${key}` },
      'host-network pod: it shares the node address, so namegate does not govern it',
    );
  }

  #onNamespaces(events: ReflectorEvent<NamespaceInfo>[]): void {
    const changed = new Set<string>();
    for (const e of events) {
      if (e.type === 'modified' && sameLabels(e.old.labels, e.object.labels)) continue;
      changed.add(e.key);
    }
    if (changed.size === 0) return;
    const touched = new Set<string>();
    for (const pod of this.pods.values()) {
      if (!changed.has(pod.namespace)) continue;
      this.#identities.delete(pod.key);
      for (const ip of pod.ips) touched.add(ip);
    }
    this.#recompute(touched);
  }

  #recompute(ips: Set<string>): void {
    const removed: Array<readonly [string, Identity]> = [];
    const added: Array<readonly [string, Identity]> = [];
    for (const ip of ips) {
      const claims = this.#claims.get(ip);
      let winner: PodInfo | undefined;
      for (const key of claims ?? []) {
        const pod = this.pods.get(key);
        if (!pod || !podHoldsIps(pod) || !pod.ips.includes(ip)) continue;
        winner = pod;
      }
      if (claims && claims.size === 0) this.#claims.delete(ip);
      if (claims && claims.size > 1) {
        this.#o.logger.warn(
          {
            event: 'identity',
            reason: 'ip_conflict',
            src: ip,
            identity: winner ? `pod:${winner.key}` : '',
            pods: [...claims],
          },
          'several live pods report one address; the latest to report it wins',
        );
      }
      const before = this.#byIp.get(ip);
      const after = winner ? this.#identityOf(winner) : undefined;
      if (before === after) continue;
      if (before) {
        removed.push([ip, before]);
        this.#byIp.delete(ip);
      }
      if (after) {
        added.push([ip, after]);
        this.#byIp.set(ip, after);
      }
    }
    this.#o.metrics.identities.set(this.#byIp.size);
    if (removed.length === 0 && added.length === 0) return;
    const delta: IdentityDelta = { removed, added };
    for (const l of this.#listeners) {
      try {
        l(delta);
      } catch (err) {
        this.#o.logger.error(
          {
            event: 'identity',
            reason: 'listener_failed',
            err: err instanceof Error ? err.message : String(err),
          },
          'an identity listener threw',
        );
      }
    }
  }
}

function sameIdentity(a: PodInfo, b: PodInfo): boolean {
  return a.namespace === b.namespace && sameLabels(a.labels, b.labels);
}

function sameLabels(a: Labels, b: Labels): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) if (a[k] !== b[k]) return false;
  return true;
}
