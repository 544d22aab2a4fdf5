/**
 * Which workload a flow's source belongs to, and the labels that select all of its pods.
 *
 * The agent writes the workload with each source (from the pod's owner references) when it
 * knows it; otherwise it is read off the labels and the pod name the controllers give:
 *   Deployment   label pod-template-hash=H, pod "<name>-H-<5>"          -> <name>
 *   StatefulSet  label statefulset.kubernetes.io/pod-name, "<name>-<n>"  -> <name>
 *   DaemonSet    labels controller-revision-hash + pod-template-generation, "<name>-<5>"
 *   Job          label batch.kubernetes.io/job-name (or job-name)        -> the job (a CronJob's
 *                jobs "<cronjob>-<minutes>" are one workload: the CronJob)
 *   Pod          anything else: the pod alone
 *   Group        a gateway's source group
 * Labels that differ from pod to pod of one workload are never part of a selector.
 */
import type { FlowEvent, Workload } from '../flows/event.ts';

/** Labels controllers set per pod (or per revision): useless, even harmful, in a selector. */
export const VARYING_LABELS: ReadonlySet<string> = new Set([
  'pod-template-hash',
  'controller-revision-hash',
  'pod-template-generation',
  'statefulset.kubernetes.io/pod-name',
  'apps.kubernetes.io/pod-index',
  'batch.kubernetes.io/controller-uid',
  'controller-uid',
  'batch.kubernetes.io/job-completion-index',
  'job-name',
  'batch.kubernetes.io/job-name',
]);

export interface WorkloadKey {
  readonly namespace: string;
  readonly kind: string;
  readonly name: string;
}

export function workloadId(w: WorkloadKey): string {
  return `${w.namespace}/${w.kind}/${w.name}`;
}

/** The workload of a pod from its name and labels (when the agent did not say). */
export function inferWorkload(pod: string, labels: Readonly<Record<string, string>>): Workload {
  const hash = labels['pod-template-hash'];
  if (hash) {
    const m = new RegExp(`^(.+)-${escapeRegExp(hash)}-[a-z0-9]{5}$`).exec(pod);
    if (m) return { kind: 'Deployment', name: m[1] as string };
  }
  if (labels['statefulset.kubernetes.io/pod-name'] !== undefined) {
    const m = /^(.+)-\d+$/.exec(pod);
    if (m) return { kind: 'StatefulSet', name: m[1] as string };
  }
  if (labels['controller-revision-hash'] !== undefined && labels['pod-template-generation'] !== undefined) {
    const m = /^(.+)-[a-z0-9]{5}$/.exec(pod);
    if (m) return { kind: 'DaemonSet', name: m[1] as string };
  }
  const job = labels['batch.kubernetes.io/job-name'] ?? labels['job-name'];
  if (job) {
    // CronJob jobs are named "<cronjob>-<scheduled minutes since the epoch>" (8+ digits).
    const cron = /^(.+)-\d{8,}$/.exec(job);
    return cron ? { kind: 'CronJob', name: cron[1] as string } : { kind: 'Job', name: job };
  }
  return { kind: 'Pod', name: pod };
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The workload a flow's source belongs to; null when the source is unknown. */
export function workloadOf(e: FlowEvent): WorkloadKey | null {
  if (e.identity?.startsWith('group:')) {
    const name = e.identity.slice('group:'.length);
    return { namespace: e.namespace ?? 'default', kind: 'Group', name };
  }
  if (e.namespace === null || e.pod === null) return null;
  const w = e.workload ?? inferWorkload(e.pod, e.labels ?? {});
  return { namespace: e.namespace, kind: w.kind, name: w.name };
}

/**
 * The labels every pod of a workload shares (seen label sets intersected), without the
 * varying ones: the recommended policy's podSelector.
 */
export function commonLabels(sets: Iterable<Readonly<Record<string, string>>>): Record<string, string> {
  let common: Map<string, string> | null = null;
  for (const labels of sets) {
    const here = new Map(Object.entries(labels).filter(([k]) => !VARYING_LABELS.has(k)));
    if (common === null) common = here;
    else for (const [k, v] of common) if (here.get(k) !== v) common.delete(k);
  }
  return Object.fromEntries(
    [...(common ?? new Map<string, string>()).entries()].sort(([a], [b]) => a.localeCompare(b)),
  );
}
