/**
 * Helpers shared by the Kubernetes tests: install CRDs and wait until they are Established,
 * server-side apply any object (with discovery to find its resource), pods with IPs.
 */
import {
  type KubeApi,
  KubeApiError,
  type KubeObject,
  type ResourceType,
  resourcePath,
} from '../../src/k8s/api.ts';
import { generateCrds } from '../../src/k8s/crd.ts';
import { k8sMetrics } from '../../src/k8s/metrics.ts';
import {
  apply as applyObject,
  forgetDiscovery,
  readYamlDocs,
  resourceFor,
} from '../../src/lab/cluster/apply.ts';
import { silentLogger } from '../../src/observe/log.ts';
import { createRegistry } from '../../src/observe/metrics.ts';
import { eventually } from './apiserver.ts';

export const FIELD_MANAGER = 'namegate-test';

export function quiet(): { logger: ReturnType<typeof silentLogger>; metrics: ReturnType<typeof k8sMetrics> } {
  return { logger: silentLogger(), metrics: k8sMetrics(createRegistry()) };
}

export { readYamlDocs, resourceFor };

/** Server-side apply (optionally as a dry run), as `kubectl apply --server-side` does. */
export function apply(
  api: KubeApi,
  obj: KubeObject,
  options: { dryRun?: boolean; namespace?: string; strict?: boolean } = {},
): Promise<KubeObject> {
  return applyObject(api, obj, { fieldManager: FIELD_MANAGER, ...options });
}

export async function remove(
  api: KubeApi,
  r: ResourceType,
  namespace: string | undefined,
  name: string,
): Promise<void> {
  await api
    .request('DELETE', resourcePath(r, { namespace, name }), { query: { gracePeriodSeconds: 0 } })
    .catch((err) => {
      if (!(err instanceof KubeApiError && err.status === 404)) throw err;
    });
}

/** Create or update CRDs and wait until each is Established (served). */
export async function installCrds(
  api: KubeApi,
  crds: KubeObject[] = generateCrds() as KubeObject[],
): Promise<void> {
  for (const crd of crds) await apply(api, crd);
  for (const crd of crds) {
    await eventually(`CRD ${crd.metadata?.name} established`, async () => {
      const got = await api.get<{ status?: { conditions?: Array<{ type: string; status: string }> } }>(
        `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata?.name}`,
      );
      return got.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')
        ? true
        : undefined;
    });
  }
  // Discovery caches were filled before these existed.
  forgetDiscovery(api);
}

/** Create a pod bound to a node (no scheduler runs) and give it addresses through pods/status. */
export async function createPod(
  api: KubeApi,
  p: {
    namespace: string;
    name: string;
    node: string;
    labels?: Record<string, string>;
    ips?: string[];
    hostNetwork?: boolean;
  },
): Promise<void> {
  await api.request('POST', `/api/v1/namespaces/${p.namespace}/pods`, {
    body: {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: p.name, labels: p.labels ?? {} },
      spec: {
        nodeName: p.node,
        hostNetwork: p.hostNetwork ?? false,
        containers: [{ name: 'app', image: 'registry.invalid/app:1' }],
      },
    },
  });
  if (p.ips && p.ips.length > 0) await setPodIps(api, p.namespace, p.name, p.ips);
}

export async function setPodIps(
  api: KubeApi,
  namespace: string,
  name: string,
  ips: string[],
  phase = 'Running',
): Promise<void> {
  await api.request('PATCH', `/api/v1/namespaces/${namespace}/pods/${name}/status`, {
    body: { status: { phase, podIP: ips[0] ?? null, podIPs: ips.map((ip) => ({ ip })) } },
    contentType: 'application/merge-patch+json',
  });
}

export async function labelPod(
  api: KubeApi,
  namespace: string,
  name: string,
  labels: Record<string, string | null>,
): Promise<void> {
  await api.request('PATCH', `/api/v1/namespaces/${namespace}/pods/${name}`, {
    body: { metadata: { labels } },
    contentType: 'application/merge-patch+json',
  });
}

/** Resolve with the first value `probe` returns after a change event (checked at once, too). */
export function whenTrue<T>(
  subscribe: (listener: () => void) => () => void,
  probe: () => T | undefined,
  what: string,
  timeoutMs = 10_000,
): Promise<T> {
  return new Promise((resolve, reject) => {
    let unsubscribe = (): void => {};
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`${what}: not seen within ${timeoutMs} ms`));
    }, timeoutMs);
    const check = (): boolean => {
      const v = probe();
      if (v === undefined) return false;
      clearTimeout(timer);
      unsubscribe();
      resolve(v);
      return true;
    };
    unsubscribe = subscribe(() => {
      check();
    });
    check();
  });
}
