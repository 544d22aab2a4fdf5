/**
 * Running a client inside a lab namespace (curl, dig, openssl s_client, nc), bounded in time and
 * output. `ip netns exec` also bind-mounts the namespace's /etc/netns/<ns>/resolv.conf, so a pod
 * resolves through the node's resolver address.
 */
import { ErrorCode, NamegateError } from '../core/errors.ts';
import { netnsExists } from './netns.ts';
import { findPod, type LabPlan, labPlan } from './plan.ts';
import { inNetns, run } from './run.ts';

export interface ExecOptions {
  /** Kill the client after this long (default 15 s). */
  readonly timeoutMs?: number;
  readonly input?: string;
}

export interface ExecResult {
  /** Exit code; null when the client was killed (timedOut says whether by our bound). */
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
}

/** The namespace of a pod id, or of "node" / "inet". */
export function targetNetns(plan: LabPlan, where: string): string {
  if (where === 'node') return plan.nodeNetns;
  if (where === 'inet' || where === 'internet') return plan.inetNetns;
  return findPod(plan, where).netns;
}

export async function labExec(
  lab: LabPlan | string,
  pod: string,
  argv: readonly string[],
  options: ExecOptions = {},
): Promise<ExecResult> {
  const plan = typeof lab === 'string' ? labPlan(lab) : lab;
  const netns = targetNetns(plan, pod);
  if (!netnsExists(netns)) {
    throw new NamegateError(
      ErrorCode.UsageInvalid,
      `lab ${plan.name} is not up (no namespace ${netns}); run namegate lab up --name ${plan.name}`,
    );
  }
  if (argv.length === 0) throw new NamegateError(ErrorCode.UsageInvalid, 'lab exec: no command given');
  const r = await run(inNetns(netns, argv), {
    timeoutMs: options.timeoutMs ?? 15_000,
    maxBytes: 1 << 20,
    ...(options.input !== undefined ? { input: options.input } : {}),
  });
  return { code: r.code, stdout: r.stdout, stderr: r.stderr, timedOut: r.timedOut };
}
