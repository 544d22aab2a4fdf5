/**
 * The agent's flow API, served on its health/metrics listener:
 *
 *   GET  /flows?<filter>&since=&until=&last=&follow=1   NDJSON: flow log lines (DNS, proxy,
 *        kernel, and the source lines that let a reader enrich them), history then live
 *   GET  /dashboard                                      the dashboard page (built at install)
 *   GET  /dashboard/events?<filter>&source=<ip>          Server-Sent Events: `stats` (totals,
 *        series, tops: aggregated here) and `flows` (the newest matching events, at most 50 a
 *        second) every second, so the page costs the same at any decision rate
 *   POST /dashboard/propose  {FlowEvent}                 the policy that would allow that flow
 *
 * Filters are those of filter.ts, as query parameters. Every parameter and body is bounded;
 * a bad one is a 400 with the reason. A client that reads too slowly loses lines (and is told),
 * it never holds the agent up.
 */
import { existsSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorMessage, isNamegateError } from '../core/errors.ts';
import { LIVE_MARK } from './client.ts';
import { type FlowEvent, toFlowEvent } from './event.ts';
import { compileFilter, type FlowFilterSpec, filterFromQuery, isEmptyFilter } from './filter.ts';
import type { FlowHub } from './hub.ts';
import { FlowReader, readFlowFiles } from './reader.ts';
import type { FlowStats } from './stats.ts';

export interface Proposal {
  readonly yaml: string;
  readonly errors: readonly string[];
  readonly warnings: readonly string[];
}

export interface FlowApiOptions {
  readonly hub: FlowHub;
  readonly stats: FlowStats;
  /** Governed sources now (the dashboard's headline). */
  governed(): number;
  /** The policy YAML that would allow this flow. */
  propose?(e: FlowEvent): Proposal;
  /** Flow log files to read history from when memory does not reach back far enough. */
  readonly files?: readonly string[];
  /** Where the built page is (default build/dashboard at the repository root). */
  readonly dashboardDir?: string;
  /** This agent's name in merged views (the node). */
  readonly node?: string;
  readonly now?: () => number;
}

/** Longest history answer (lines); more needs --since windows or the files themselves. */
export const MAX_LAST = 100_000;
/** Bytes a follower's socket may hold unread before lines are dropped for it. */
const SOCKET_BOUND = 8 * 1024 * 1024;
const PROPOSE_BODY = 16 * 1024;
const TABLE_ROWS = 50;

export function defaultDashboardDir(): string {
  return fileURLToPath(new URL('../../build/dashboard', import.meta.url));
}

class BadRequest extends Error {}

/** "5m", "90s", "2h", "1d" or an RFC 3339 time -> wall ms. */
export function parseTime(text: string, now: number): number {
  const rel = /^(\d{1,9})(ms|s|m|h|d)$/.exec(text);
  if (rel) {
    const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[rel[2] as 'ms'];
    return now - Number(rel[1]) * unit;
  }
  const t = Date.parse(text);
  if (!Number.isFinite(t) || text.length > 40)
    throw new BadRequest(`${JSON.stringify(text.slice(0, 40))} is not a time (RFC 3339, or 30s, 5m, 2h, 1d)`);
  return t;
}

function query(req: IncomingMessage): URLSearchParams {
  const url = req.url ?? '/';
  if (url.length > 8192) throw new BadRequest('query too long');
  const at = url.indexOf('?');
  return new URLSearchParams(at >= 0 ? url.slice(at + 1) : '');
}

function filterOf(q: URLSearchParams): {
  spec: FlowFilterSpec;
  predicate: ((e: FlowEvent) => boolean) | null;
} {
  const spec = filterFromQuery(q);
  try {
    return { spec, predicate: isEmptyFilter(spec) ? null : compileFilter(spec) };
  } catch (err) {
    throw new BadRequest(errorMessage(err));
  }
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

const STATIC: Readonly<Record<string, string>> = {
  '/dashboard': 'index.html',
  '/dashboard/': 'index.html',
  '/dashboard/app.js': 'app.js',
  '/dashboard/app.css': 'app.css',
};
const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

export class FlowApi {
  readonly #o: FlowApiOptions;
  readonly #now: () => number;
  readonly #assets = new Map<string, string>();

  constructor(options: FlowApiOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
  }

  /** Handle the request if it is one of ours; false lets the listener go on. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const url = (req.url ?? '/').split('?')[0] ?? '/';
    if (url !== '/flows' && !url.startsWith('/dashboard')) return false;
    try {
      if (url === '/dashboard/propose') {
        if (req.method !== 'POST') send(res, 405, 'text/plain', 'POST a flow event\n');
        else this.#propose(req, res);
        return true;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        send(res, 405, 'text/plain', 'method not allowed\n');
        return true;
      }
      if (url === '/flows') void this.#flows(req, res).catch((err) => this.#fail(res, err));
      else if (url === '/dashboard/events') this.#events(req, res);
      else this.#asset(url, res);
    } catch (err) {
      this.#fail(res, err);
    }
    return true;
  }

  #fail(res: ServerResponse, err: unknown): void {
    const bad = err instanceof BadRequest || isNamegateError(err);
    if (res.headersSent) {
      res.end();
      return;
    }
    send(res, bad ? 400 : 500, 'text/plain', `${errorMessage(err)}\n`);
  }

  #asset(url: string, res: ServerResponse): void {
    const file = STATIC[url];
    if (!file) {
      send(res, 404, 'text/plain', 'not found\n');
      return;
    }
    let body = this.#assets.get(file);
    if (body === undefined) {
      const dir = this.#o.dashboardDir ?? defaultDashboardDir();
      const full = path.join(dir, file);
      if (!existsSync(full)) {
        send(
          res,
          503,
          'text/plain',
          `the dashboard is not built (${full} is missing): run scripts/deps.sh\n`,
        );
        return;
      }
      body = readFileSync(full, 'utf8');
      this.#assets.set(file, body);
    }
    res.writeHead(200, {
      'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
      'cache-control': 'no-store',
      // The page loads nothing from anywhere else.
      'content-security-policy': "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
      'x-content-type-options': 'nosniff',
    });
    res.end(body);
  }

  async #flows(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const q = query(req);
    const { predicate } = filterOf(q);
    const now = this.#now();
    const since = q.get('since') !== null ? parseTime(q.get('since') as string, now) : undefined;
    const until = q.get('until') !== null ? parseTime(q.get('until') as string, now) : undefined;
    const lastText = q.get('last');
    const last = lastText === null ? undefined : Number(lastText);
    if (last !== undefined && (!Number.isInteger(last) || last < 0 || last > MAX_LAST))
      throw new BadRequest(`last must be 0..${MAX_LAST}`);
    const follow = q.get('follow') === '1' || q.get('follow') === 'true';
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    // Source lines first, so every event below can be enriched by the reader.
    const hub = this.#o.hub;
    let lines: string[] = [];
    const wantHistory = since !== undefined || last !== undefined || !follow;
    if (wantHistory) {
      const start = hub.historyStart;
      const files = this.#o.files ?? [];
      if (files.length > 0 && since !== undefined && (start === null || since < start)) {
        // Older than memory: the flow log files (their tail), then memory for the rest.
        const reader = new FlowReader(hub.sources);
        const fromFiles: string[] = [];
        await readFlowFiles(
          files,
          reader,
          (e) => {
            const t = Date.parse(e.time);
            if (t < since || (start !== null && t >= start) || (until !== undefined && t >= until)) return;
            if (!predicate || predicate(e)) fromFiles.push(JSON.stringify(e));
            return fromFiles.length < MAX_LAST;
          },
          { maxBytes: 256 * 1024 * 1024 },
        ).catch(() => {});
        lines = fromFiles;
      }
      const mem = hub.history({
        ...(since !== undefined ? { sinceMs: since } : {}),
        ...(until !== undefined ? { untilMs: until } : {}),
        filter: predicate,
      });
      for (const m of mem) lines.push(m.line);
      if (last !== undefined && lines.length > last) lines = lines.slice(lines.length - last);
    }
    const head = [...hub.sources.entries()].map(([src, info]) =>
      JSON.stringify({ event: 'source', time: new Date(now).toISOString(), src, ...info }),
    );
    res.write(head.length > 0 ? `${head.join('\n')}\n` : '');
    for (let i = 0; i < lines.length; i += 1000) res.write(`${lines.slice(i, i + 1000).join('\n')}\n`);
    if (!follow || (until !== undefined && until <= now)) {
      res.end();
      return;
    }
    // History ends here; what follows is live (readers merge several agents' history by time).
    res.write(`${LIVE_MARK}\n`);
    let lost = 0;
    const unfollow = hub.follow(
      {
        write: (text) => {
          if (res.destroyed) return false;
          if (res.writableLength > SOCKET_BOUND) {
            lost += text.split('\n').length - 1;
            return true;
          }
          if (lost > 0) {
            res.write(`{"event":"lost","count":${lost},"time":"${new Date(this.#now()).toISOString()}"}\n`);
            lost = 0;
          }
          res.write(text);
          return true;
        },
      },
      predicate,
    );
    if (unfollow === null) {
      res.end(`{"event":"error","reason":"too_many_followers"}\n`);
      return;
    }
    const stop = () => unfollow();
    res.on('close', stop);
    if (until !== undefined) setTimeout(() => res.end(), until - now).unref();
  }

  #events(req: IncomingMessage, res: ServerResponse): void {
    const q = query(req);
    const { predicate } = filterOf(q);
    const source = q.get('source') ?? undefined;
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-store',
      connection: 'keep-alive',
    });
    const hub = this.#o.hub;
    const reader = new FlowReader(hub.sources);
    // Only the tail of what arrives is kept: the table shows the newest rows.
    let tail: string[] = [];
    let tailBytes = 0;
    const initial = hub.history({ filter: predicate, last: TABLE_ROWS }).map((m) => m.event);
    const unfollow = hub.follow(
      {
        write: (text) => {
          if (res.destroyed) return false;
          tail.push(text);
          tailBytes += text.length;
          while (tailBytes > 256 * 1024 && tail.length > 1) tailBytes -= (tail.shift() as string).length;
          return true;
        },
      },
      predicate,
    );
    if (unfollow === null) {
      res.end('event: error\ndata: "too many followers"\n\n');
      return;
    }
    const tick = () => {
      const snapshot = this.#o.stats.snapshot({
        governed: this.#o.governed(),
        sources: hub.sources,
        ...(source !== undefined ? { source } : {}),
      });
      const rows: FlowEvent[] = [];
      const text = tail.join('');
      tail = [];
      tailBytes = 0;
      const lines = text.split('\n');
      for (let i = lines.length - 1; i >= 0 && rows.length < TABLE_ROWS; i--) {
        const e = reader.line(lines[i] as string);
        if (e !== null) rows.push(this.#o.node && e.node === null ? { ...e, node: this.#o.node } : e);
      }
      rows.reverse();
      res.write(`event: stats\ndata: ${JSON.stringify(snapshot)}\n\n`);
      if (rows.length > 0) res.write(`event: flows\ndata: ${JSON.stringify(rows)}\n\n`);
    };
    res.write(`retry: 2000\nevent: flows\ndata: ${JSON.stringify(initial)}\n\n`);
    tick();
    const timer = setInterval(tick, 1000);
    timer.unref();
    res.on('close', () => {
      clearInterval(timer);
      unfollow();
    });
  }

  #propose(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > PROPOSE_BODY) {
        send(res, 413, 'text/plain', 'flow event too large\n');
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (res.headersSent) return;
      let e: FlowEvent | null = null;
      try {
        const o = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
        e = toFlowEvent({ ...o, event: o['type'] });
      } catch {
        e = null;
      }
      if (e === null || !this.#o.propose) {
        send(res, 400, 'text/plain', e === null ? 'not a flow event\n' : 'proposals are not available\n');
        return;
      }
      const p = this.#o.propose(this.#o.hub.sources.enrich(e));
      send(res, 200, 'application/json', `${JSON.stringify(p)}\n`);
    });
  }
}
