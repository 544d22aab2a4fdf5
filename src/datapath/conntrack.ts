/**
 * Ending flows: `conntrack -D` for the (source, destination, protocol, port) pairs that forget()
 * revoked, and for UDP/TCP 53 of a source (address or CIDR) that just became governed (K8S-05:
 * a stale UDP/53 entry would carry its queries past the new redirect). Spawned per forget batch (a rare path),
 * one process at a time, each bounded in time; counts what it deleted. The DNS flush of many
 * sources runs as one `conntrack -R` batch of merged prefixes (dns-flush.ts).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { canonicalIp, ipFamily, parseCidr } from '../core/ip.ts';
import { run } from '../core/run.ts';
import { type DnsEntry, dnsFlushCommands } from './dns-flush.ts';
import { type AddrRange, addressRange, cidrRange, rangeContains } from './ip-range.ts';
import type { LearnedRange } from './nft-elements.ts';

export interface ConntrackResult {
  readonly deleted: number;
  readonly errors: readonly string[];
}

/** A port range at most this wide is deleted port by port; wider ones are listed first. */
const PER_PORT_LIMIT = 16;
/** At most this many entries are deleted one by one for one listed range. */
const LISTED_LIMIT = 1024;
/** Time allowed per command of a batch, beyond the timeout (each walks the connection table). */
const BATCH_COMMAND_MS = 200;
/**
 * More sources than this are flushed from one listing per family and protocol rather than one
 * `conntrack -D` per source and protocol: the source CIDRs minus the known ungoverned addresses
 * come to hundreds of prefixes at a first start (376 in the lab), 1,000 pods to 1,000 addresses,
 * and every `conntrack -D` walks the whole table (about 7 ms each on a quiet machine).
 */
const DIRECT_SOURCES_LIMIT = 8;

interface Run {
  readonly code: number | null;
  readonly out: string;
  readonly err: string;
}

export class Conntrack {
  readonly #binary: string;
  readonly #timeoutMs: number;
  #tail: Promise<unknown> = Promise.resolve();
  #maskSupport: Promise<boolean> | null = null;

  constructor(options: { binary?: string; timeoutMs?: number } = {}) {
    this.#binary = options.binary ?? 'conntrack';
    this.#timeoutMs = options.timeoutMs ?? 5_000;
  }

  async #spawn(args: readonly string[]): Promise<Run> {
    const r = await run([this.#binary, ...args], { timeoutMs: this.#timeoutMs, maxBytes: 16 * 1024 * 1024 });
    const failure = r.timedOut
      ? `conntrack did not finish within ${this.#timeoutMs} ms`
      : r.startError !== null
        ? `cannot run ${this.#binary}: ${r.startError}`
        : null;
    return { code: failure === null ? r.code : null, out: r.stdout, err: failure ?? r.stderr.trim() };
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

  /**
   * Delete entries of one direction: `base` selects addresses and protocol, `portFlag` which
   * port carries the range (--dport for the source's own direction, --sport for a flow the peer
   * opened towards the source).
   */
  async #deleteRange(
    base: readonly string[],
    portFlag: '--dport' | '--sport',
    from: number,
    to: number,
    errors: string[],
  ): Promise<number> {
    if (from === 0 && to === 65535) return this.#delete(base, errors);
    let deleted = 0;
    if (to - from < PER_PORT_LIMIT) {
      for (let p = from; p <= to; p++) deleted += await this.#delete([...base, portFlag, String(p)], errors);
      return deleted;
    }
    const listed = await this.#spawn(['-L', ...base]);
    let n = 0;
    for (const line of listed.out.split('\n')) {
      // The first sport=/dport= pair is the original direction.
      const sport = /\bsport=(\d+)/.exec(line);
      const dport = /\bdport=(\d+)/.exec(line);
      if (!sport || !dport) continue;
      const p = Number(portFlag === '--dport' ? dport[1] : sport[1]);
      if (p < from || p > to) continue;
      if (++n > LISTED_LIMIT) {
        errors.push(`more than ${LISTED_LIMIT} flows for ${base.join(' ')}; the rest stay`);
        break;
      }
      deleted += await this.#delete(
        [...base, '--sport', String(sport[1]), '--dport', String(dport[1])],
        errors,
      );
    }
    return deleted;
  }

  /**
   * End the flows of these revoked ranges. For UDP also the entries the peer opened towards the
   * source from a revoked port: with no NAT between them, a peer that keeps sending after the
   * source's entry went creates one, and the source's packets would pass as its replies.
   */
  deleteFlows(ranges: readonly LearnedRange[]): Promise<ConntrackResult> {
    return this.#serial(async () => {
      const errors: string[] = [];
      let deleted = 0;
      for (const r of ranges) {
        const fam = ['-f', ipFamily(r.source) === 6 ? 'ipv6' : 'ipv4'];
        const proto = ['-p', r.protocol.toLowerCase()];
        deleted += await this.#deleteRange(
          [...fam, '-s', r.source, '-d', r.destination, ...proto],
          '--dport',
          r.from,
          r.to,
          errors,
        );
        if (r.protocol === 'UDP')
          deleted += await this.#deleteRange(
            [...fam, '-s', r.destination, '-d', r.source, ...proto],
            '--sport',
            r.from,
            r.to,
            errors,
          );
      }
      return { deleted, errors };
    });
  }

  /**
   * The destinations these sources have live flows to now (`conntrack -L -s`, original
   * direction): any UDP entry, and TCP entries not yet closing down (TIME_WAIT and CLOSE are
   * over). Not serialized behind deletions: a listing changes nothing. Bounded in time and bytes
   * like every call; a failure is reported, never taken for "no flows".
   */
  async liveDestinations(
    sources: readonly string[],
  ): Promise<{ ok: true; destinations: Set<string> } | { ok: false; error: string }> {
    const destinations = new Set<string>();
    for (const source of sources) {
      const fam = ['-f', ipFamily(source) === 6 ? 'ipv6' : 'ipv4'];
      const r = await this.#spawn(['-L', ...fam, '-s', source]);
      // conntrack exits 0 with a count on stderr, also when nothing matched.
      if (r.code !== 0 && !/flow entries have been shown/.test(r.err))
        return { ok: false, error: `conntrack -L -s ${source}: ${r.err || `exit ${r.code}`}` };
      for (const line of r.out.split('\n')) {
        if (/^\s*tcp\b/.test(line) && /\s(TIME_WAIT|CLOSE)\s/.test(line)) continue;
        const dst = /\bdst=(\S+)/.exec(line)?.[1];
        const ip = dst === undefined ? null : canonicalIp(dst);
        if (ip !== null) destinations.add(ip);
      }
    }
    return { ok: true, destinations };
  }

  /**
   * Whether this conntrack takes `-s ADDR/LEN` (1.4.5 and later do); asked once, with a listing
   * that matches nothing.
   */
  #masks(): Promise<boolean> {
    this.#maskSupport ??= this.#spawn([
      '-L',
      '-f',
      'ipv4',
      '-s',
      '192.0.2.0/24',
      '-p',
      'udp',
      '--dport',
      '9',
    ]).then((r) => r.code === 0 && /flow entries have been shown/.test(r.err));
    return this.#maskSupport;
  }

  /** The port 53 entries of these families, one listing per family and protocol. */
  async #listDns(families: readonly (4 | 6)[], errors: string[]): Promise<DnsEntry[]> {
    const out: DnsEntry[] = [];
    for (const family of families) {
      for (const protocol of ['udp', 'tcp'] as const) {
        const fam = family === 6 ? 'ipv6' : 'ipv4';
        const r = await this.#spawn(['-L', '-f', fam, '-p', protocol, '--dport', '53']);
        if (r.code !== 0) {
          errors.push(`conntrack -L -f ${fam} -p ${protocol} --dport 53: ${r.err || `exit ${r.code}`}`);
          continue;
        }
        for (const line of r.out.split('\n')) {
          // The first src= is the original direction's.
          const src = /\bsrc=(\S+)/.exec(line)?.[1];
          const ip = src === undefined ? null : canonicalIp(src);
          if (ip !== null && ipFamily(ip) === family) out.push({ family, protocol, source: ip });
        }
      }
    }
    return out;
  }

  /**
   * Run these `conntrack -D` commands in one process (`conntrack -R FILE`, 1.4.6 and later), so a
   * batch costs one start; each deleted entry is printed on stdout. A conntrack without -R runs
   * them one by one.
   */
  async #deleteBatch(commands: readonly (readonly string[])[], errors: string[]): Promise<number> {
    if (commands.length === 0) return 0;
    // A file, not stdin: conntrack opens /dev/stdin, which fails on the socket Node gives it.
    const dir = await mkdtemp(path.join(tmpdir(), 'namegate-ct-'));
    const file = path.join(dir, 'commands');
    let r: Awaited<ReturnType<typeof run>>;
    try {
      await writeFile(file, `${commands.map((c) => c.join(' ')).join('\n')}\n`, { mode: 0o600 });
      r = await run([this.#binary, '-R', file], {
        timeoutMs: this.#timeoutMs + commands.length * BATCH_COMMAND_MS,
        maxBytes: 16 * 1024 * 1024,
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    if (r.code === 0) return r.stdout.split('\n').filter((l) => /\bsrc=/.test(l)).length;
    if (
      r.startError === null &&
      !r.timedOut &&
      /invalid option|unrecognized option|unknown/i.test(r.stderr)
    ) {
      let deleted = 0;
      for (const c of commands) deleted += await this.#delete(c.slice(1), errors);
      return deleted;
    }
    const why = r.timedOut ? 'timed out' : (r.startError ?? (r.stderr.trim() || `exit ${r.code}`));
    errors.push(`conntrack -R (${commands.length} deletions): ${why}`);
    return 0;
  }

  /**
   * Delete UDP and TCP port 53 entries of these sources (they just became governed): addresses
   * or CIDRs (canonical). A few sources get a command each; more are matched against one
   * listing of the port 53 entries per family and protocol, and deleted by the fewest prefixes
   * that hold no other listed source (dns-flush.ts): a first start with 1,000 pods is a handful
   * of commands, not two per pod. All commands run in one conntrack process.
   */
  flushDns(sources: readonly string[]): Promise<ConntrackResult> {
    return this.#serial(async () => {
      const errors: string[] = [];
      const ranges: AddrRange[] = [];
      const valid: string[] = [];
      for (const s of sources) {
        const slash = s.indexOf('/');
        const family = ipFamily(slash < 0 ? s : s.slice(0, slash));
        const c = parseCidr(slash < 0 ? `${s}/${family === 6 ? 128 : 32}` : s);
        if (typeof c === 'string') errors.push(`flush DNS of ${s}: ${c}`);
        else {
          ranges.push(cidrRange(c));
          valid.push(s);
        }
      }
      const direct = valid.length <= DIRECT_SOURCES_LIMIT;
      const masks = direct && !valid.some((s) => s.includes('/')) ? true : await this.#masks();
      let commands: string[][];
      if (direct && masks) {
        commands = valid.flatMap((s) =>
          ['udp', 'tcp'].map((p) => [
            '-D',
            '-f',
            ipFamily(s.split('/')[0] ?? s) === 6 ? 'ipv6' : 'ipv4',
            '-s',
            s,
            '-p',
            p,
            '--dport',
            '53',
          ]),
        );
      } else {
        const families = ([4, 6] as const).filter((f) => ranges.some((r) => r.family === f));
        const entries = await this.#listDns(families, errors);
        commands = dnsFlushCommands(
          entries,
          (e) => {
            const a = addressRange(e.source);
            return ranges.some((r) => rangeContains(r, a));
          },
          masks,
        );
      }
      const deleted = await this.#deleteBatch(commands, errors);
      return { deleted, errors };
    });
  }
}
