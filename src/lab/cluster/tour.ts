/**
 * The tour on a Kubernetes lab: the static lab's checks, run inside the real pods of the lab's
 * workloads (one test-client Deployment per lab pod, same namespaces and labels). The cluster is
 * IPv4 only, so the IPv6 checks are left out.
 */
import { existsSync } from 'node:fs';
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
