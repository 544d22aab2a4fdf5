/**
 * Server-side apply of any object, as `kubectl apply --server-side` does: the resource of an
 * apiVersion + kind comes from the server's discovery (cached per client), then one PATCH with
 * application/apply-patch+yaml. The lab cluster applies its add-ons and workloads with it; the
 * Kubernetes tests apply fixtures with it.
 */
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { type KubeApi, type KubeObject, type ResourceType, resourcePath } from '../../k8s/api.ts';

export function readYamlDocs(file: string): KubeObject[] {
  return parseYamlDocs(readFileSync(file, 'utf8'));
}

export function parseYamlDocs(text: string): KubeObject[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as KubeObject | null)
    .filter((d): d is KubeObject => d !== null && typeof d === 'object');
}

const discovery = new WeakMap<KubeApi, Map<string, ResourceType>>();

/** Forget what discovery said (after CRDs were installed). */
export function forgetDiscovery(api: KubeApi): void {
  discovery.delete(api);
}

/** Resource of an apiVersion + kind, from the server's discovery (cached per client). */
export async function resourceFor(api: KubeApi, apiVersion: string, kind: string): Promise<ResourceType> {
  let cache = discovery.get(api);
  if (!cache) {
    cache = new Map();
    discovery.set(api, cache);
  }
  const key = `${apiVersion}/${kind}`;
  const known = cache.get(key);
  if (known) return known;
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const path = group === '' ? `/api/${version}` : `/apis/${group}/${version}`;
  const list = await api.get<{ resources: Array<{ name: string; kind: string; namespaced: boolean }> }>(path);
  for (const r of list.resources) {
    if (r.name.includes('/')) continue;
    cache.set(`${apiVersion}/${r.kind}`, {
      group: group ?? '',
      version: version ?? '',
      plural: r.name,
      kind: r.kind,
      namespaced: r.namespaced,
    });
  }
  const found = cache.get(key);
  if (!found) throw new Error(`the API server does not serve ${apiVersion} ${kind}`);
  return found;
}

export interface ApplyOptions {
  readonly fieldManager: string;
  readonly dryRun?: boolean;
  readonly namespace?: string;
  readonly strict?: boolean;
}

/** Server-side apply (optionally as a dry run); conflicts are forced, as the owner of the object. */
export async function apply(api: KubeApi, obj: KubeObject, options: ApplyOptions): Promise<KubeObject> {
  const r = await resourceFor(api, obj.apiVersion ?? '', obj.kind ?? '');
  const namespace = r.namespaced ? (obj.metadata?.namespace ?? options.namespace ?? 'default') : undefined;
  const body = r.namespaced ? { ...obj, metadata: { ...obj.metadata, namespace } } : obj;
  return api.request('PATCH', resourcePath(r, { namespace, name: obj.metadata?.name }), {
    body,
    contentType: 'application/apply-patch+yaml',
    query: {
      fieldManager: options.fieldManager,
      force: true,
      ...(options.dryRun ? { dryRun: 'All' } : {}),
      fieldValidation: options.strict === false ? 'Warn' : 'Strict',
    },
  });
}
