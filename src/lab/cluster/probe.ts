/**
 * The first moments of a new pod, seen from inside it: a test-client container whose command
 * asks the pod's resolver for an allowed name until it is answered, asking a denied name between
 * tries, then prints one line and sleeps (pause). With the clock of /proc/uptime (10 ms steps,
 * the same clock in every namespace) it tells how long after its start the pod got its first
 * allowed answer, and whether any denied name was answered first (a pod not yet governed).
 */

export interface ProbeResult {
  /** Seconds of uptime when the container started and when the allowed name was answered. */
  readonly start: number;
  readonly answered: number;
  readonly tries: number;
  /** Denied names answered: must be 0. */
  readonly leaks: number;
  readonly answer: string;
}

const MARK = 'namegate-probe';

/** busybox sh: builtins only (read, case, arithmetic), plus dig. */
export function probeCommand(allowed: string, denied: string, maxTries = 3000): string[] {
  const q = (name: string) => `dig +time=1 +tries=1 +short ${name} A 2>/dev/null`;
  const script = [
    'read s _ </proc/uptime',
    'n=0; leak=0; a=',
    'while [ $n -lt ' + maxTries + ' ]; do',
    '  n=$((n+1))',
    `  a=$(${q(allowed)})`,
    '  case "$a" in *.*.*.*) break;; esac',
    `  d=$(${q(denied)})`,
    '  case "$d" in *.*.*.*) leak=$((leak+1));; esac',
    'done',
    'read e _ </proc/uptime',
    `d=$(${q(denied)})`,
    'case "$d" in *.*.*.*) leak=$((leak+1));; esac',
    `echo "${MARK} start=$s answered=$e tries=$n leaks=$leak answer=$(echo $a)"`,
    'exec /pause',
  ].join('\n');
  return ['/bin/sh', '-c', script];
}

export function parseProbe(log: string): ProbeResult | null {
  const line = log.split('\n').find((l) => l.startsWith(MARK));
  if (!line) return null;
  const field = (k: string): string => new RegExp(`${k}=(\\S*)`).exec(line)?.[1] ?? '';
  return {
    start: Number(field('start')),
    answered: Number(field('answered')),
    tries: Number(field('tries')),
    leaks: Number(field('leaks')),
    answer: line.slice(line.indexOf('answer=') + 7).trim(),
  };
}

/** Milliseconds from the container's start to its first allowed answer. */
export function governedMs(r: ProbeResult): number {
  return Math.round((r.answered - r.start) * 1000);
}
