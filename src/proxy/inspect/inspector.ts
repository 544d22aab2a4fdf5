/**
 * TLS inspection of one connection the SNI proxy has already allowed (name allowed, original
 * destination learned for it) under a rule with `verify: Inspect`. Per connection:
 *   1. at the same time: the proxy's own TLS connection to the original destination (the
 *      pinned, learned address; never a name resolved here) with the client's SNI and the
 *      HTTP protocols of the client's ALPN list, verified against the configured roots; and
 *      the leaf certificate for the SNI (cached, or minted from the inspection CA);
 *   2. the client's handshake is finished with that leaf, offering exactly the protocol the
 *      destination chose (ALPN mirrored: both sides speak HTTP/1.1, or both HTTP/2);
 *   3. every request is judged (request-facts.ts for the edge checks, then the policy's
 *      decideRequest): HTTP/1.1 in h1-exchange.ts, HTTP/2 in h2-exchange.ts.
 * A destination whose certificate does not verify, or that cannot be reached, gets no bytes of
 * the client's: the client's requests are answered 502 with the reason. A client that offers
 * ALPN without HTTP (nothing here could judge it) is refused before any upstream connection.
 */
import http2 from 'node:http2';
import type net from 'node:net';
import tls from 'node:tls';
import type { Clock } from '../../core/clock.ts';
import { literalLookup } from '../../core/literal-lookup.ts';
import type { Logger } from '../../observe/log.ts';
import type { RequestDecision } from '../../policy/decide-request.ts';
import type { HttpRequestFacts } from '../../policy/http-rule.ts';
import { type HeadLimits, parseRequestHead } from '../http-head.ts';
import { framingStatus, h1Exchange, plainResponse } from './h1-exchange.ts';
import { h2Exchange, jsStream } from './h2-exchange.ts';
import type { LeafMinter } from './leaf-minter.ts';
import type { InspectMetrics } from './metrics.ts';
import { type FactsResult, factsFromH2, factsFromHead } from './request-facts.ts';
import type { RequestLog } from './request-log.ts';

/** One allowed connection handed over for inspection. */
export interface InspectedConnection {
  readonly id: number;
  readonly src: string;
  readonly identity: string | null;
  readonly sni: string & { readonly __brand: 'CanonicalName' };
  readonly dst: { readonly address: string; readonly port: number };
  /** ALPN protocols the client offered, in its order. */
  readonly alpn: readonly string[];
  /** The policy's answer for one request (decideRequest over the connection's rules). */
  readonly judge: (facts: HttpRequestFacts) => RequestDecision;
}

export interface InspectionEnd {
  readonly protocol: 'h1' | 'h2' | null;
  readonly bytesUp: number;
  readonly bytesDown: number;
  readonly requests: number;
  readonly error: string | null;
}

export interface InspectorOptions {
  readonly minter: LeafMinter;
  /** PEM roots the destination's certificate must chain to; default: Node's bundled roots. */
  readonly upstreamCa?: string | readonly string[];
  readonly connectTimeoutMs: number;
  readonly handshakeTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly headLimits: HeadLimits;
  readonly maxConcurrentStreams: number;
  readonly requestLog: RequestLog;
  readonly metrics: InspectMetrics;
  readonly clock: Clock;
  readonly log: Logger;
  /** How the upstream TLS connection is made (tests); default tls.connect to the literal address. */
  readonly dial?: (o: tls.ConnectionOptions) => tls.TLSSocket;
}

const HTTP_ALPN = new Set(['h2', 'http/1.1']);
/** Refusals at the edge name no rule. */
const NOBODY = { policy: null, rule: null, httpRule: null } as const;
/** Verification failures of the destination's certificate (as opposed to network failures). */
const CERT_CODES =
  /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ALTNAME|HOSTNAME|SIGNATURE|CHAIN|EXPIRED|NOT_YET_VALID/;

type Upstream =
  | { readonly ok: true; readonly socket: tls.TLSSocket; readonly protocol: 'h1' | 'h2' }
  | { readonly ok: false; readonly reason: string; readonly detail: string };

export class Inspector {
  readonly #o: InspectorOptions;

  constructor(o: InspectorOptions) {
    this.#o = o;
  }

  /**
   * Take over an accepted client socket whose first bytes (the ClientHello and anything after
   * it) are `held`. `done` runs once, after both sides are closed.
   */
  handle(socket: net.Socket, held: Buffer, c: InspectedConnection, done: (end: InspectionEnd) => void): void {
    const offered = c.alpn.filter((p) => HTTP_ALPN.has(p));
    if (c.alpn.length > 0 && offered.length === 0) {
      this.#log(c, 'h1', null, null, 'deny', 'alpn_not_http', 0, this.#o.clock.now());
      socket.end(Buffer.from([21, 3, 3, 0, 2, 2, 120])); // fatal no_application_protocol
      socket.once('close', () =>
        done({ protocol: null, bytesUp: 0, bytesDown: 0, requests: 0, error: 'alpn_not_http' }),
      );
      return;
    }
    void this.#run(socket, held, c, offered, done).catch((err: unknown) => {
      socket.destroy();
      this.#o.log.error({ event: 'proxy', conn: c.id, err: (err as Error).message }, 'inspection failed');
    });
  }

  async #run(
    socket: net.Socket,
    held: Buffer,
    c: InspectedConnection,
    offered: readonly string[],
    done: (end: InspectionEnd) => void,
  ): Promise<void> {
    const cached = this.#o.minter.cached(c.sni);
    const [upstream, context] = await Promise.all([
      this.#connect(c, offered),
      cached ?? this.#o.minter.contextFor(c.sni),
    ]);
    this.#o.metrics.leaves.inc({ result: cached ? 'hit' : 'minted' });
    if (socket.destroyed) {
      if (upstream.ok) upstream.socket.destroy();
      return;
    }
    // The client gets the protocol the destination chose; without a destination, what it prefers.
    const protocol: 'h1' | 'h2' = upstream.ok ? upstream.protocol : offered[0] === 'h2' ? 'h2' : 'h1';
    const alpn = c.alpn.length === 0 ? undefined : [protocol === 'h2' ? 'h2' : 'http/1.1'];
    socket.unshift(held); // TLSSocket reads data already buffered on the socket first
    const client = new tls.TLSSocket(socket, {
      isServer: true,
      secureContext: context,
      ...(alpn ? { ALPNProtocols: alpn } : {}),
    });
    client.on('error', () => {});
    // No waiting for the handshake before handing over: HTTP/2 reads the TLS handle natively, and
    // decrypted bytes buffered in JavaScript meanwhile would never reach it.
    const timer = setTimeout(() => client.destroy(), this.#o.handshakeTimeoutMs);
    client.once('secure', () => clearTimeout(timer));
    client.once('close', () => clearTimeout(timer));
    if (!upstream.ok) return this.#fail(client, c, protocol, upstream, done);
    this.#o.metrics.connections.inc({ protocol });
    if (protocol === 'h2') {
      h2Exchange(
        client,
        upstream.socket,
        c.sni,
        (raw) => this.#judge(c, 'h2', factsFromH2(raw, { sni: c.sni, port: c.dst.port })),
        {
          maxHeaderListSize: this.#o.headLimits.maxHeadBytes,
          maxConcurrentStreams: this.#o.maxConcurrentStreams,
        },
        this.#o.idleTimeoutMs,
        (r) =>
          done({
            protocol,
            bytesUp: upstream.socket.bytesWritten,
            bytesDown: socket.bytesWritten,
            requests: r.streams,
            error: r.error,
          }),
      );
      return;
    }
    let requests = 0;
    const judge = Object.assign(
      (head: Parameters<typeof factsFromHead>[0]) => {
        requests++;
        return this.#judge(c, 'h1', factsFromHead(head, { sni: c.sni, port: c.dst.port }));
      },
      {
        framing: (reason: string) => {
          this.#count('deny', reason);
          this.#log(c, 'h1', null, null, 'deny', reason, framingStatus(reason), this.#o.clock.now());
        },
      },
    );
    h1Exchange(client, upstream.socket, judge, this.#o.headLimits, this.#o.idleTimeoutMs, (r) =>
      done({ protocol, bytesUp: r.up, bytesDown: r.down, requests, error: r.error }),
    );
  }

  /** The edge facts, then the policy; logs and counts; null when the request may go upstream. */
  #judge(
    c: InspectedConnection,
    proto: 'h1' | 'h2',
    f: FactsResult,
  ): { status: number; reason: string } | null {
    const t0 = this.#o.clock.now();
    if (!f.ok) {
      const status = f.reason === 'domain_fronting' || f.reason === 'host_port_mismatch' ? 403 : 400;
      this.#count('deny', f.reason);
      this.#log(c, proto, f.method, f.rawPath, 'deny', f.reason, status, t0);
      return { status, reason: f.reason };
    }
    const d = c.judge(f.facts);
    this.#count(d.verdict, d.reason);
    const refused = d.verdict === 'deny';
    this.#log(c, proto, f.facts.method, f.rawPath, d.verdict, d.reason, refused ? 403 : null, t0, d);
    return refused ? { status: 403, reason: d.reason } : null;
  }

  #count(verdict: string, reason: string): void {
    this.#o.metrics.requests.inc({ verdict, reason });
  }

  #log(
    c: InspectedConnection,
    proto: 'h1' | 'h2',
    method: string | null,
    path: string | null,
    verdict: 'allow' | 'deny' | 'audit',
    reason: string,
    status: number | null,
    t0: number,
    by: { policy: string | null; rule: number | null; httpRule: number | null } = NOBODY,
  ): void {
    this.#o.requestLog.write({
      conn: c.id,
      src: c.src,
      identity: c.identity,
      proto,
      authority: c.sni,
      method,
      path,
      verdict,
      reason,
      policy: by.policy,
      rule: by.rule,
      httpRule: by.httpRule,
      status,
      ms: this.#o.clock.now() - t0,
    });
  }

  /** The proxy's TLS connection to the pinned destination, verified; never throws. */
  #connect(c: InspectedConnection, offered: readonly string[]): Promise<Upstream> {
    const o = this.#o;
    return new Promise<Upstream>((resolve) => {
      const options: tls.ConnectionOptions = {
        host: c.dst.address,
        port: c.dst.port,
        servername: c.sni,
        lookup: literalLookup as never,
        minVersion: 'TLSv1.2',
        rejectUnauthorized: true,
        ...(offered.length > 0 ? { ALPNProtocols: [...offered] } : {}),
        ...(o.upstreamCa !== undefined ? { ca: o.upstreamCa as string | string[] } : {}),
      };
      const s = o.dial ? o.dial(options) : tls.connect(options);
      s.setNoDelay(true);
      let settled = false;
      const settle = (u: Upstream) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (!u.ok) {
          s.destroy();
          o.metrics.upstreamTls.inc({
            kind:
              u.reason === 'upstream_cert_invalid'
                ? 'cert'
                : u.reason === 'upstream_timeout'
                  ? 'timeout'
                  : 'connect',
          });
        }
        resolve(u);
      };
      const timer = setTimeout(
        () => settle({ ok: false, reason: 'upstream_timeout', detail: 'no TLS connection in time' }),
        o.connectTimeoutMs,
      );
      s.once('secureConnect', () => {
        const alpn = s.alpnProtocol;
        settle({ ok: true, socket: s, protocol: alpn === 'h2' ? 'h2' : 'h1' });
      });
      s.once('error', (err: NodeJS.ErrnoException) => {
        const code = err.code ?? '';
        const cert = CERT_CODES.test(code);
        settle({
          ok: false,
          reason: cert ? 'upstream_cert_invalid' : 'upstream_unreachable',
          detail: code || err.message,
        });
      });
    });
  }

  /** The destination failed: answer the client's requests 502 with the reason, then close. */
  #fail(
    client: tls.TLSSocket,
    c: InspectedConnection,
    protocol: 'h1' | 'h2',
    why: { reason: string; detail: string },
    done: (end: InspectionEnd) => void,
  ): void {
    this.#o.metrics.connections.inc({ protocol: 'failed' });
    const reason = `${why.reason} (${why.detail})`;
    const t0 = this.#o.clock.now();
    const end = () =>
      done({ protocol, bytesUp: 0, bytesDown: client.bytesWritten, requests: 1, error: reason });
    client.once('close', end);
    client.setTimeout(this.#o.handshakeTimeoutMs, () => client.destroy());
    if (protocol === 'h2') {
      answer502H2(client, reason, (method, path) =>
        this.#log(c, 'h2', method, path, 'deny', why.reason, 502, t0),
      );
      return;
    }
    let buf = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const r = parseRequestHead(buf, this.#o.headLimits);
      if (r.kind === 'more') return;
      client.off('data', onData);
      const head = r.kind === 'head' ? r.head : null;
      this.#log(c, 'h1', head?.method ?? null, head?.target ?? null, 'deny', why.reason, 502, t0);
      client.end(plainResponse(502, reason));
    };
    client.on('data', onData);
  }
}

/** HTTP/2 client whose destination failed: every stream gets 502, then the session closes. */
function answer502H2(
  client: tls.TLSSocket,
  reason: string,
  log: (method: string | null, path: string | null) => void,
): void {
  const server = http2.createServer();
  server.on('session', (session) => session.on('error', () => {}));
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    log((headers[':method'] as string | undefined) ?? null, (headers[':path'] as string | undefined) ?? null);
    stream.respond({ ':status': 502, 'content-type': 'text/plain' });
    stream.end(`namegate: ${reason}\n`);
    stream.session?.close();
  });
  server.emit('connection', jsStream(client));
}
