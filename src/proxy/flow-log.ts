/**
 * One JSON line per proxied connection when it is decided, and one when it closes, with the
 * field names of src/observe/fields.ts:
 *   {"level":"info","time":"...","component":"sni-proxy","event":"proxy","conn":7,"src":"10.0.1.2",
 *    "identity":"group:payments","proto":"tls","sni":"api.stripe.com","dst":"203.0.113.10","dport":443,
 *    "verdict":"deny","reason":"sni_ip_mismatch","policy":"payments/stripe-only","rule":0,"ms":0.8}
 *   {"level":"info",...,"event":"proxy_close","conn":7,"src":"10.0.1.2","dst":"203.0.113.10","dport":443,
 *    "verdict":"allow","bytes_up":517,"bytes_down":4120,"ms":93.1}
 * Values that came from the client (names, hosts) are JSON-escaped and clipped, never trusted.
 */
import { F } from '../observe/fields.ts';
import type { FlowLogMode, LineSink } from '../observe/line-sink.ts';

export interface DecisionRecord {
  readonly conn: number;
  readonly src: string;
  readonly identity: string | null;
  readonly proto: 'tls' | 'http' | 'connect' | 'tcp' | null;
  /** The name the client claimed (SNI, Host or CONNECT authority), canonical when it parsed. */
  readonly name: string | null;
  readonly dst: string | null;
  readonly dport: number | null;
  readonly verdict: 'allow' | 'deny' | 'audit';
  readonly reason: string;
  readonly policy: string | null;
  readonly rule: number | null;
  readonly ms: number;
  readonly ech?: boolean;
  readonly inspect?: boolean;
  readonly alpn?: readonly string[];
  readonly detail?: string;
}

export interface CloseRecord {
  readonly conn: number;
  readonly src: string;
  readonly dst: string | null;
  readonly dport: number | null;
  readonly verdict: 'allow' | 'deny' | 'audit';
  readonly bytesUp: number;
  readonly bytesDown: number;
  readonly ms: number;
  readonly error?: string;
}

/** Client values in flow lines: clipped, JSON-escaped, never trusted (shared by inspect/request-log.ts). */
export const clip = (s: string) => (s.length > 256 ? `${s.slice(0, 253)}...` : s);
export const str = (v: string | null | undefined) =>
  v === null || v === undefined ? 'null' : JSON.stringify(clip(v));
export const num = (v: number | null) => (v === null ? 'null' : String(v));

/** Who else reads proxy decisions (the agent's flow hub): every decision and its line. */
export interface ProxyFlowObserver {
  readonly sink: LineSink;
  decision(r: DecisionRecord): void;
}

export class ProxyFlowLog {
  readonly #sink: LineSink | null;
  readonly #observer: ProxyFlowObserver | null;
  readonly #mode: FlowLogMode;
  readonly #component: string;
  readonly #wallNow: () => number;
  /** The last timestamp formatted, and its text: lines of the same millisecond share it. */
  #timeMs = -1;
  #timeText = '';

  constructor(
    sink: LineSink | null,
    mode: FlowLogMode,
    component: string,
    wallNow: () => number = Date.now,
    observer: ProxyFlowObserver | null = null,
  ) {
    this.#observer = observer;
    this.#sink = mode === 'none' ? null : sink;
    this.#mode = mode;
    this.#component = component;
    this.#wallNow = wallNow;
  }

  #head(level: string, event: string): string {
    const ms = this.#wallNow();
    if (ms !== this.#timeMs) {
      this.#timeMs = ms;
      this.#timeText = new Date(ms).toISOString();
    }
    return `{"level":"${level}","time":"${this.#timeText}","component":"${this.#component}","${F.event}":"${event}"`;
  }

  decision(r: DecisionRecord): void {
    this.#observer?.decision(r);
    const toFile = this.#sink !== null && !(this.#mode === 'denied' && r.verdict === 'allow');
    if (!toFile && !this.#observer) return;
    const nameField = r.proto === 'tls' ? F.sni : r.proto === 'connect' ? F.authority : F.host;
    let line =
      `${this.#head(r.verdict === 'allow' ? 'info' : 'warn', 'proxy')},"${F.connection}":${r.conn},` +
      `"${F.sourceIp}":${str(r.src)},"${F.identity}":${str(r.identity)},"${F.protocol}":${str(r.proto)},` +
      `"${nameField}":${str(r.name)},"${F.destination}":${str(r.dst)},"${F.port}":${num(r.dport)},` +
      `"${F.verdict}":"${r.verdict}","${F.reason}":${str(r.reason)},"${F.policy}":${str(r.policy)},` +
      `"${F.rule}":${num(r.rule)},"${F.durationMs}":${Math.round(r.ms * 1000) / 1000}`;
    if (r.ech) line += ',"ech":true';
    if (r.inspect) line += ',"inspect":true';
    if (r.alpn && r.alpn.length > 0) line += `,"alpn":${JSON.stringify(r.alpn.slice(0, 8).map(clip))}`;
    if (r.detail) line += `,"detail":${str(r.detail)}`;
    line = `${line},"msg":"proxy"}\n`;
    if (toFile) this.#sink?.write(line);
    this.#observer?.sink.write(line);
  }

  close(r: CloseRecord): void {
    if (!this.#sink || (this.#mode === 'denied' && r.verdict === 'allow')) return;
    let line =
      `${this.#head('info', 'proxy_close')},"${F.connection}":${r.conn},"${F.sourceIp}":${str(r.src)},` +
      `"${F.destination}":${str(r.dst)},"${F.port}":${num(r.dport)},"${F.verdict}":"${r.verdict}",` +
      `"${F.bytesUp}":${r.bytesUp},"${F.bytesDown}":${r.bytesDown},"${F.durationMs}":${Math.round(r.ms * 1000) / 1000}`;
    if (r.error) line += `,"${F.error}":${str(r.error)}`;
    this.#sink.write(`${line},"msg":"proxy_close"}\n`);
  }
}
