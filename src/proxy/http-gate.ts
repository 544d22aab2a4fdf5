/**
 * The client-to-server direction of a plain-HTTP connection on a verify port, checked request by
 * request. Only checking the first request would let a keep-alive client send its second request
 * with another Host to the same (shared) IP; so every request head is held until it passes the
 * same check as the first, and bodies are framed (Content-Length, or chunked with bounded size
 * lines and trailers) to find where the next head starts. After a request that asks for an
 * Upgrade (websocket), the rest is passed as a tunnel: there is no HTTP left to read, the same
 * residual as domain fronting inside TLS (SNI-10), and the Host was checked first.
 *
 * A violation fails the stream with a GateError (the relay then closes both sides); bytes of a
 * refused request never reach the server.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { type HeadLimits, parseRequestHead, type RequestHead } from './http-head.ts';

export class GateError extends Error {
  readonly reason: string;
  readonly head: RequestHead | null;
  constructor(reason: string, detail: string, head: RequestHead | null = null) {
    super(`${reason}: ${detail}`);
    this.name = 'GateError';
    this.reason = reason;
    this.head = head;
  }
}

/** Null when the request may pass, else the reason it may not. */
export type HeadCheck = (head: RequestHead) => string | null;

const MAX_CHUNK_LINE = 1024;
const MAX_TRAILER_BYTES = 16_384;

type State =
  | { kind: 'head' }
  | { kind: 'length'; left: number; next: 'head' | 'tunnel' }
  | { kind: 'size'; next: 'head' | 'tunnel' }
  | { kind: 'data'; left: number; next: 'head' | 'tunnel' }
  | { kind: 'data-end'; next: 'head' | 'tunnel' }
  | { kind: 'trailers'; bytes: number; next: 'head' | 'tunnel' }
  | { kind: 'tunnel' }
  /** single mode, after the one request: further bytes are dropped, never forwarded. */
  | { kind: 'drop' };

export class HttpGate extends Transform {
  readonly #check: HeadCheck;
  readonly #limits: HeadLimits;
  readonly #onRequest: ((head: RequestHead) => void) | undefined;
  readonly #single: boolean;
  #state: State = { kind: 'head' };
  #pending: Buffer = Buffer.alloc(0);
  /** Requests that passed. */
  requests = 0;
  /** Bytes dropped after the one request (single mode). */
  dropped = 0;

  /**
   * `single`: one request per connection (the CONNECT proxy's absolute-form requests, sent
   * upstream with `Connection: close`): bytes after its body are dropped.
   */
  constructor(
    check: HeadCheck,
    limits: HeadLimits,
    onRequest?: (head: RequestHead) => void,
    options: { single?: boolean } = {},
  ) {
    super();
    this.#check = check;
    this.#limits = limits;
    this.#onRequest = onRequest;
    this.#single = options.single ?? false;
  }

  /** The caller sent this (already checked) head itself: continue with its body. */
  afterHead(head: RequestHead): void {
    this.requests++;
    this.#state = this.#bodyState(head);
  }

  #bodyState(head: RequestHead): State {
    const next = head.upgrade !== null ? 'tunnel' : 'head';
    const b = head.body;
    if (b.kind === 'length') return { kind: 'length', left: b.length, next };
    if (b.kind === 'chunked') return { kind: 'size', next };
    return this.#after(next);
  }

  #after(next: 'head' | 'tunnel'): State {
    if (next === 'tunnel') return { kind: 'tunnel' };
    return this.#single && this.requests > 0 ? { kind: 'drop' } : { kind: 'head' };
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.#pending = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
      this.#run();
      cb();
    } catch (err) {
      cb(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** Consume #pending as far as the state machine can. */
  #run(): void {
    for (;;) {
      const buf = this.#pending;
      if (buf.length === 0) return;
      const s = this.#state;
      switch (s.kind) {
        case 'tunnel':
          this.#emit(buf.length);
          return;
        case 'drop':
          this.dropped += buf.length;
          this.#pending = Buffer.alloc(0);
          return;
        case 'head': {
          const r = parseRequestHead(buf, this.#limits);
          if (r.kind === 'more') return;
          if (r.kind === 'error') throw new GateError(r.reason, r.detail);
          const head = r.head;
          const why = this.#check(head);
          if (why !== null) throw new GateError(why, 'request refused', head);
          this.requests++;
          this.#onRequest?.(head);
          this.#emit(head.headBytes);
          this.#state = this.#bodyState(head);
          break;
        }
        case 'length': {
          const n = Math.min(s.left, buf.length);
          this.#emit(n);
          s.left -= n;
          if (s.left === 0) this.#state = this.#after(s.next);
          break;
        }
        case 'size': {
          const eol = buf.indexOf('\r\n');
          if (eol < 0) {
            if (buf.length > MAX_CHUNK_LINE) throw new GateError('bad_chunk', 'chunk size line too long');
            if (buf.includes(0x0a)) throw new GateError('bare_lf', 'chunk size line ends in LF');
            return;
          }
          const line = buf.toString('latin1', 0, eol);
          const m = /^([0-9a-fA-F]{1,12})(?:[ \t]*;[\x21-\x7e \t]*)?$/.exec(line);
          if (!m) throw new GateError('bad_chunk', 'bad chunk size line');
          const size = Number.parseInt(m[1]!, 16);
          this.#emit(eol + 2);
          this.#state =
            size === 0
              ? { kind: 'trailers', bytes: 0, next: s.next }
              : { kind: 'data', left: size, next: s.next };
          break;
        }
        case 'data': {
          const n = Math.min(s.left, buf.length);
          this.#emit(n);
          s.left -= n;
          if (s.left === 0) this.#state = { kind: 'data-end', next: s.next };
          break;
        }
        case 'data-end': {
          if (buf.length < 2) {
            if (buf[0] !== 0x0d) throw new GateError('bad_chunk', 'chunk data not followed by CRLF');
            return;
          }
          if (buf[0] !== 0x0d || buf[1] !== 0x0a)
            throw new GateError('bad_chunk', 'chunk data not followed by CRLF');
          this.#emit(2);
          this.#state = { kind: 'size', next: s.next };
          break;
        }
        case 'trailers': {
          const eol = buf.indexOf('\r\n');
          if (eol < 0) {
            if (s.bytes + buf.length > MAX_TRAILER_BYTES)
              throw new GateError('too_large', 'trailers too long');
            if (buf.includes(0x0a)) throw new GateError('bare_lf', 'trailer line ends in LF');
            return;
          }
          const line = buf.toString('latin1', 0, eol);
          if (line.includes('\n') || line.includes('\r'))
            throw new GateError('bare_lf', 'bare CR or LF in trailers');
          if (line !== '' && !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\x20-\x7e\t]*$/.test(line))
            throw new GateError('malformed', 'bad trailer line');
          s.bytes += eol + 2;
          if (s.bytes > MAX_TRAILER_BYTES) throw new GateError('too_large', 'trailers too long');
          this.#emit(eol + 2);
          if (line === '') this.#state = this.#after(s.next);
          break;
        }
      }
    }
  }

  /** Pass the first n pending bytes on. */
  #emit(n: number): void {
    if (n <= 0) return;
    this.push(this.#pending.subarray(0, n));
    this.#pending = this.#pending.subarray(n);
  }
}
