/**
 * Reading the lab cluster from this machine: an admin client through the API relay, and bounded
 * waits for the states bring-up and tests need (node Ready, a Deployment or DaemonSet rolled out
 * and ready, pods of a selector Running with IPs). Waits poll the API every 100 ms: they wait for
 * the cluster, never for a fixed time.
 */
import { ErrorCode, NamegateError } from '../../core/errors.ts';
import { KubeApi, type KubeObject, loadKubeConfig } from '../../k8s/api.ts';
import { type RolloutObject, rolledOut } from '../../k8s/rollout.ts';
import type { ClusterPlan } from './plan.ts';

export function adminApi(cp: ClusterPlan, options: { timeoutMs?: number } = {}): KubeApi {
  return new KubeApi(loadKubeConfig(cp.paths.hostKubeconfig), { userAgent: 'namegate-lab', ...options });
}

export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | undefined>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
      last = null;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new NamegateError(
        ErrorCode.CommandFailed,
        `${what}: not reached within ${Math.round(timeoutMs / 1000)} s${last ? ` (last error: ${String(last)})` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Condition {
  readonly type: string;
  readonly status: string;
}

export interface PodInfo {
  readonly name: string;
  readonly namespace: string;
  readonly uid: string;
  readonly phase: string;
  readonly ip: string | null;
  readonly ready: boolean;
  readonly labels: Readonly<Record<string, string>>;
  /** containerd ids of the running containers, by container name. */
  readonly containers: Readonly<Record<string, string>>;
  readonly deleting: boolean;
}

interface PodObject extends KubeObject {
  status?: {
    phase?: string;
    podIP?: string;
    conditions?: Condition[];
    containerStatuses?: { name: string; containerID?: string; state?: { running?: unknown } }[];
  };
}

export function podInfo(p: PodObject): PodInfo {
  const containers: Record<string, string> = {};
  for (const c of p.status?.containerStatuses ?? []) {
    if (c.containerID && c.state?.running) containers[c.name] = c.containerID.replace(/^[a-z]+:\/\//, '');
  }
  return {
    name: p.metadata?.name ?? '',
    namespace: p.metadata?.namespace ?? '',
    uid: p.metadata?.uid ?? '',
    phase: p.status?.phase ?? 'Pending',
    ip: p.status?.podIP ?? null,
    ready: p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false,
    labels: p.metadata?.labels ?? {},
    containers,
    deleting: p.metadata?.deletionTimestamp !== undefined,
  };
}

export async function listPods(api: KubeApi, namespace: string, selector: string): Promise<PodInfo[]> {
  const list = await api.get<{ items: PodObject[] }>(`/api/v1/namespaces/${namespace}/pods`, {
    labelSelector: selector,
  });
  return list.items.map(podInfo);
}

export async function waitNodeReady(api: KubeApi, cp: ClusterPlan, timeoutMs = 120_000): Promise<void> {
  await waitFor(`node ${cp.nodeName} Ready`, timeoutMs, async () => {
    const node = await api.get<{ status?: { conditions?: Condition[] } }>(`/api/v1/nodes/${cp.nodeName}`);
    return node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? true : undefined;
  });
}

export async function waitRolledOut(
  api: KubeApi,
  kind: 'Deployment' | 'DaemonSet',
  namespace: string,
  name: string,
  timeoutMs = 120_000,
): Promise<void> {
  const plural = kind === 'Deployment' ? 'deployments' : 'daemonsets';
  await waitFor(`${kind} ${namespace}/${name} rolled out`, timeoutMs, async () => {
    const o = await api.get<RolloutObject>(`/apis/apps/v1/namespaces/${namespace}/${plural}/${name}`);
    return rolledOut(kind, o) ? true : undefined;
  });
}
