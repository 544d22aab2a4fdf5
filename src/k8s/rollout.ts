/**
 * Rollouts of the chart's workloads: whether a Deployment or DaemonSet has rolled out its current
 * generation with every pod ready (what `kubectl rollout status` waits for), and the chart's
 * uninstall step that makes every agent remove the node's nftables table when it stops.
 *
 * Why the uninstall step exists: the agent leaves the table in place when it stops, so an upgrade
 * never opens a gap (docs/kubernetes.md, Upgrades). On `helm uninstall` that would leave every
 * governed pod cut off from new DNS for good. The chart's pre-delete hook therefore adds
 * `--remove-table-on-stop` to the agent DaemonSet and waits for that rollout; helm then deletes
 * the DaemonSet, and each agent removes its table as it stops.
 */
import type { Logger } from '../observe/log.ts';
import type { KubeApi } from './api.ts';

export const REMOVE_TABLE_FLAG = '--remove-table-on-stop';

export interface RolloutObject {
  metadata?: { generation?: number };
  spec?: { replicas?: number; template?: { spec?: { containers?: { name: string; args?: string[] }[] } } };
  status?: {
    observedGeneration?: number;
    replicas?: number;
    updatedReplicas?: number;
    readyReplicas?: number;
    desiredNumberScheduled?: number;
    updatedNumberScheduled?: number;
    numberReady?: number;
    numberUnavailable?: number;
  };
}

/** Has a Deployment or DaemonSet rolled out its current generation, every pod ready? */
export function rolledOut(kind: 'Deployment' | 'DaemonSet', o: RolloutObject): boolean {
  const s = o.status ?? {};
  if ((s.observedGeneration ?? 0) < (o.metadata?.generation ?? 1)) return false;
  if (kind === 'Deployment') {
    const want = o.spec?.replicas ?? 1;
    return s.updatedReplicas === want && s.readyReplicas === want && (s.replicas ?? 0) === want;
  }
  const want = s.desiredNumberScheduled ?? 0;
  return s.updatedNumberScheduled === want && s.numberReady === want && !s.numberUnavailable;
}

/**
 * Add REMOVE_TABLE_FLAG to the agent container of a DaemonSet (once) and wait until the rollout
 * is done. Resolves false on timeout.
 */
export async function prepareUninstall(
  api: KubeApi,
  o: { namespace: string; daemonSet: string; container: string; timeoutMs: number; log: Logger },
): Promise<boolean> {
  const path = `/apis/apps/v1/namespaces/${o.namespace}/daemonsets/${o.daemonSet}`;
  const ds = await api.get<RolloutObject>(path);
  const containers = ds.spec?.template?.spec?.containers ?? [];
  const index = containers.findIndex((c) => c.name === o.container);
  if (index < 0) throw new Error(`daemonset ${o.namespace}/${o.daemonSet} has no container ${o.container}`);
  if (!(containers[index]?.args ?? []).includes(REMOVE_TABLE_FLAG)) {
    const add = containers[index]?.args
      ? { op: 'add', path: `/spec/template/spec/containers/${index}/args/-`, value: REMOVE_TABLE_FLAG }
      : { op: 'add', path: `/spec/template/spec/containers/${index}/args`, value: [REMOVE_TABLE_FLAG] };
    await api.request('PATCH', path, { body: [add], contentType: 'application/json-patch+json' });
    o.log.info(
      { event: 'uninstall', daemonset: o.daemonSet },
      'agents will remove the nftables table when they stop',
    );
  }
  const deadline = Date.now() + o.timeoutMs;
  while (Date.now() < deadline) {
    if (rolledOut('DaemonSet', await api.get<RolloutObject>(path))) return true;
    await new Promise((r) => setTimeout(r, 500));
  }
  return false;
}
