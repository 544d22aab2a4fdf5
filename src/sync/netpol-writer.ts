/**
 * Writes planned NetworkPolicies (netpol-plan.ts) with server-side apply, and only when their
 * content changed: each object carries the hash of its content in an annotation, and an object
 * whose live hash matches is not sent again. Objects namegate wrote earlier (by the managed-by
 * label) that no policy wants any more are deleted. Namespaces are read for ClusterEgressPolicy.
 */
import { isApiStatus, type KubeApi, type KubeList, type KubeObject } from '../k8s/api.ts';
import { rfc3339 } from '../k8s/status.ts';
import {
  HASH_ANNOTATION,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  type NamespaceInfo,
  type NetworkPolicyObject,
  type PolicyReport,
} from './netpol-plan.ts';

/** The policy kinds whose status has conditions namegate defines (the native CRDs). */
const NATIVE_GROUP = 'namegate.dev/';

export interface NetpolWriteResult {
  readonly applied: number;
  readonly deleted: number;
  readonly unchanged: number;
}

const BASE = '/apis/networking.k8s.io/v1';

export class NetworkPolicyWriter {
  readonly #api: KubeApi;
  readonly #fieldManager: string;
  readonly #now: () => number;
  /** uid -> the condition last written (status, reason, message) and its transition time. */
  readonly #written = new Map<string, { key: string; status: string; since: string }>();

  constructor(api: KubeApi, fieldManager: string, now: () => number = Date.now) {
    this.#api = api;
    this.#fieldManager = fieldManager;
    this.#now = now;
  }

  /**
   * The NetworkPolicyWritten condition on each native policy's status (server-side apply of that
   * one condition, field manager as the objects; the controller keeps conditions it does not
   * own). Written only when it changed since the last write; returns how many were written.
   */
  async writeConditions(reports: readonly PolicyReport[]): Promise<number> {
    let n = 0;
    for (const r of reports) {
      const o = r.owner;
      if (!o?.apiVersion.startsWith(NATIVE_GROUP)) continue;
      const c = r.condition;
      const key = `${c.status}|${c.reason}|${c.message}`;
      const prior = this.#written.get(o.uid);
      if (prior?.key === key) continue;
      const since = prior && prior.status === c.status ? prior.since : rfc3339(this.#now());
      const plural = o.kind === 'ClusterEgressPolicy' ? 'clusteregresspolicies' : 'egresspolicies';
      const where = o.namespace === null ? '' : `/namespaces/${encodeURIComponent(o.namespace)}`;
      try {
        await this.#api.request(
          'PATCH',
          `/apis/${o.apiVersion}${where}/${plural}/${encodeURIComponent(o.name)}/status`,
          {
            query: { fieldManager: this.#fieldManager, force: true },
            contentType: 'application/apply-patch+yaml',
            body: {
              apiVersion: o.apiVersion,
              kind: o.kind,
              metadata: {
                name: o.name,
                ...(o.namespace === null ? {} : { namespace: o.namespace }),
                uid: o.uid,
              },
              status: { conditions: [{ ...c, lastTransitionTime: since }] },
            },
          },
        );
      } catch (err) {
        // The policy went away between the read and the write: nothing to report on.
        if (isApiStatus(err, 404) || isApiStatus(err, 409)) continue;
        throw err;
      }
      this.#written.set(o.uid, { key, status: c.status, since });
      n++;
    }
    return n;
  }

  async namespaces(): Promise<NamespaceInfo[]> {
    const list = await this.#api.get<KubeList>('/api/v1/namespaces');
    return list.items.map((n) => ({ name: n.metadata?.name ?? '', labels: n.metadata?.labels ?? {} }));
  }

  /** The objects namegate manages now, by "namespace/name", with their content hash. */
  async managed(): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    let cont: string | undefined;
    do {
      const page: KubeList = await this.#api.get<KubeList>(`${BASE}/networkpolicies`, {
        labelSelector: `${MANAGED_BY_LABEL}=${MANAGED_BY}`,
        limit: 500,
        ...(cont ? { continue: cont } : {}),
      });
      for (const o of page.items as KubeObject[]) {
        const m = o.metadata ?? {};
        out.set(`${m.namespace}/${m.name}`, m.annotations?.[HASH_ANNOTATION] ?? '');
      }
      cont = page.metadata?.continue || undefined;
    } while (cont);
    return out;
  }

  async write(objects: readonly NetworkPolicyObject[]): Promise<NetpolWriteResult> {
    const live = await this.managed();
    let applied = 0;
    let unchanged = 0;
    const wanted = new Set<string>();
    for (const o of objects) {
      const key = `${o.metadata.namespace}/${o.metadata.name}`;
      wanted.add(key);
      if (live.get(key) === o.metadata.annotations[HASH_ANNOTATION]) {
        unchanged++;
        continue;
      }
      const path = `${BASE}/namespaces/${encodeURIComponent(o.metadata.namespace)}/networkpolicies/${encodeURIComponent(o.metadata.name)}`;
      await this.#api.request('PATCH', path, {
        query: { fieldManager: this.#fieldManager, force: true },
        // JSON is YAML: the apply patch is the whole object as namegate wants it.
        contentType: 'application/apply-patch+yaml',
        body: o,
      });
      applied++;
    }
    let deleted = 0;
    for (const key of live.keys()) {
      if (wanted.has(key)) continue;
      const [namespace, name] = key.split('/') as [string, string];
      try {
        await this.#api.request(
          'DELETE',
          `${BASE}/namespaces/${encodeURIComponent(namespace)}/networkpolicies/${encodeURIComponent(name)}`,
        );
        deleted++;
      } catch (err) {
        if (!isApiStatus(err, 404)) throw err;
      }
    }
    return { applied, deleted, unchanged };
  }
}
