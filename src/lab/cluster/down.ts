/**
 * Taking the lab's Kubernetes node down, from the plan alone (also after a crash of `lab up` or
 * of any daemon): SIGKILL the node's PID 1, which ends kubelet, containerd, the shims and every
 * container at once (and with them every mount of the node's private mount namespace), stop the
 * API relay in the root namespace, and, once lab down has ended the rest, remove the cgroups.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { LabPlan } from '../plan.ts';
import { statePaths } from '../plan.ts';
import { isAlive } from '../processes.ts';
import { removeCgroups, stopHolder } from './node.ts';
import { clusterPlan } from './plan.ts';

function planOf(lab: LabPlan) {
  return clusterPlan(lab.name, { stateRoot: path.dirname(lab.stateDir) });
}

/** The relay in the root namespace: ended by its pid, only if it is still our relay. */
function stopHostRelay(lab: LabPlan): boolean {
  const file = path.join(statePaths(lab).pids, 'host', 'apirelay.pid');
  if (!existsSync(file)) return false;
  const pid = Number(readFileSync(file, 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 1 || !isAlive(pid)) return false;
  const cmdline = (() => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      return '';
    }
  })();
  if (!cmdline.includes(lab.stateDir)) return false;
  process.kill(pid, 'SIGKILL');
  return true;
}

/** First step of lab down: end the node and the relay. Returns what it ended. */
export async function stopCluster(lab: LabPlan): Promise<string[]> {
  const ended: string[] = [];
  if (await stopHolder(planOf(lab))) ended.push('the Kubernetes node (every process of its PID namespace)');
  if (stopHostRelay(lab)) ended.push('the API relay');
  return ended;
}

/** Last step of lab down: the node's cgroups, once nothing runs in them. */
export async function removeClusterCgroups(lab: LabPlan): Promise<number> {
  return removeCgroups(planOf(lab));
}
