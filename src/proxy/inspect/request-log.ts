/**
 * One JSON line per judged request inside an inspected connection (event `proxy_request`), next
 * to the connection's `proxy` and `proxy_close` lines (../flow-log.ts), with the field names of
 * src/observe/fields.ts:
 *   {"level":"warn","time":"...","component":"sni-proxy","event":"proxy_request","conn":7,
 *    "src":"10.0.1.2","identity":"group:ci","proto":"h2","authority":"api.github.com",
 *    "method":"POST","path":"/repos/org/x/delete","verdict":"deny","reason":"method_not_allowed",
 *    "policy":"ci/github","rule":0,"http_rule":null,"status":403,"ms":0.4}
 * Client values (authority, path, method) are JSON-escaped and clipped; the query string is
 * never logged (it may carry tokens).
 */
import { F } from '../../observe/fields.ts';
import type { FlowLogMode, LineSink } from '../../observe/line-sink.ts';
import { num, str } from '../flow-log.ts';

export interface RequestRecord {
  readonly conn: number;
  readonly src: string;
  readonly identity: string | null;
  readonly proto: 'h1' | 'h2';
  readonly authority: string;
  readonly method: string | null;
  /** The path as sent, without the query. */
  readonly path: string | null;
  readonly verdict: 'allow' | 'deny' | 'audit';
  readonly reason: string;
  readonly policy: string | null;
  readonly rule: number | null;
  readonly httpRule: number | null;
  /** The status namegate answered with itself (403, 400, 502), or null when upstream answers. */
  readonly status: number | null;
  readonly ms: number;
}

export class RequestLog {
  readonly #sink: LineSink | null;
  readonly #mode: FlowLogMode;
  readonly #component: string;
  readonly #wallNow: () => number;

  constructor(sink: LineSink | null, mode: FlowLogMode, component: string, wallNow: () => number) {
    this.#sink = mode === 'none' ? null : sink;
    this.#mode = mode;
    this.#component = component;
    this.#wallNow = wallNow;
  }

  write(r: RequestRecord): void {
    if (!this.#sink || (this.#mode === 'denied' && r.verdict === 'allow')) return;
    const path = r.path === null ? null : (r.path.split('?')[0] ?? '');
    const line =
      `{"level":"${r.verdict === 'allow' ? 'info' : 'warn'}","time":"${new Date(this.#wallNow()).toISOString()}",` +
      `"component":"${this.#component}","${F.event}":"proxy_request","${F.connection}":${r.conn},` +
      `"${F.sourceIp}":${str(r.src)},"${F.identity}":${str(r.identity)},"${F.protocol}":"${r.proto}",` +
      `"${F.authority}":${str(r.authority)},"${F.method}":${str(r.method)},"${F.path}":${str(path)},` +
      `"${F.verdict}":"${r.verdict}","${F.reason}":${str(r.reason)},"${F.policy}":${str(r.policy)},` +
      `"${F.rule}":${num(r.rule)},"${F.httpRule}":${num(r.httpRule)},"${F.status}":${num(r.status)},` +
      `"${F.durationMs}":${Math.round(r.ms * 1000) / 1000},"msg":"proxy_request"}\n`;
    this.#sink.write(line);
  }
}
