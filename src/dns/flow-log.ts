/**
 * One JSON line per query, with the stable field names of src/observe/fields.ts:
 *   {"level":"info","time":"2026-01-01T00:00:00.000Z","component":"dns","event":"dns",
 *    "src":"10.0.1.5","identity":"group:ci","qname":"api.example.com","qtype":"A",
 *    "verdict":"allow","reason":"fqdn_rule","policy":"ci/egress","rule":0,
 *    "ips":["192.0.2.10"],"ttl":300,"rcode":"NOERROR","ms":0.41,"transport":"udp","msg":"dns"}
 * The line has the shape of the agent's pino lines but is written by hand: its fields are
 * fixed and carry no secrets, and a generic logger (with redaction) cost more per query than
 * the rest of the proxy. Messages dropped without a reply (rate limit) are summarized
 * instead: at most one line per source per second with the number dropped, so a flood cannot
 * turn into a flood of logs.
 *
 * With a buffer size, lines are gathered and handed to the sink in chunks (and at least every
 * 100 ms): one write per chunk instead of one per query. flush() empties the buffer (shutdown).
 */
import { F } from '../observe/fields.ts';
import { rcodeName, typeName } from './wire.ts';

/** Where lines go: a pino destination (SonicBoom), a file stream, or a test's array. */
export interface LineSink {
  write(line: string): unknown;
}

export type FlowLogMode = 'all' | 'denied' | 'none';

/** What the proxy did with a query. */
export type DnsVerdict = 'allow' | 'deny' | 'audit' | 'forward' | 'refuse' | 'error';

export interface FlowRecord {
  readonly src: string;
  readonly identity: string | null;
  readonly qname: string | null;
  readonly qtype: number | null;
  readonly verdict: DnsVerdict;
  readonly reason: string;
  readonly policy: string | null;
  readonly rule: number | null;
  readonly ips: readonly string[];
  readonly ttl: number | null;
  readonly rcode: number | null;
  readonly ms: number;
  readonly transport: 'udp' | 'tcp';
  /** Only when elements were committed: committed, timeout (released anyway) or failed. */
  readonly hold?: 'committed' | 'timeout' | 'failed';
  /** The reply did not fit the client's UDP size: it got TC=1 and no records. */
  readonly truncated?: boolean;
}

const DROP_LOG_SOURCES = 4096;
const str = (v: string | null): string => (v === null ? 'null' : JSON.stringify(v));
const num = (v: number | null): string => (v === null ? 'null' : String(v));

const FLUSH_EVERY_MS = 100;

export class FlowLog {
  readonly #sink: LineSink | null;
  readonly #mode: FlowLogMode;
  readonly #wallNow: () => number;
  readonly #drops = new Map<string, { at: number; count: number }>();
  readonly #bufferBytes: number;
  #buffer = '';
  #timer: NodeJS.Timeout | null = null;
  #isoAt = Number.NaN;
  #iso = '';

  constructor(sink: LineSink | null, mode: FlowLogMode, wallNow: () => number = Date.now, bufferBytes = 0) {
    this.#sink = mode === 'none' ? null : sink;
    this.#mode = mode;
    this.#wallNow = wallNow;
    this.#bufferBytes = bufferBytes;
  }

  #emit(line: string): void {
    if (this.#bufferBytes <= 0) {
      this.#sink?.write(line);
      return;
    }
    this.#buffer += line;
    if (this.#buffer.length >= this.#bufferBytes) this.flush();
    else if (!this.#timer) {
      this.#timer = setTimeout(() => this.flush(), FLUSH_EVERY_MS);
      this.#timer.unref();
    }
  }

  /** Hand buffered lines to the sink now. */
  flush(): void {
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    if (this.#buffer === '') return;
    const chunk = this.#buffer;
    this.#buffer = '';
    this.#sink?.write(chunk);
  }

  /** The wall time as ISO text, formatted once per millisecond. */
  #time(): string {
    const now = this.#wallNow();
    if (now !== this.#isoAt) {
      this.#isoAt = now;
      this.#iso = new Date(now).toISOString();
    }
    return this.#iso;
  }

  record(r: FlowRecord): void {
    if (!this.#sink) return;
    if (this.#mode === 'denied' && r.verdict !== 'deny' && r.verdict !== 'audit' && r.verdict !== 'refuse')
      return;
    let ips = '[';
    for (let i = 0; i < r.ips.length; i++) ips += (i > 0 ? ',' : '') + JSON.stringify(r.ips[i]);
    ips += ']';
    let line =
      `{"level":"${r.verdict === 'error' ? 'warn' : 'info'}","time":"${this.#time()}",` +
      `"component":"dns","${F.event}":"dns","${F.sourceIp}":${str(r.src)},"${F.identity}":${str(r.identity)},` +
      `"${F.name}":${str(r.qname)},"${F.qtype}":${r.qtype === null ? 'null' : `"${typeName(r.qtype)}"`},` +
      `"${F.verdict}":"${r.verdict}","${F.reason}":${str(r.reason)},"${F.policy}":${str(r.policy)},` +
      `"${F.rule}":${num(r.rule)},"${F.learned}":${ips},"${F.ttl}":${num(r.ttl)},` +
      `"${F.rcode}":${r.rcode === null ? 'null' : `"${rcodeName(r.rcode)}"`},` +
      `"${F.durationMs}":${Math.round(r.ms * 1000) / 1000},"transport":"${r.transport}"`;
    if (r.hold) line += `,"hold":"${r.hold}"`;
    if (r.truncated) line += ',"truncated":true';
    this.#emit(`${line},"msg":"dns"}\n`);
  }

  /** Count a dropped message; logs at most one summary line per source per second. */
  dropped(src: string, reason: string, now: number, transport: 'udp' | 'tcp'): void {
    if (!this.#sink) return;
    let d = this.#drops.get(src);
    if (!d) {
      if (this.#drops.size >= DROP_LOG_SOURCES) this.#drops.clear();
      d = { at: Number.NEGATIVE_INFINITY, count: 0 };
      this.#drops.set(src, d);
    }
    d.count++;
    if (now - d.at < 1000) return;
    this.#emit(
      `{"level":"warn","time":"${this.#time()}","component":"dns",` +
        `"${F.event}":"dns","${F.sourceIp}":${str(src)},"${F.verdict}":"drop","${F.reason}":${str(reason)},` +
        `"dropped":${d.count},"transport":"${transport}","msg":"dns"}\n`,
    );
    d.at = now;
    d.count = 0;
  }
}
