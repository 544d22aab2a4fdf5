/**
 * The lab's daemons: started detached inside a namespace (so they outlive the CLI), with a pid
 * file and a log under the state dir; found again and ended by `lab down` even after the CLI or
 * a daemon crashed.
 *
 * A process belongs to the lab when it lives in one of the lab's namespaces (its
 * /proc/<pid>/ns/net is the nsfs inode of a namespace mounted under the lab's names), or when a
 * pid file names it and its command line mentions the lab's state dir (a pid file alone is not
 * enough: the pid may have been reused). Processes sharing a namespace with such a process are
 * the lab's too, which catches nginx workers even when the namespace's name is already gone.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ErrorCode, NamegateError } from '../core/errors.ts';
import { netnsInode } from './netns.ts';
import type { LabPlan } from './plan.ts';
import { statePaths } from './plan.ts';
import { findTool, inNetns } from './run.ts';

export interface Daemon {
  readonly name: string;
  readonly pid: number;
  readonly netns: string;
  readonly log: string;
  /** Resolves when the process exits while this CLI still runs. */
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  readonly child: ChildProcess;
}

export interface DaemonSpec {
  readonly name: string;
  readonly netns: string;
  readonly argv: readonly string[];
}

export async function startDaemon(plan: LabPlan, spec: DaemonSpec): Promise<Daemon> {
  const p = statePaths(plan);
  await mkdir(p.pids, { recursive: true });
  await mkdir(p.logs, { recursive: true });
  const log = path.join(p.logs, `${spec.name}.log`);
  const fd = openSync(log, 'a');
  const argv = inNetns(spec.netns, spec.argv);
  let child: ChildProcess;
  try {
    // ip netns exec execs the command in place: the pid we get is the daemon's own.
    child = spawn(findTool('ip') ?? 'ip', argv.slice(1), { detached: true, stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
  const pid = child.pid;
  if (pid === undefined) {
    throw new NamegateError(ErrorCode.CommandFailed, `could not start ${spec.name} (${spec.argv[0]})`);
  }
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  child.unref();
  await writeFile(path.join(p.pids, `${spec.name}.pid`), `${pid}\n`);
  return { name: spec.name, pid, netns: spec.netns, log, exited, child };
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A zombie (exited, not yet reaped by its parent) is gone for our purposes.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

function netInode(pid: number): number | null {
  try {
    const m = /^net:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/ns/net`));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function allPids(): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number);
}

/** Pids named by the lab's pid files, with the daemon name. */
export async function pidFiles(plan: LabPlan): Promise<Map<string, number>> {
  const dir = statePaths(plan).pids;
  const out = new Map<string, number>();
  let files: string[];
  try {
    files = await readdir(dir);
  } catch {
    return out;
  }
  for (const f of files) {
    if (!f.endsWith('.pid')) continue;
    const text = (await readFile(path.join(dir, f), 'utf8').catch(() => '')).trim();
    if (/^\d{1,9}$/.test(text)) out.set(f.slice(0, -4), Number(text));
  }
  return out;
}

/** A pid file's process, if it is alive and is still the lab's. */
export function ownedPid(plan: LabPlan, pid: number): boolean {
  return pid !== process.pid && isAlive(pid) && cmdline(pid).includes(plan.stateDir);
}

/** Every live process of the lab, by the rules in the file comment. */
export async function labProcesses(plan: LabPlan, netnsNames: readonly string[]): Promise<number[]> {
  const inodes = new Set<number>();
  for (const ns of netnsNames) {
    const ino = netnsInode(ns);
    if (ino !== null) inodes.add(ino);
  }
  const found = new Set<number>();
  for (const pid of (await pidFiles(plan)).values()) {
    if (!ownedPid(plan, pid)) continue;
    found.add(pid);
    const ino = netInode(pid);
    if (ino !== null) inodes.add(ino);
  }
  if (inodes.size > 0) {
    for (const pid of allPids()) {
      if (found.has(pid)) continue;
      const ino = netInode(pid);
      if (ino !== null && inodes.has(ino) && isAlive(pid)) found.add(pid);
    }
  }
  // Never end ourselves or the shell that ran us, even when run from inside a lab namespace.
  found.delete(process.pid);
  found.delete(process.ppid);
  return [...found].sort((a, b) => a - b);
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** Processes we did not spawn cannot be awaited; poll /proc, bounded. */
async function waitGone(pids: readonly number[], timeoutMs: number): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  let left = pids.filter(isAlive);
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 25));
    left = left.filter(isAlive);
  }
  return left;
}

/** End every process of the lab: SIGTERM, then SIGKILL what is left. Returns the pids ended. */
export async function stopLabProcesses(plan: LabPlan, netnsNames: readonly string[]): Promise<number[]> {
  const pids = await labProcesses(plan, netnsNames);
  if (pids.length === 0) return [];
  for (const pid of pids) signal(pid, 'SIGTERM');
  const stubborn = await waitGone(pids, 3000);
  for (const pid of stubborn) signal(pid, 'SIGKILL');
  const left = await waitGone(stubborn, 3000);
  if (left.length > 0) {
    throw new NamegateError(
      ErrorCode.CommandFailed,
      `lab ${plan.name}: processes survive SIGKILL: ${left.join(', ')}`,
    );
  }
  // A second sweep: a process may have forked while we were ending its parent.
  const again = await labProcesses(plan, netnsNames);
  if (again.length > 0) {
    for (const pid of again) signal(pid, 'SIGKILL');
    await waitGone(again, 3000);
  }
  return [...new Set([...pids, ...again])];
}

/** Short description of a process for `lab status`: "1234 nginx". */
export function describePid(pid: number): string {
  try {
    return `${pid} ${readFileSync(`/proc/${pid}/comm`, 'utf8').trim()}`;
  } catch {
    return `${pid} ?`;
  }
}

/** The last lines of a log, for error messages. */
export async function logTail(file: string, lines = 8): Promise<string> {
  try {
    const text = await readFile(file, 'utf8');
    return text.trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}
