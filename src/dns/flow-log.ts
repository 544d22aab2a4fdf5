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
 *
 * Lines are written byte by byte into one reused buffer and become a string only when handed
 * to the sink: building them as JavaScript strings made a few dozen short-lived strings per
 * query (the largest share of the proxy's garbage, and so of its collection pauses). The bytes
 * are exactly what JSON.stringify would give: plain ASCII strings are copied as they are,
 * anything else (quotes, backslashes, control characters, non-ASCII) goes through
 * JSON.stringify.
 */
import { F } from '../observe/fields.ts';
import type { FlowLogMode, LineSink } from '../observe/line-sink.ts';
import { rcodeName, typeName } from './wire.ts';

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
  readonly hold?: 'committed' | 'timeout' | 'failed' | undefined;
  /** The reply did not fit the client's UDP size: it got TC=1 and no records. */
  readonly truncated?: boolean | undefined;
  /**
   * False when `ips` are the answer's addresses but nothing was learned (an Audit source asked
   * for a name its policies do not allow: the answer passed, the kernel was not told).
   */
  readonly learned?: boolean | undefined;
}

/**
 * Who else reads the flow log (the agent's flow hub and statistics): every record and every
 * line, whatever the file's mode, so a follower sees allowed queries when the file keeps only
 * denials.
 */
export interface FlowLogObserver {
  /** Every line, in the chunks the file gets them in. */
  readonly sink: LineSink;
  /** Every record, before its line is written. */
  record(r: FlowRecord): void;
}

const DROP_LOG_SOURCES = 4096;
const FLUSH_EVERY_MS = 100;
/** Room for one line beyond the chunk size; a longer line grows the buffer. */
const LINE_ROOM = 16 * 1024;

const QUOTE = 0x22;
const COMMA = 0x2c;

export class FlowLog {
  readonly #sink: LineSink | null;
  readonly #mode: FlowLogMode;
  readonly #wallNow: () => number;
  readonly #drops = new Map<string, { at: number; count: number }>();
  readonly #bufferBytes: number;
  #buf: Buffer;
  #len = 0;
  #timer: NodeJS.Timeout | null = null;
  #isoAt = Number.NaN;
  #iso = '';
  #minuteAt = Number.NaN;
  #minuteText = '';

  readonly #observer: FlowLogObserver | null;
  /** The file's own log when an observer wants lines the file's mode leaves out. */
  readonly #file: FlowLog | null;

  constructor(
    sink: LineSink | null,
    mode: FlowLogMode,
    wallNow: () => number = Date.now,
    bufferBytes = 0,
    observer: FlowLogObserver | null = null,
  ) {
    this.#observer = observer;
    const file = mode === 'none' ? null : sink;
    // With an observer this log writes every line: to the file and the observer at once when
    // the file takes every line too, else to the observer, and the file gets a log of its own
    // for its mode (its lines are serialized twice; they are the denied ones).
    this.#file = observer && file && mode !== 'all' ? new FlowLog(file, mode, wallNow, bufferBytes) : null;
    if (observer) {
      sink = file && mode === 'all' ? teeSink(file, observer.sink) : observer.sink;
      mode = 'all';
    }
    this.#sink = mode === 'none' ? null : sink;
    this.#mode = mode;
    this.#wallNow = wallNow;
    this.#bufferBytes = bufferBytes;
    this.#buf = Buffer.allocUnsafe(this.#sink ? Math.max(0, bufferBytes) + LINE_ROOM : 0);
  }

  /** A line is complete in the buffer: hand it on now, or when the chunk is full or old enough. */
  #lineDone(): void {
    if (this.#bufferBytes <= 0 || this.#len >= this.#bufferBytes) this.flush();
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
    if (this.#len === 0) return;
    const chunk = this.#buf.toString('utf8', 0, this.#len);
    this.#len = 0;
    this.#sink?.write(chunk);
    this.#file?.flush();
  }

  /** Make room for `bytes` more: flush what is buffered, grow for a line longer than the room. */
  #reserve(bytes: number): void {
    if (this.#len + bytes <= this.#buf.length) return;
    if (this.#bufferBytes > 0 && this.#len > 0) this.flush();
    if (this.#len + bytes <= this.#buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.#len + bytes, 2 * this.#buf.length));
    this.#buf.copy(grown, 0, 0, this.#len);
    this.#buf = grown;
  }

  /** Append text known to be ASCII (field names, fixed values, numbers, the time). */
  #ascii(s: string): void {
    const buf = this.#buf;
    let at = this.#len;
    for (let i = 0; i < s.length; i++) buf[at++] = s.charCodeAt(i);
    this.#len = at;
  }

  /** Append `s` as a JSON string, byte for byte what JSON.stringify(s) gives. */
  #string(s: string): void {
    const buf = this.#buf;
    let at = this.#len;
    buf[at++] = QUOTE;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x20 || c === QUOTE || c === 0x5c || c > 0x7e) {
        this.#len += buf.write(JSON.stringify(s), this.#len, 'utf8');
        return;
      }
      buf[at++] = c;
    }
    buf[at++] = QUOTE;
    this.#len = at;
  }

  #nullable(s: string | null): void {
    if (s === null) this.#ascii('null');
    else this.#string(s);
  }

  /** The wall time as ISO text, formatted once per millisecond. */
  #time(): string {
    const now = this.#wallNow();
    if (now !== this.#isoAt) {
      this.#isoAt = now;
      this.#iso = this.#format(now);
    }
    return this.#iso;
  }

  /**
   * new Date(now).toISOString(), with the date, hour and minute ("2026-01-01T00:00:") formatted
   * once a minute and the seconds and milliseconds by arithmetic: toISOString once a
   * millisecond cost about as much as the rest of the line.
   */
  #format(now: number): string {
    const minute = Math.floor(now / 60_000);
    if (minute !== this.#minuteAt || !Number.isSafeInteger(now)) {
      const iso = new Date(now).toISOString();
      // Only the usual "YYYY-MM-DDTHH:MM:SS.mmmZ" form is split; other years (before 0 or
      // after 9999) keep toISOString's own text.
      if (iso.length !== 24 || !Number.isSafeInteger(now)) return iso;
      this.#minuteAt = minute;
      this.#minuteText = iso.slice(0, 17);
    }
    const ms = now - minute * 60_000;
    const sec = Math.floor(ms / 1000);
    const milli = ms - sec * 1000;
    return `${this.#minuteText}${sec < 10 ? '0' : ''}${sec}.${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
  }

  record(r: FlowRecord): void {
    this.#observer?.record(r);
    this.#file?.record(r);
    if (!this.#sink) return;
    if (this.#mode === 'denied' && r.verdict !== 'deny' && r.verdict !== 'audit' && r.verdict !== 'refuse')
      return;
    // An upper bound of the line's bytes: fixed text, and 6 bytes per character of the strings
    // (a \u00XX escape is the longest form), so no write below can run past the buffer.
    let bound = 512 + 6 * (r.src.length + r.reason.length);
    if (r.identity !== null) bound += 6 * r.identity.length;
    if (r.qname !== null) bound += 6 * r.qname.length;
    if (r.policy !== null) bound += 6 * r.policy.length;
    for (let i = 0; i < r.ips.length; i++) bound += 8 + 6 * (r.ips[i] as string).length;
    this.#reserve(bound);
    this.#ascii(r.verdict === 'error' ? '{"level":"warn","time":"' : '{"level":"info","time":"');
    this.#ascii(this.#time());
    this.#ascii(PART_SRC);
    this.#string(r.src);
    this.#ascii(PART_IDENTITY);
    this.#nullable(r.identity);
    this.#ascii(PART_NAME);
    this.#nullable(r.qname);
    this.#ascii(PART_QTYPE);
    if (r.qtype === null) this.#ascii('null');
    else this.#string(typeName(r.qtype));
    this.#ascii(PART_VERDICT);
    this.#ascii(r.verdict);
    this.#ascii(PART_REASON);
    this.#string(r.reason);
    this.#ascii(PART_POLICY);
    this.#nullable(r.policy);
    this.#ascii(PART_RULE);
    this.#ascii(r.rule === null ? 'null' : String(r.rule));
    this.#ascii(PART_IPS);
    for (let i = 0; i < r.ips.length; i++) {
      if (i > 0) this.#buf[this.#len++] = COMMA;
      this.#string(r.ips[i] as string);
    }
    this.#ascii(PART_TTL);
    this.#ascii(r.ttl === null ? 'null' : String(r.ttl));
    this.#ascii(PART_RCODE);
    if (r.rcode === null) this.#ascii('null');
    else this.#string(rcodeName(r.rcode));
    this.#ascii(PART_MS);
    this.#ascii(String(Math.round(r.ms * 1000) / 1000));
    this.#ascii(r.transport === 'udp' ? ',"transport":"udp"' : ',"transport":"tcp"');
    if (r.hold) {
      this.#ascii(',"hold":"');
      this.#ascii(r.hold);
      this.#buf[this.#len++] = QUOTE;
    }
    if (r.truncated) this.#ascii(',"truncated":true');
    if (r.learned === false) this.#ascii(',"learned":false');
    this.#ascii(',"msg":"dns"}\n');
    this.#lineDone();
  }

  /** Count a dropped message; logs at most one summary line per source per second. */
  dropped(src: string, reason: string, now: number, transport: 'udp' | 'tcp'): void {
    this.#file?.dropped(src, reason, now, transport);
    if (!this.#sink) return;
    let d = this.#drops.get(src);
    if (!d) {
      if (this.#drops.size >= DROP_LOG_SOURCES) this.#drops.clear();
      d = { at: Number.NEGATIVE_INFINITY, count: 0 };
      this.#drops.set(src, d);
    }
    d.count++;
    if (now - d.at < 1000) return;
    const line =
      `{"level":"warn","time":"${this.#time()}","component":"dns",` +
      `"${F.event}":"dns","${F.sourceIp}":${JSON.stringify(src)},"${F.verdict}":"drop","${F.reason}":${JSON.stringify(reason)},` +
      `"dropped":${d.count},"transport":"${transport}","msg":"dns"}\n`;
    this.#reserve(3 * line.length);
    this.#len += this.#buf.write(line, this.#len, 'utf8');
    this.#lineDone();
    d.at = now;
    d.count = 0;
  }
}

// The fixed text between the fields, in the order every line has them.
const PART_SRC = `","component":"dns","${F.event}":"dns","${F.sourceIp}":`;
const PART_IDENTITY = `,"${F.identity}":`;
const PART_NAME = `,"${F.name}":`;
const PART_QTYPE = `,"${F.qtype}":`;
const PART_VERDICT = `,"${F.verdict}":"`;
const PART_REASON = `","${F.reason}":`;
const PART_POLICY = `,"${F.policy}":`;
const PART_RULE = `,"${F.rule}":`;
const PART_IPS = `,"${F.learned}":[`;
const PART_TTL = `],"${F.ttl}":`;
const PART_RCODE = `,"${F.rcode}":`;
const PART_MS = `,"${F.durationMs}":`;

/** One sink that writes to two. */
function teeSink(a: LineSink, b: LineSink): LineSink {
  return {
    write(chunk: string) {
      a.write(chunk);
      b.write(chunk);
    },
  };
}
