/**
 * The node's private namespaces and cgroups. A holder process joins the lab's node network
 * namespace and opens new PID and mount namespaces (`unshare --pid --fork --kill-child
 * --mount-proc`), with the pause program as PID 1 (it reaps the orphans containerd's shims
 * leave). Every cluster daemon then starts with `nsenter -t <holder> --net --mount --pid`:
 *
 * - its writes to /var/lib, /var/log and /run/containerd land in the lab's state dir (bind
 *   mounts inside the private mount namespace only);
 * - the kernel sysctls the kubelet sets (they are global, not per namespace) are files bound over
 *   /proc/sys/... inside it, so the machine's values never change;
 * - one SIGKILL of the holder ends every process of the node, containers included, and every
 *   mount goes with the mount namespace.
 *
 * What the kernel keeps after that is the cgroup tree under the plan's cgroupRoot, which
 * `removeCgroups` removes depth-first; the network namespace goes with the lab.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ErrorCode, NamegateError } from '../../core/errors.ts';
import { statePaths } from '../plan.ts';
import { type Daemon, isAlive, logTail } from '../processes.ts';
import { findTool, must } from '../run.ts';
import type { ClusterPlan } from './plan.ts';

/** Kernel sysctls the kubelet writes at start (container_manager_linux.go); none is per netns. */
export const SHIELDED_SYSCTLS = [
  'vm/overcommit_memory',
  'vm/panic_on_oom',
  'kernel/panic',
  'kernel/panic_on_oops',
  'kernel/keys/root_maxkeys',
  'kernel/keys/root_maxbytes',
];

const HOLDER = 'holder';

function tool(name: string): string {
  const t = findTool(name);
  if (!t) throw new NamegateError(ErrorCode.CommandFailed, `${name} is not installed`);
  return t;
}

function spawnLogged(plan: ClusterPlan, name: string, argv: readonly string[]): ChildProcess {
  const log = path.join(statePaths(plan.lab).logs, `${name}.log`);
  const fd = openSync(log, 'a');
  try {
    const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', fd, fd] });
    child.unref();
    return child;
  } finally {
    closeSync(fd);
  }
}

async function writePid(plan: ClusterPlan, name: string, pid: number): Promise<void> {
  const dir = statePaths(plan.lab).pids;
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, `${name}.pid`), `${pid}\n`);
}

function children(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** The holder's PID 1 (host pid), from its pid file. */
export function holderPid(plan: ClusterPlan): number | null {
  try {
    const outer = Number(readFileSync(path.join(statePaths(plan.lab).pids, `${HOLDER}.pid`), 'utf8').trim());
    const inner = children(outer)[0];
    return inner !== undefined && isAlive(inner) ? inner : null;
  } catch {
    return null;
  }
}

/** argv that runs a command in the node's network, mount and PID namespaces. */
export function inNode(holder: number, argv: readonly string[]): string[] {
  return [tool('nsenter'), '-t', String(holder), '--net', '--mount', '--pid', '--', ...argv];
}

/** Start the holder and prepare its mount namespace; returns PID 1 of the node (host pid). */
export async function startHolder(plan: ClusterPlan, pause: string): Promise<number> {
  const p = plan.paths;
  for (const dir of [p.varLib, p.varLog, p.runContainerd, p.sysctlShields])
    await mkdir(dir, { recursive: true });
  // The bind target must exist on the host; containerd's package would create it as well.
  await mkdir('/run/containerd', { recursive: true });
  const shields: string[] = [];
  for (const key of SHIELDED_SYSCTLS) {
    const file = path.join(p.sysctlShields, key.replaceAll('/', '.'));
    await writeFile(file, await readFile(`/proc/sys/${key}`, 'utf8'));
    shields.push(`mount --bind ${file} /proc/sys/${key}`);
  }
  const child = spawnLogged(plan, HOLDER, [
    tool('nsenter'),
    `--net=/run/netns/${plan.lab.nodeNetns}`,
    '--',
    tool('unshare'),
    '--pid',
    '--fork',
    '--kill-child',
    '--mount-proc',
    '--propagation',
    'private',
    pause,
  ]);
  if (child.pid === undefined)
    throw new NamegateError(ErrorCode.CommandFailed, 'could not start the node holder');
  await writePid(plan, HOLDER, child.pid);
  const deadline = Date.now() + 5000;
  let inner = children(child.pid)[0];
  for (; inner === undefined; inner = children(child.pid)[0]) {
    if (!isAlive(child.pid) || Date.now() > deadline) {
      throw new NamegateError(
        ErrorCode.CommandFailed,
        `the node holder did not start:\n${await logTail(path.join(statePaths(plan.lab).logs, `${HOLDER}.log`))}`,
      );
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  const script = [
    'set -e',
    `mount --bind ${p.varLib} /var/lib`,
    `mount --bind ${p.varLog} /var/log`,
    `mount --bind ${p.runContainerd} /run/containerd`,
    ...shields,
  ].join('\n');
  await must([tool('nsenter'), '-t', String(inner), '--mount', '--', tool('sh'), '-c', script], {
    timeoutMs: 10_000,
  });
  return inner;
}

/** Start a daemon inside the node's namespaces, as a lab daemon (pid file, log). */
export async function startNodeDaemon(
  plan: ClusterPlan,
  holder: number,
  name: string,
  argv: readonly string[],
): Promise<Daemon> {
  const child = spawnLogged(plan, name, inNode(holder, argv));
  const pid = child.pid;
  if (pid === undefined) throw new NamegateError(ErrorCode.CommandFailed, `could not start ${name}`);
  await writePid(plan, name, pid);
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  return {
    name,
    pid,
    netns: plan.lab.nodeNetns,
    log: path.join(statePaths(plan.lab).logs, `${name}.log`),
    exited,
    child,
  };
}

/** End the node: SIGKILL its PID 1, which ends every process in its PID namespace. */
export async function stopHolder(plan: ClusterPlan): Promise<boolean> {
  const inner = holderPid(plan);
  if (inner === null) return false;
  try {
    process.kill(inner, 'SIGKILL');
  } catch {
    return false;
  }
  const deadline = Date.now() + 10_000;
  while (isAlive(inner) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  return true;
}

/** Mount points of every cgroup hierarchy (v1 controllers, name=systemd, the v2 unified tree). */
export function cgroupMounts(): string[] {
  const out: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const fstype = right.split(' ')[0];
    if (fstype === 'cgroup' || fstype === 'cgroup2') out.push(left.split(' ')[4]!);
  }
  return out;
}

/** Create cgroupRoot in every hierarchy, before the kubelet checks that it exists. */
export async function createCgroups(plan: ClusterPlan): Promise<void> {
  for (const mnt of cgroupMounts()) {
    const dir = path.join(mnt, plan.cgroupRoot);
    await mkdir(dir, { recursive: true });
    // A v1 cpuset child starts with no CPUs and no memory nodes: give it its parent's.
    for (const f of ['cpuset.cpus', 'cpuset.mems']) {
      const parent = path.join(mnt, f);
      if (existsSync(parent)) await writeFile(path.join(dir, f), await readFile(parent, 'utf8'));
    }
  }
}

async function rmdirTree(dir: string): Promise<number> {
  let removed = 0;
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) if (e.isDirectory()) removed += await rmdirTree(path.join(dir, e.name));
  // Tasks of a killed container leave the cgroup a moment after they die: retry, bounded.
  for (let attempt = 0; ; attempt++) {
    try {
      await rmdir(dir);
      return removed + 1;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return removed;
      if (code !== 'EBUSY' || attempt >= 100) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** Remove cgroupRoot and everything under it from every hierarchy; returns how many dirs. */
export async function removeCgroups(plan: ClusterPlan): Promise<number> {
  let removed = 0;
  for (const mnt of cgroupMounts()) {
    const dir = path.join(mnt, plan.cgroupRoot);
    if (existsSync(dir)) removed += await rmdirTree(dir);
  }
  return removed;
}

/** The host pid of a container's first process, found through its cgroup (no CRI call). */
export async function containerPid(plan: ClusterPlan, containerId: string): Promise<number | null> {
  const root = path.join('/sys/fs/cgroup/pids', plan.cgroupRoot);
  const find = async (dir: string): Promise<string | null> => {
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (!e.isDirectory()) continue;
      const full = path.join(dir, e.name);
      if (e.name === containerId) return full;
      const deeper = await find(full);
      if (deeper) return deeper;
    }
    return null;
  };
  const dir = await find(root);
  if (!dir) return null;
  const pids = (await readFile(path.join(dir, 'cgroup.procs'), 'utf8').catch(() => '')).trim().split('\n');
  const pid = Number(pids[0]);
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}
