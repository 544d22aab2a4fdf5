/**
 * Running external commands for the lab: the bounded runner of src/core/run.ts, plus failures
 * turned into NG_COMMAND_FAILED errors that quote the command and its stderr.
 */

import { ErrorCode, NamegateError } from '../core/errors.ts';
import { commandText, findTool, type RunOptions, type RunResult, run } from '../core/run.ts';

export { commandText, findTool, type RunOptions, type RunResult, run };

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
