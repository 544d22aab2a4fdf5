/**
 * The host side of the in-pod probe (pod-probe.ts, run in a pod with the namegate image): the
 * commands that start it, and the lines it prints, parsed back from the container's log.
 *
 * `first`: how long after its container started a new pod got its first allowed DNS answer, and
 * whether any denied name was answered first (a pod not governed yet). `follow`: when a pod's
 * connections to a name started or stopped getting through (a policy change reaching it).
 */

export const PROBE_MARK = 'namegate-probe';
export const FOLLOW_MARK = 'namegate-follow';
/** pod-probe.ts inside the namegate image (its /app is the repository's src/ and modules). */
const IN_IMAGE = '/app/src/lab/cluster/pod-probe.ts';

export interface ProbeResult {
  /** Seconds since boot: the container's start, the probe's first query, the allowed answer. */
  readonly start: number;
  readonly sent: number;
  readonly answered: number;
  readonly tries: number;
  /** Denied names answered: must be 0. */
  readonly leaks: number;
  /** Why the try before the answer got none (EREFUSED, ETIMEOUT: the resolver's codes), '-' when the first try answered. */
  readonly last: string;
  readonly answer: string;
}

/** A pod command: ask `allowed` from the container's first moment (pod-probe.ts `first`). */
export function probeCommand(allowed: string, denied: string): string[] {
  return ['/usr/bin/node', IN_IMAGE, 'first', allowed, denied];
}

/** A pod command: connect to `name`:`port` over TLS in a loop (pod-probe.ts `follow`). */
export function followCommand(name: string, port: number, caFile: string): string[] {
  return ['/usr/bin/node', IN_IMAGE, 'follow', name, String(port), caFile];
}

function fields(line: string): (k: string) => string {
  return (k) => new RegExp(`(?:^| )${k}=(\\S*)`).exec(line)?.[1] ?? '';
}

export function parseProbe(log: string): ProbeResult | null {
  const line = log.split('\n').find((l) => l.startsWith(`${PROBE_MARK} `));
  if (!line) return null;
  const f = fields(line);
  return {
    start: Number(f('start')),
    sent: Number(f('sent')),
    answered: Number(f('answered')),
    tries: Number(f('tries')),
    leaks: Number(f('leaks')),
    last: f('last'),
    answer: f('answer'),
  };
}

/** Milliseconds from the container's start to its first allowed answer. */
export function governedMs(r: ProbeResult): number {
  return Math.round((r.answered - r.start) * 1000);
}

/** Milliseconds the probe itself took to start (container start -> first query sent). */
export function probeStartMs(r: ProbeResult): number {
  return Math.round((r.sent - r.start) * 1000);
}

export interface FollowChange {
  /** Wall-clock milliseconds: the try that changed the outcome started, and ended. */
  readonly at: number;
  readonly done: number;
  readonly ok: boolean;
  readonly why: string;
}

/** Every outcome change in a follow probe's log, in order. */
export function parseFollow(log: string): FollowChange[] {
  return log
    .split('\n')
    .filter((l) => l.startsWith(`${FOLLOW_MARK} `))
    .map((l) => {
      const f = fields(l);
      return { at: Number(f('at')), done: Number(f('done')), ok: f('ok') === '1', why: f('why') };
    });
}
