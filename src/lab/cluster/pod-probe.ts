/**
 * The in-pod probe of the cluster benchmark and tests: one long-lived Node.js process (the
 * namegate image's, run as the pod's command) so that what is timed is the cluster, not the start
 * of a process per try. It asks the resolver of /etc/resolv.conf over UDP with Node's in-process
 * stub resolver. Two modes:
 *
 *   first <allowed> <denied>: from the container's start, ask for <allowed> until an address
 *     comes back (a try waits up to 5 s for its reply, as glibc does; 10 ms between tries), asking
 *     <denied> between tries (an answer there is a leak: a pod not governed yet). Prints one
 *     line (parseProbe in probe.ts), then idles.
 *   follow <name> <port> <ca file>: forever, resolve <name> and open a TLS connection to its
 *     first address (SNI <name>, verified with the CA), 10 ms apart; prints a line each time the
 *     outcome changes (parseFollow), with the wall-clock times the try started and ended.
 *
 * Times in `first` are seconds since boot, the clock /proc/<pid>/stat's start time uses (every
 * namespace shares it); the container's start is its first process's start (this one: PID 1).
 */
import { Resolver } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { FOLLOW_MARK, PROBE_MARK } from './probe.ts';

/** A try's wait for its reply: glibc's default (resolv.conf `timeout:5`). */
const TRY_TIMEOUT_MS = 5000;
/** A TLS connection's wait. */
const CONNECT_TIMEOUT_MS = 1000;
const PAUSE_MS = 10;
/** sysconf(_SC_CLK_TCK) on Linux. */
const CLOCK_TICKS = 100;

type Answer =
  | { readonly kind: 'answer'; readonly ips: string[] }
  | { readonly kind: 'refused'; readonly why: string };

/** The first nameserver of /etc/resolv.conf (PROBE_RESOLVER=<ipv4>:<port> instead, for tests). */
function resolverAddress(): string {
  const env = process.env['PROBE_RESOLVER'];
  if (env) return env;
  const m = /^\s*nameserver\s+(\S+)/m.exec(readFileSync('/etc/resolv.conf', 'utf8'));
  if (!m) throw new Error('no nameserver in /etc/resolv.conf');
  return m[1]!;
}

/**
 * A queries over UDP with Node's own stub resolver (c-ares, in this process: no cache, no search
 * list, one try per call): the addresses, or why there were none (EREFUSED, ETIMEOUT, ...).
 */
class Asker {
  readonly #resolver = new Resolver({ timeout: TRY_TIMEOUT_MS, tries: 1 });

  constructor(server: string) {
    this.#resolver.setServers([server]);
  }

  async ask(name: string): Promise<Answer> {
    try {
      const ips = await this.#resolver.resolve4(name);
      return ips.length > 0 ? { kind: 'answer', ips } : { kind: 'refused', why: 'empty' };
    } catch (err) {
      return { kind: 'refused', why: (err as NodeJS.ErrnoException).code ?? 'error' };
    }
  }
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Seconds since boot now: /proc/uptime once, then the monotonic clock. */
function bootClock(): () => number {
  const at = performance.now();
  const uptime = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  return () => uptime + (performance.now() - at) / 1000;
}

/** When the process `pid` started, in seconds since boot (/proc/<pid>/stat field 22). */
function processStart(pid: string): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[19]) / CLOCK_TICKS;
}

async function first(allowed: string, denied: string): Promise<void> {
  const now = bootClock();
  const start = processStart('1');
  const asker = new Asker(resolverAddress());
  const sent = now();
  let tries = 0;
  let leaks = 0;
  let answer: string[] = [];
  let last = '';
  for (;;) {
    tries++;
    const a = await asker.ask(allowed);
    if (a.kind === 'answer') {
      answer = a.ips;
      break;
    }
    last = a.why;
    if ((await asker.ask(denied)).kind === 'answer') leaks++;
    await pause(PAUSE_MS);
  }
  const answered = now();
  if ((await asker.ask(denied)).kind === 'answer') leaks++;
  const t = (s: number) => s.toFixed(3);
  console.log(
    `${PROBE_MARK} start=${t(start)} sent=${t(sent)} answered=${t(answered)} tries=${tries} leaks=${leaks} last=${last || '-'} answer=${answer.join(',')}`,
  );
  // Stay up: the pod belongs to a Deployment.
  setInterval(() => {}, 1 << 30);
}

/** A TLS handshake with the first address of `name`; null when it succeeded, else why not. */
async function connectOnce(asker: Asker, name: string, port: number, ca: string): Promise<string | null> {
  const a = await asker.ask(name);
  if (a.kind !== 'answer') return `dns_${a.why}`;
  return new Promise((resolve) => {
    const socket = tls.connect({ host: a.ips[0]!, port, servername: name, ca, timeout: CONNECT_TIMEOUT_MS });
    const done = (why: string | null) => {
      socket.destroy();
      resolve(why);
    };
    socket.once('secureConnect', () => done(null));
    socket.once('timeout', () => done('connect_timeout'));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? 'error'));
  });
}

async function follow(name: string, port: number, caFile: string): Promise<void> {
  const ca = readFileSync(caFile, 'utf8');
  const asker = new Asker(resolverAddress());
  let state: boolean | null = null;
  for (;;) {
    const at = Date.now();
    const why = await connectOnce(asker, name, port, ca);
    const ok = why === null;
    if (ok !== state) {
      state = ok;
      console.log(`${FOLLOW_MARK} at=${at} done=${Date.now()} ok=${ok ? 1 : 0} why=${why ?? '-'}`);
    }
    await pause(PAUSE_MS);
  }
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'first' && args.length === 2) await first(args[0]!, args[1]!);
else if (mode === 'follow' && args.length === 3) await follow(args[0]!, Number(args[1]), args[2]!);
else {
  console.error('usage: pod-probe.ts first <allowed> <denied> | follow <name> <port> <ca file>');
  process.exit(2);
}
