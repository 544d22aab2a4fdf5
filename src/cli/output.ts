/**
 * How commands talk to people: exit codes shared by every command, colour only on a terminal,
 * and usage errors that say what to fix.
 */
import { ErrorCode, NamegateError } from '../core/errors.ts';

export const Exit = {
  Ok: 0,
  /** check: the verdict is deny. */
  Deny: 1,
  /** Bad input: invalid files, flags or arguments. */
  BadInput: 2,
  /** Something failed at run time (a command, the kernel, the network). */
  Failure: 3,
} as const;

export function usageError(message: string): NamegateError {
  return new NamegateError(ErrorCode.UsageInvalid, message);
}

const useColour = process.stdout.isTTY === true && !process.env['NO_COLOR'];

function paint(code: number, text: string): string {
  return useColour ? `\u001b[${code}m${text}\u001b[0m` : text;
}

export const colour = {
  green: (t: string) => paint(32, t),
  red: (t: string) => paint(31, t),
  yellow: (t: string) => paint(33, t),
  dim: (t: string) => paint(2, t),
  bold: (t: string) => paint(1, t),
};

/**
 * What convert, validate and check say when valid files yield no policy (only other kinds, or
 * policies that convert to nothing): one message, and the same exit code (bad input).
 */
export function noPolicyMessage(paths: readonly string[]): string {
  return `no policy found in ${paths.join(', ')}: nothing there becomes a namegate policy (the warnings say why)`;
}
