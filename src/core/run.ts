/**
 * The one way namegate runs another program (nft, conntrack, ip, knotc...): never through a
 * shell, bounded in time (SIGKILL after timeoutMs) and in the output it keeps, with a result
 * value instead of an exception, so each caller decides what a failure means.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { ErrorCode, NamegateError } from './errors.ts';

export interface RunOptions {
  /** Kill the command (SIGKILL) after this long. */
  readonly timeoutMs?: number;
  /** Written to stdin, which is then closed. */
  readonly input?: string;
  /** Keep at most this many bytes of each of stdout and stderr (the rest is counted, not kept). */
  readonly maxBytes?: number;
}

export interface RunResult {
  /** Exit code; null when killed by a signal (including the timeout). */
  readonly code: number | null;
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
  /** stdout or stderr was longer than maxBytes and was cut. */
  readonly truncated: boolean;
  /** Why the program could not be started (not found, not executable), else null. */
  readonly startError: string | null;
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
      resolve({
        code: 127,
        signal: null,
        stdout: '',
        stderr: e.message,
        timedOut: false,
        truncated: false,
        startError: e.message,
      });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        timedOut,
        truncated: outBytes > maxBytes || errBytes > maxBytes,
        startError: null,
      });
    });
  });
}

export function commandText(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\\''")}'`)).join(' ');
}
