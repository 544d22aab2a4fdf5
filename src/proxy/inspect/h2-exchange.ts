/**
 * HTTP/2 on both sides of an inspected connection (gRPC included): a server session on the
 * decrypted client connection and one client session on the proxy's own TLS connection to the
 * destination. Each client stream is judged on its header list before anything of it goes
 * upstream; an allowed stream becomes one upstream stream (headers, body, response headers,
 * body and trailers relayed, resets both ways); a refused one gets 403 with the reason.
 * nghttp2 enforces HTTP/2's own framing rules (no connection-specific fields, Content-Length
 * against DATA, header list size); this file checks what the policy needs (request-facts.ts).
 */
import http2 from 'node:http2';
import { Duplex } from 'node:stream';

/** Null: forward the stream; else refuse it with this status and reason. */
export type H2Judge = (rawHeaders: readonly string[]) => { status: number; reason: string } | null;

export interface H2Limits {
  readonly maxHeaderListSize: number;
  readonly maxConcurrentStreams: number;
}

export interface H2Result {
  readonly streams: number;
  readonly error: string | null;
}

const {
  HTTP2_HEADER_STATUS,
  HTTP2_HEADER_CONTENT_TYPE,
  NGHTTP2_CANCEL,
  NGHTTP2_INTERNAL_ERROR,
  NGHTTP2_REFUSED_STREAM,
} = http2.constants;

/** Fields that describe one hop's connection, never forwarded (RFC 9113 8.2.2). */
const HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
]);

export function h2Exchange(
  client: Duplex,
  upstream: Duplex,
  authority: string,
  judge: H2Judge,
  limits: H2Limits,
  idleMs: number,
  done: (r: H2Result) => void,
): void {
  let streams = 0;
  let error: string | null = null;
  let finished = false;
  const settings = {
    maxHeaderListSize: limits.maxHeaderListSize,
    maxConcurrentStreams: limits.maxConcurrentStreams,
    enablePush: false,
  };
  const server = http2.createServer({ settings, maxSessionMemory: 64 });
  const upSession = http2.connect(`https://${authority}`, {
    createConnection: () => jsStream(upstream),
    settings: { enablePush: false, maxHeaderListSize: limits.maxHeaderListSize },
    maxSessionMemory: 64,
  });
  let clientSession: http2.ServerHttp2Session | null = null;

  const finish = () => {
    if (finished) return;
    finished = true;
    clientSession?.destroy();
    upSession.destroy();
    client.destroy();
    upstream.destroy();
    done({ streams, error });
  };
  upSession.on('error', (e: Error) => {
    error ??= `upstream: ${e.message}`;
    finish();
  });
  upSession.on('close', () => {
    if (clientSession && !clientSession.closed) clientSession.close(() => finish());
    else finish();
  });
  upSession.on('goaway', () => clientSession?.close());

  server.on('session', (session: http2.ServerHttp2Session) => {
    clientSession = session;
    session.setTimeout(idleMs, () => {
      error ??= 'idle';
      finish();
    });
    session.on('error', (e: Error) => {
      error ??= `client: ${e.message}`;
      finish();
    });
    session.on('close', () => {
      if (!upSession.closed) upSession.close(() => finish());
      else finish();
    });
  });

  server.on(
    'stream',
    (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, raw: string[]) => {
      streams++;
      stream.on('error', () => {});
      const refusal = judge(raw);
      if (refusal !== null) {
        if (stream.closed) return;
        const head = headers[':method'] === 'HEAD';
        stream.respond(
          { [HTTP2_HEADER_STATUS]: refusal.status, [HTTP2_HEADER_CONTENT_TYPE]: 'text/plain' },
          { endStream: head },
        );
        if (!head) stream.end(`namegate: ${refusal.reason}\n`);
        stream.resume(); // drop what the client still sends of the refused body
        return;
      }
      if (upSession.closed || upSession.destroyed) {
        stream.close(NGHTTP2_REFUSED_STREAM);
        return;
      }
      const out: http2.OutgoingHttpHeaders = {};
      for (const [k, v] of Object.entries(headers)) if (!HOP.has(k) && v !== undefined) out[k] = v;
      let up: http2.ClientHttp2Stream;
      try {
        up = upSession.request(out, { endStream: stream.readableEnded });
      } catch (e) {
        error ??= `upstream: ${(e as Error).message}`;
        stream.close(NGHTTP2_INTERNAL_ERROR);
        return;
      }
      let trailers: http2.IncomingHttpHeaders | null = null;
      up.on('error', () => {});
      up.on('response', (h: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader) => {
        if (stream.closed) return;
        const res: http2.OutgoingHttpHeaders = {};
        for (const [k, v] of Object.entries(h)) if (!HOP.has(k) && v !== undefined) res[k] = v;
        stream.respond(res, { waitForTrailers: true });
        up.pipe(stream);
      });
      up.on('trailers', (t: http2.IncomingHttpHeaders) => {
        trailers = t;
      });
      stream.on('wantTrailers', () => {
        const t: http2.OutgoingHttpHeaders = {};
        for (const [k, v] of Object.entries(trailers ?? {}))
          if (!k.startsWith(':') && v !== undefined) t[k] = v;
        stream.sendTrailers(t);
      });
      if (!stream.readableEnded) stream.pipe(up);
      // Resets travel both ways; a stream that ended cleanly is left alone.
      up.on('close', () => {
        if (!stream.closed && !stream.headersSent) {
          stream.respond({ [HTTP2_HEADER_STATUS]: 502, [HTTP2_HEADER_CONTENT_TYPE]: 'text/plain' });
          stream.end('namegate: upstream_reset\n');
        } else if (!stream.closed && up.rstCode !== undefined && up.rstCode !== 0) stream.close(up.rstCode);
      });
      stream.on('close', () => {
        if (!up.closed)
          up.close(stream.rstCode === undefined || stream.rstCode === 0 ? NGHTTP2_CANCEL : stream.rstCode);
      });
    },
  );
  server.emit('connection', jsStream(client));
}

/**
 * A TLS socket seen as a plain JavaScript stream. Given the TLS socket itself, HTTP/2 would read
 * its native handle and miss bytes already decrypted into the socket's JavaScript buffer (the
 * client's preface arrives with the end of its handshake; the server's SETTINGS right after
 * ours): reading through the stream interface sees every byte.
 */
export function jsStream(socket: Duplex): Duplex {
  const d = Duplex.from({ readable: socket, writable: socket });
  d.on('error', () => socket.destroy());
  socket.on('close', () => d.destroy());
  return d;
}
