/**
 * Which sockets listen inside a namespace (from `ss`), and waiting until the daemons' sockets are
 * all there: the lab is ready when every address answers, not when a process merely exists.
 */
import { ErrorCode, NamegateError } from '../core/errors.ts';
import { type Daemon, isAlive, logTail } from './processes.ts';
import { must } from './run.ts';

/** "tcp 203.0.113.10:443", "udp [2001:db8:100::54]:53" */
export type SocketKey = string;

/** Parse `ss -Hlntu` output into socket keys (listening TCP, bound UDP). */
export function parseSs(text: string): Set<SocketKey> {
  const out = new Set<SocketKey>();
  for (const line of text.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 5) continue;
    const proto = cols[0];
    if (proto !== 'tcp' && proto !== 'udp') continue;
    out.add(`${proto} ${cols[4]}`);
  }
  return out;
}

export async function listening(netns: string): Promise<Set<SocketKey>> {
  const r = await must(['ss', '-N', netns, '-Hlntu'], { timeoutMs: 5000 });
  return parseSs(r.stdout);
}

/**
 * Wait until every wanted socket is bound in the namespace. Fails early, with the log's tail,
 * when a daemon exits; fails with the missing sockets after timeoutMs.
 */
export async function waitListening(
  netns: string,
  wanted: readonly SocketKey[],
  daemons: readonly Daemon[],
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let missing: SocketKey[] = [...wanted];
  for (;;) {
    for (const d of daemons) {
      if (!isAlive(d.pid)) {
        throw new NamegateError(
          ErrorCode.CommandFailed,
          `${d.name} exited while starting; the end of ${d.log}:\n${await logTail(d.log)}`,
        );
      }
    }
    const have = await listening(netns);
    missing = missing.filter((k) => !have.has(k));
    if (missing.length === 0) return;
    if (Date.now() > deadline) {
      throw new NamegateError(
        ErrorCode.CommandFailed,
        `not listening after ${timeoutMs} ms in ${netns}: ${missing.slice(0, 6).join(', ')}${missing.length > 6 ? ', ...' : ''}`,
      );
    }
    // Binding is not an event we can subscribe to from outside the namespace: poll, bounded.
    await new Promise((r) => setTimeout(r, 30));
  }
}
