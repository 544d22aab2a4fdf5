/**
 * Running external commands for the lab: bounded in time and output, never through a shell,
 * with failures turned into NG_COMMAND_FAILED errors that quote the command and its stderr.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { ErrorCode, NamegateError } from '../core/errors.ts';

export interface RunOptions {
  /** Kill the command (SIGKILL) after this long. */
  readonly timeoutMs?: number;
  /** Written to stdin, which is then closed. */
  readonly input?: string;
  /** Keep at most this many bytes of each of stdout and stderr. */
  readonly maxBytes?: number;
}

export interface RunResult {
  /** Exit code; null when killed by a signal (including the timeout). */
  readonly code: number | null;
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_MAX_BYTES = 1 << 20;

/** Debian sbin dirs are not on every PATH (e.g. sudo without secure_path); look there too. */
const EXTRA_DIRS = ['/usr/sbin', '/sbin', '/usr/bin', '/bin'];

export function findTool(name: string): string | null {
  const dirs = [...(process.env['PATH'] ?? '').split(':').filter(Boolean), ...EXTRA_DIRS];
  for (const dir of dirs) {
    const full = path.join(dir, name);
    try {
      accessSync(full, constants.X_OK);
      return full;
    } catch {
      // not here
    }
  }
  return null;
}

export function run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const [cmd, ...args] = argv;
  if (!cmd) throw new NamegateError(ErrorCode.UsageInvalid, 'empty command');
  const exe = cmd.includes('/') ? cmd : (findTool(cmd) ?? cmd);
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  return new Promise((resolve) => {
    const child = spawn(exe, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    let timedOut = false;
    child.stdout.on('data', (b: Buffer) => {
      if (outBytes < maxBytes) out.push(b.subarray(0, maxBytes - outBytes));
      outBytes += b.length;
    });
    child.stderr.on('data', (b: Buffer) => {
      if (errBytes < maxBytes) err.push(b.subarray(0, maxBytes - errBytes));
      errBytes += b.length;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    child.stdin.on('error', () => {
      // The command may exit before reading its input; its exit status tells what happened.
    });
    child.stdin.end(options.input ?? '');
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: 127, signal: null, stdout: '', stderr: e.message, timedOut: false });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        timedOut,
      });
    });
  });
}

export function commandText(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\\''")}'`)).join(' ');
}

/** Run and require exit code 0. */
export async function must(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const r = await run(argv, options);
  if (r.code !== 0) {
    const why = r.timedOut ? 'timed out' : r.code === null ? `killed by ${r.signal}` : `exit code ${r.code}`;
    const detail = (r.stderr.trim() || r.stdout.trim()).split('\n').slice(-5).join('\n');
    throw new NamegateError(
      ErrorCode.CommandFailed,
      `${commandText(argv)}: ${why}${detail ? `\n${detail}` : ''}`,
    );
  }
  return r;
}

/** argv that runs a command inside a named network namespace. */
export function inNetns(netns: string, argv: readonly string[]): string[] {
  return ['ip', 'netns', 'exec', netns, ...argv];
}

/** Debian packages of the tools the lab runs; `make deps` installs them. */
export const LAB_TOOLS: Readonly<Record<string, string>> = {
  ip: 'iproute2',
  ss: 'iproute2',
  sysctl: 'procps',
  knotd: 'knot',
  knsupdate: 'knot-dnsutils',
  kdig: 'knot-dnsutils',
  nginx: 'nginx-light',
  openssl: 'openssl',
  curl: 'curl',
  dig: 'dnsutils',
  nc: 'netcat-openbsd',
};

export function requireRoot(what: string): void {
  if (process.getuid && process.getuid() !== 0) {
    throw new NamegateError(
      ErrorCode.UsageInvalid,
      `${what} needs root (it creates network namespaces); run it with sudo`,
    );
  }
}

export function requireTools(names: readonly string[] = Object.keys(LAB_TOOLS)): void {
  const missing = names.filter((n) => findTool(n) === null);
  if (missing.length > 0) {
    const pkgs = [...new Set(missing.map((m) => LAB_TOOLS[m] ?? m))].join(' ');
    throw new NamegateError(
      ErrorCode.CommandFailed,
      `missing tools: ${missing.join(', ')} (Debian packages: ${pkgs}); run make deps`,
    );
  }
}
