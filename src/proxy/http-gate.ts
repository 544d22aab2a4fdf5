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
 *
 * With `holdUpgrades` (the inspecting proxy, which reads the responses too), bytes after an
 * Upgrade request are held until the caller says whether the server switched protocols
 * (resolveUpgrade): a server that refuses the upgrade keeps speaking HTTP, and so must the gate,
 * or the next request would pass unchecked as "tunnel" bytes.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { BodyFramer, FramingError } from './http-body.ts';
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

function asGateError(err: unknown): Error {
  if (err instanceof FramingError) return new GateError(err.reason, err.message.slice(err.reason.length + 2));
  return err instanceof Error ? err : new Error(String(err));
}

/** Null when the request may pass, else the reason it may not. */
export type HeadCheck = (head: RequestHead) => string | null;

type Next = 'head' | 'tunnel' | 'hold';

type State =
  | { kind: 'head' }
  | { kind: 'body'; framer: BodyFramer; next: Next }
  | { kind: 'tunnel' }
  /** After an Upgrade request, until resolveUpgrade (holdUpgrades). */
  | { kind: 'hold' }
  /** single mode, after the one request: further bytes are dropped, never forwarded. */
  | { kind: 'drop' };

export class HttpGate extends Transform {
  readonly #check: HeadCheck;
  readonly #limits: HeadLimits;
  readonly #onRequest: ((head: RequestHead) => void) | undefined;
  readonly #single: boolean;
  readonly #holdUpgrades: boolean;
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
    options: { single?: boolean; holdUpgrades?: boolean } = {},
  ) {
    super();
    this.#check = check;
    this.#limits = limits;
    this.#onRequest = onRequest;
    this.#single = options.single ?? false;
    this.#holdUpgrades = options.holdUpgrades ?? false;
  }

  /** holdUpgrades: the server answered the Upgrade request; true when it switched (101). */
  resolveUpgrade(switched: boolean): void {
    if (this.#state.kind !== 'hold') return;
    this.#state = switched ? { kind: 'tunnel' } : { kind: 'head' };
    try {
      this.#run();
    } catch (err) {
      this.destroy(asGateError(err));
    }
  }

  /** The caller sent this (already checked) head itself: continue with its body. */
  afterHead(head: RequestHead): void {
    this.requests++;
    this.#state = this.#bodyState(head);
  }

  #bodyState(head: RequestHead): State {
    const next: Next = head.upgrade === null ? 'head' : this.#holdUpgrades ? 'hold' : 'tunnel';
    const b = head.body;
    if (b.kind === 'none') return this.#after(next);
    return { kind: 'body', framer: new BodyFramer(b), next };
  }

  #after(next: Next): State {
    if (next !== 'head') return { kind: next };
    return this.#single && this.requests > 0 ? { kind: 'drop' } : { kind: 'head' };
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.#pending = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
      this.#run();
      cb();
    } catch (err) {
      cb(asGateError(err));
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
        case 'body': {
          const n = s.framer.take(buf);
          this.#emit(n);
          if (!s.framer.done) return; // the rest of buf is an incomplete chunk line
          this.#state = this.#after(s.next);
          break;
        }
        case 'hold':
          if (buf.length > this.#limits.maxHeadBytes)
            throw new GateError('too_large', 'bytes sent before the server answered the upgrade');
          return;
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
