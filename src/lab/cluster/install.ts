/**
 * namegate on the lab cluster, the way docs/kubernetes.md tells users: `helm install` of
 * deploy/helm/namegate with the cluster's CIDRs and DNS upstream and nothing else (the image is
 * the chart's default, imported into containerd by `lab up`). Then, for the demo and the tour,
 * the lab's workloads (test-client Deployments with the static lab's namespaces and labels) and
 * the example policies, applied through the API.
 */
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ErrorCode, NamegateError } from '../../core/errors.ts';
import type { KubeApi } from '../../k8s/api.ts';
import type { LabPlan } from '../plan.ts';
import { statePaths } from '../plan.ts';
import { apply, readYamlDocs } from './apply.ts';
import { adminApi, waitRolledOut } from './kube.ts';
import { labCaConfigMap, labNamespaces, labWorkloads, testClientDeployment } from './manifests.ts';
import { type ClusterPlan, clusterPlan } from './plan.ts';
import { type ClusterRecord, FIELD_MANAGER } from './up.ts';

const exec = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const CHART = path.join(ROOT, 'deploy/helm/namegate');
export const RELEASE = 'namegate';
export const RELEASE_NAMESPACE = 'namegate-system';

/** The values docs/kubernetes.md asks users to set: the CIDRs and the upstream. */
export function installSets(cp: ClusterPlan): string[] {
  return [
    `clusterCIDRs={${cp.clusterCIDR},${cp.serviceCIDR}}`,
    `podCIDRs={${cp.clusterCIDR}}`,
    `agent.config.dns.upstreams={${cp.dnsServiceIP}}`,
  ];
}

async function helmPath(): Promise<string> {
  const { stdout } = await exec(path.join(ROOT, 'scripts/build-test-bins.sh'), ['helm']);
  return stdout.trim().replace(/^helm=/, '');
}

/** Run helm against the lab cluster (through the API relay); resolves with its stdout. */
export async function helm(cp: ClusterPlan, args: readonly string[], timeoutMs = 300_000): Promise<string> {
  try {
    const r = await exec(await helmPath(), [...args, '--kubeconfig', cp.paths.hostKubeconfig], {
      timeout: timeoutMs,
      maxBuffer: 16 << 20,
      env: {
        ...process.env,
        HELM_CACHE_HOME: path.join(cp.dir, 'helm/cache'),
        HELM_CONFIG_HOME: path.join(cp.dir, 'helm/config'),
        HELM_DATA_HOME: path.join(cp.dir, 'helm/data'),
      },
    });
    return r.stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new NamegateError(
      ErrorCode.CommandFailed,
      `helm ${args.slice(0, 2).join(' ')}: ${e.stderr?.trim() || e.message}`,
    );
  }
}

/** `helm install` as the docs say, plus any extra --set; does not wait. */
export async function helmInstall(cp: ClusterPlan, extra: readonly string[] = []): Promise<void> {
  const sets = [...installSets(cp), ...extra].flatMap((s) => ['--set', s]);
  await helm(cp, [
    'install',
    RELEASE,
    CHART,
    '--namespace',
    RELEASE_NAMESPACE,
    '--create-namespace',
    ...sets,
  ]);
}

export async function waitNamegateReady(api: KubeApi, timeoutMs = 180_000): Promise<void> {
  await waitRolledOut(api, 'DaemonSet', RELEASE_NAMESPACE, `${RELEASE}-agent`, timeoutMs);
  await waitRolledOut(api, 'Deployment', RELEASE_NAMESPACE, `${RELEASE}-controller`, timeoutMs);
}

/** The namespaces, the lab CA and one test-client Deployment per static lab pod. */
export async function applyWorkloads(cp: ClusterPlan, api: KubeApi, image: string): Promise<void> {
  const ca = await readFile(statePaths(cp.lab).caCert, 'utf8');
  for (const ns of labNamespaces()) {
    await apply(api, ns, { fieldManager: FIELD_MANAGER });
    await apply(api, labCaConfigMap(ns.metadata!.name!, ca), { fieldManager: FIELD_MANAGER });
  }
  for (const w of labWorkloads())
    await apply(api, testClientDeployment(cp, image, w), { fieldManager: FIELD_MANAGER });
  for (const w of labWorkloads()) await waitRolledOut(api, 'Deployment', w.namespace, w.name);
}

export async function applyPolicies(api: KubeApi, files: readonly string[]): Promise<number> {
  let n = 0;
  for (const f of files) {
    const docs = f.endsWith('.yaml')
      ? [f]
      : (await readdir(f)).filter((x) => x.endsWith('.yaml')).map((x) => path.join(f, x));
    for (const d of docs)
      for (const obj of readYamlDocs(d)) {
        await apply(api, obj, { fieldManager: FIELD_MANAGER });
        n++;
      }
  }
  return n;
}

/** `lab up --kubernetes --agent`: namegate, the workloads and the example policies. */
export async function installLab(
  lab: LabPlan,
  record: ClusterRecord,
  policies: readonly string[],
  progress: (m: string) => void,
): Promise<void> {
  const cp = clusterPlan(lab.name, { stateRoot: path.dirname(lab.stateDir) });
  const api = adminApi(cp);
  progress('helm install namegate (as docs/kubernetes.md says)...');
  const start = performance.now();
  await helmInstall(cp);
  await waitNamegateReady(api);
  progress(`  ok: agent and controller ready (${Math.round(performance.now() - start)} ms)`);
  progress('starting the workloads (test-client pods) and applying examples/...');
  await applyWorkloads(cp, api, record.images['test-client']!.ref);
  await applyPolicies(api, policies);
  progress('  ok');
}
