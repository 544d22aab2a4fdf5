/**
 * The tour on a Kubernetes lab: the static lab's checks, run inside the real pods of the lab's
 * workloads (one test-client Deployment per lab pod, same namespaces and labels). The cluster is
 * IPv4 only, so the IPv6 checks are left out.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { LabPlan } from '../plan.ts';
import { runTour, type TourCheck, type TourOptions, tourChecks } from '../tour.ts';
import { podExec, workloadPod } from './exec.ts';
import { adminApi } from './kube.ts';
import { labWorkloads } from './manifests.ts';
import { type ClusterPlan, clusterPlan } from './plan.ts';

export function clusterOf(lab: LabPlan): ClusterPlan {
  return clusterPlan(lab.name, { stateRoot: path.dirname(lab.stateDir) });
}

/** Is this lab a Kubernetes node (did `lab up --kubernetes` record a cluster)? */
export function isClusterLab(lab: LabPlan): boolean {
  return existsSync(clusterOf(lab).paths.record);
}

export function clusterTourChecks(lab: LabPlan): TourCheck[] {
  return tourChecks(lab).filter((c) => !(c.kind === 'http' && c.family === 6));
}

/** A pod client for the tour: runs each check's command in its workload's pod. */
export function podClient(lab: LabPlan): NonNullable<TourOptions['client']> {
  const cp = clusterOf(lab);
  const api = adminApi(cp);
  const workloads = new Map(labWorkloads().map((w) => [w.name, w]));
  return async (pod, argv, input) => {
    const w = workloads.get(pod);
    if (!w) throw new Error(`no lab workload ${pod}`);
    const p = await workloadPod(api, w.namespace, w.name);
    return podExec(cp, p, argv, { timeoutMs: 15_000, ...(input !== undefined ? { input } : {}) });
  };
}

export function runClusterTour(
  lab: LabPlan,
  options: Omit<TourOptions, 'client' | 'checks'>,
): Promise<boolean> {
  return runTour(lab, {
    ...options,
    checks: clusterTourChecks(lab),
    client: podClient(lab),
    resolverNote: false,
  });
}

/**
 * Where the agent pod's DNS decisions are: its container log, in the CRI format the kubelet
 * writes (`<time> stdout F <json>`); the newest agent pod's. Null before namegate is installed.
 */
export function agentLogFile(lab: LabPlan): string | null {
  const dir = path.join(clusterOf(lab).paths.varLog, 'pods');
  let newest: { file: string; mtime: number } | null = null;
  for (const pod of existsSync(dir) ? readdirSync(dir) : []) {
    if (!pod.startsWith('namegate-system_namegate-agent-')) continue;
    const container = path.join(dir, pod, 'agent');
    for (const f of existsSync(container) ? readdirSync(container) : []) {
      const file = path.join(container, f);
      const mtime = statSync(file).mtimeMs;
      if (!newest || mtime > newest.mtime) newest = { file, mtime };
    }
  }
  return newest?.file ?? null;
}

/** A CRI log line without its time, stream and tag: the agent's own JSON line. */
export function criLogLine(line: string): string {
  return line.replace(/^\S+ (stdout|stderr) [FP] /, '');
}

/** `lab exec <pod>` on a Kubernetes lab: the command runs in the workload's pod. */
export async function clusterExec(lab: LabPlan, pod: string, argv: readonly string[]): Promise<number> {
  const r = await podClient(lab)(pod, [...argv]);
  process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  return r.code ?? 1;
}
