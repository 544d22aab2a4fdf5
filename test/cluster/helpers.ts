/**
 * Helpers of the tests on the lab's real Kubernetes node: clients run inside real pods (podExec),
 * DNS answers and HTTPS from a pod, the agent's nft sets in the node namespace, and a long-lived
 * TLS connection from a pod.
 */
import type { KubeApi } from '../../src/k8s/api.ts';
import { podExec, workloadPod } from '../../src/lab/cluster/exec.ts';
import { listPods, type PodInfo } from '../../src/lab/cluster/kube.ts';
import { containerPid } from '../../src/lab/cluster/node.ts';
import type { ClusterPlan } from '../../src/lab/cluster/plan.ts';
import { labExec } from '../../src/lab/exec.ts';
import { statePaths } from '../../src/lab/plan.ts';
import { type DnsAnswer, PodConnection, parseDig } from '../k8s/lab-cluster.ts';

export async function dig(
  cp: ClusterPlan,
  pod: PodInfo,
  name: string,
  extra: readonly string[] = [],
): Promise<DnsAnswer> {
  const r = await podExec(
    cp,
    pod,
    ['dig', '+time=2', '+tries=1', '+noall', '+comments', '+answer', ...extra, name, 'A'],
    {
      timeoutMs: 8000,
    },
  );
  return parseDig(r.stdout);
}

/** HTTPS (or HTTP) from a pod; returns curl's exit code and body (0 = ok, 28 = timeout). */
export async function curl(
  cp: ClusterPlan,
  pod: PodInfo,
  url: string,
  o: { resolve?: string; connectTimeoutS?: number } = {},
): Promise<{ code: number | null; body: string; stderr: string }> {
  const connect = o.connectTimeoutS ?? 3;
  const argv = ['curl', '-sS', '--connect-timeout', String(connect), '--max-time', String(connect + 3)];
  argv.push('--cacert', statePaths(cp.lab).caCert);
  if (o.resolve) argv.push('--resolve', o.resolve);
  argv.push(url);
  const r = await podExec(cp, pod, argv, { timeoutMs: (connect + 6) * 1000 });
  return { code: r.code, body: r.stdout.trim(), stderr: r.stderr.trim() };
}

export async function workload(api: KubeApi, namespace: string, name: string): Promise<PodInfo> {
  return workloadPod(api, namespace, name);
}

export async function runningPods(api: KubeApi, namespace: string, selector: string): Promise<PodInfo[]> {
  return (await listPods(api, namespace, selector)).filter(
    (p) => p.phase === 'Running' && !p.deleting && p.ip,
  );
}

/** A TLS connection from a real pod, held open (openssl s_client with the pod's own binary). */
export async function openPodConnection(
  cp: ClusterPlan,
  pod: PodInfo,
  name: string,
  ip: string,
): Promise<PodConnection> {
  const id = pod.containers['client'];
  const pid = id ? await containerPid(cp, id) : null;
  if (pid === null) throw new Error(`no process for ${pod.name}`);
  const argv = ['-t', String(pid), '-n', '-m', '-p', '-S', '65532', '-G', '65532', '--'];
  argv.push('openssl', 's_client', '-quiet', '-connect', `${ip}:443`, '-servername', name);
  argv.push('-CAfile', statePaths(cp.lab).caCert, '-verify_return_error');
  return PodConnection.spawn('nsenter', argv, name);
}

function ipNumber(ip: string): number {
  return ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

/** An IPv4 set element of `nft -j`: an address, a prefix or a range (adjacent pods merge). */
function covers(raw: unknown, ip: string): boolean {
  const v =
    raw && typeof raw === 'object' && 'elem' in raw ? (raw as { elem: { val: unknown } }).elem.val : raw;
  const n = ipNumber(ip);
  if (typeof v === 'string') return v === ip;
  if (v && typeof v === 'object' && 'prefix' in v) {
    const { addr, len } = (v as { prefix: { addr: string; len: number } }).prefix;
    const start = ipNumber(addr);
    return n >= start && n < start + 2 ** (32 - len);
  }
  if (v && typeof v === 'object' && 'range' in v) {
    const [a, b] = (v as { range: [string, string] }).range;
    return n >= ipNumber(a) && n <= ipNumber(b);
  }
  return false;
}

/** Which of the addresses the agent governs (Enforce / Audit sets), read in the node namespace. */
export async function governedAddresses(
  cp: ClusterPlan,
  ips: readonly string[],
): Promise<{ enforce: Set<string>; audit: Set<string> }> {
  const out = { enforce: new Set<string>(), audit: new Set<string>() };
  const r = await labExec(cp.lab, 'node', ['nft', '-j', 'list', 'table', 'inet', 'namegate'], {
    timeoutMs: 10_000,
  });
  if (r.code !== 0) return out;
  const doc = JSON.parse(r.stdout) as { nftables: Array<{ set?: { name: string; elem?: unknown[] } }> };
  for (const mode of ['enforce', 'audit'] as const) {
    // Addresses (enforce4) and ranges of adjacent addresses (enforcenet4).
    const names = [`${mode}4`, `${mode}net4`];
    const elems = doc.nftables
      .filter((i) => i.set && names.includes(i.set.name))
      .flatMap((i) => i.set?.elem ?? []);
    for (const ip of ips) if (elems.some((e) => covers(e, ip))) out[mode].add(ip);
  }
  return out;
}
