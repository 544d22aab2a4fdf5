/**
 * Ending flows: `conntrack -D` for the (source, destination, protocol, port) pairs that forget()
 * revoked, and for UDP/TCP 53 of a source that just became governed (K8S-05: a stale UDP/53
 * entry would carry its queries past the new redirect). Spawned per forget batch (a rare path),
 * one process at a time, each bounded in time; counts what it deleted.
 */
import { spawn } from 'node:child_process';
import { ipFamily } from '../core/ip.ts';
import type { LearnedRange } from './nft-elements.ts';

export interface ConntrackResult {
  readonly deleted: number;
  readonly errors: readonly string[];
}

/** A port range at most this wide is deleted port by port; wider ones are listed first. */
const PER_PORT_LIMIT = 16;
/** At most this many entries are deleted one by one for one listed range. */
const LISTED_LIMIT = 1024;

interface Run {
  readonly code: number | null;
  readonly out: string;
  readonly err: string;
}

export class Conntrack {
  readonly #binary: string;
  readonly #timeoutMs: number;
  #tail: Promise<unknown> = Promise.resolve();

  constructor(options: { binary?: string; timeoutMs?: number } = {}) {
    this.#binary = options.binary ?? 'conntrack';
    this.#timeoutMs = options.timeoutMs ?? 5_000;
  }

  #spawn(args: readonly string[]): Promise<Run> {
    return new Promise((resolve) => {
      const child = spawn(this.#binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let size = 0;
      let failure: string | null = null;
      const timer = setTimeout(() => {
        failure = `conntrack did not finish within ${this.#timeoutMs} ms`;
        child.kill('SIGKILL');
      }, this.#timeoutMs);
      const take = (into: Buffer[]) => (c: Buffer) => {
        size += c.length;
        if (size <= 16 * 1024 * 1024) into.push(c);
      };
      child.stdout.on('data', take(out));
      child.stderr.on('data', take(err));
      child.on('error', (e) => {
        failure = `cannot run ${this.#binary}: ${e.message}`;
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({
          code: failure === null ? code : null,
          out: Buffer.concat(out).toString('utf8'),
          err: failure ?? Buffer.concat(err).toString('utf8').trim(),
        });
      });
    });
  }

  /** Serialized: concurrent callers queue behind each other. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#tail.then(fn);
    this.#tail = next.catch(() => undefined);
    return next;
  }

  async #delete(args: readonly string[], errors: string[]): Promise<number> {
    const r = await this.#spawn(['-D', ...args]);
    const m = /(\d+) flow entries have been deleted/.exec(r.err);
    // conntrack exits 1 when nothing matched; that is not an error.
    if (m) return Number(m[1]);
    errors.push(`conntrack -D ${args.join(' ')}: ${r.err || `exit ${r.code}`}`);
    return 0;
  }

  /** End the flows of these revoked ranges. */
  deleteFlows(ranges: readonly LearnedRange[]): Promise<ConntrackResult> {
    return this.#serial(async () => {
      const errors: string[] = [];
      let deleted = 0;
      for (const r of ranges) {
        const fam = ['-f', ipFamily(r.source) === 6 ? 'ipv6' : 'ipv4'];
        const base = [...fam, '-s', r.source, '-d', r.destination, '-p', r.protocol.toLowerCase()];
        if (r.from === 0 && r.to === 65535) {
          deleted += await this.#delete(base, errors);
        } else if (r.to - r.from < PER_PORT_LIMIT) {
          for (let p = r.from; p <= r.to; p++)
            deleted += await this.#delete([...base, '--dport', String(p)], errors);
        } else {
          const listed = await this.#spawn(['-L', ...base]);
          let n = 0;
          for (const line of listed.out.split('\n')) {
            // The first sport=/dport= pair is the original direction.
            const sport = /\bsport=(\d+)/.exec(line);
            const dport = /\bdport=(\d+)/.exec(line);
            if (!sport || !dport) continue;
            const d = Number(dport[1]);
            if (d < r.from || d > r.to) continue;
            if (++n > LISTED_LIMIT) {
              errors.push(
                `more than ${LISTED_LIMIT} flows for ${r.source} -> ${r.destination}; the rest stay`,
              );
              break;
            }
            deleted += await this.#delete(
              [...base, '--sport', String(sport[1]), '--dport', String(d)],
              errors,
            );
          }
        }
      }
      return { deleted, errors };
    });
  }

  /** Delete UDP and TCP port 53 entries of these sources (they just became governed). */
  flushDns(sources: readonly string[]): Promise<ConntrackResult> {
    return this.#serial(async () => {
      const errors: string[] = [];
      let deleted = 0;
      for (const s of sources) {
        const fam = ['-f', ipFamily(s) === 6 ? 'ipv6' : 'ipv4'];
        for (const proto of ['udp', 'tcp']) {
          deleted += await this.#delete([...fam, '-s', s, '-p', proto, '--dport', '53'], errors);
        }
      }
      return { deleted, errors };
    });
  }
}
