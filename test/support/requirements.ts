/**
 * What a root or end-to-end suite needs from the machine, as a node:test `skip` value.
 *
 * On a developer's machine a missing tool skips the suite with the reason (and the package that
 * brings it). Under CI (CI=true) nothing is skipped for want of the machine: a missing tool, a
 * missing browser or not being root throws when the test file loads, so the run fails and names
 * what scripts/deps.sh did not install, instead of passing with every end-to-end suite skipped.
 */
import { existsSync } from 'node:fs';
import { findTool, LAB_TOOLS } from '../../src/lab/run.ts';

export interface Needs {
  /** Run as root (network namespaces, nftables). Default true. */
  readonly root?: boolean;
  /** Commands found on PATH or in /usr/sbin (the lab's tools: LAB_TOOLS). */
  readonly tools?: readonly string[];
  /** Files that must exist (a browser, a built binary). */
  readonly files?: readonly string[];
}

/** The lab's tools: every command a lab suite runs. */
export const LAB_COMMANDS = Object.keys(LAB_TOOLS);

/** True when this run is a CI run (CI=true or CI=1, as CI services set it). */
export function underCi(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = (env['CI'] ?? '').toLowerCase();
  return v === 'true' || v === '1';
}

/** Why the suite cannot run here, or null. */
export function unmet(needs: Needs): string | null {
  if ((needs.root ?? true) && process.getuid?.() !== 0) return 'needs root';
  const tools = (needs.tools ?? []).filter((t) => findTool(t) === null);
  const files = (needs.files ?? []).filter((f) => !existsSync(f));
  const missing = [...tools, ...files];
  if (missing.length === 0) return null;
  const pkgs = [...new Set(tools.map((t) => LAB_TOOLS[t]).filter((p) => p !== undefined))];
  return `missing: ${missing.join(', ')}${pkgs.length > 0 ? ` (Debian: ${pkgs.join(' ')})` : ''}; run scripts/deps.sh --test`;
}

/** A node:test `skip` value: false when the suite can run; under CI an unmet need throws instead. */
export function skipUnless(needs: Needs, env: NodeJS.ProcessEnv = process.env): string | false {
  const why = unmet(needs);
  if (why === null) return false;
  if (underCi(env)) throw new Error(`CI=true: this suite cannot run here (${why})`);
  return why;
}
