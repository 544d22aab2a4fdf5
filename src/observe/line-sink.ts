/**
 * Where flow-log lines go. The DNS proxy and the proxies write one line per decision by hand
 * (their fields are fixed), so all they need is something that takes a line.
 */
import { pino } from 'pino';

/** Which decisions get a flow-log line. */
export type FlowLogMode = 'all' | 'denied' | 'none';

/** A pino destination (SonicBoom), a file stream, or a test's array. */
export interface LineSink {
  write(line: string): unknown;
}

/**
 * Lines to a file (appended, its folder made) or to stdout. Synchronous writes: one line per
 * decision, in order, nothing lost when the process dies, and `tail -f` on the file shows each
 * one as it happens.
 */
export function createLineSink(path: string | undefined): LineSink {
  return pino.destination({ dest: path ?? 1, sync: true, ...(path ? { mkdir: true, append: true } : {}) });
}
