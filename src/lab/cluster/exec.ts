/**
 * Running a client inside a real pod of the lab cluster: like `kubectl exec`, but through
 * `nsenter` into the container's namespaces (net, mount, uts, ipc, pid) as the container's user,
 * with the container's own binaries, /etc/resolv.conf and mounts. The container's first process
 * is found through its cgroup (the kubelet's cgroupfs layout), so no CRI or API round trip is
 * needed: about 10 ms per command instead of a websocket through the API server and kubelet.
 */
import { ErrorCode, NamegateError } from '../../core/errors.ts';
import type { KubeApi } from '../../k8s/api.ts';
import type { ExecOptions, ExecResult } from '../exec.ts';
import { run } from '../run.ts';
import { listPods, type PodInfo } from './kube.ts';
import { TEST_CLIENT_CONTAINER } from './manifests.ts';
import { containerPid } from './node.ts';
import type { ClusterPlan } from './plan.ts';

/** The user the test-client image runs as. */
const CLIENT_UID = 65532;

export async function podExec(
  cp: ClusterPlan,
  pod: PodInfo,
  argv: readonly string[],
  options: ExecOptions & { container?: string } = {},
): Promise<ExecResult> {
  const container = options.container ?? TEST_CLIENT_CONTAINER;
  const id = pod.containers[container];
  if (!id)
    throw new NamegateError(
      ErrorCode.CommandFailed,
      `pod ${pod.namespace}/${pod.name} has no running ${container}`,
    );
  const pid = await containerPid(cp, id);
  if (pid === null)
    throw new NamegateError(
      ErrorCode.CommandFailed,
      `no process of container ${id.slice(0, 12)} in ${cp.cgroupRoot}`,
    );
  const uid = String(CLIENT_UID);
  const r = await run(
    ['nsenter', '-t', String(pid), '-n', '-m', '-u', '-i', '-p', '-S', uid, '-G', uid, '--', ...argv],
    {
      timeoutMs: options.timeoutMs ?? 15_000,
      maxBytes: 1 << 20,
      ...(options.input !== undefined ? { input: options.input } : {}),
    },
  );
  return { code: r.code, stdout: r.stdout, stderr: r.stderr, timedOut: r.timedOut };
}

/** The running, ready pod of a lab workload (Deployment `name` in `namespace`). */
export async function workloadPod(api: KubeApi, namespace: string, name: string): Promise<PodInfo> {
  const pods = (await listPods(api, namespace, `namegate.dev/lab-workload=${name}`)).filter(
    (p) => p.phase === 'Running' && !p.deleting && Object.keys(p.containers).length > 0,
  );
  const pod = pods[0];
  if (!pod) throw new NamegateError(ErrorCode.UsageInvalid, `no running pod of ${namespace}/${name}`);
  return pod;
}
