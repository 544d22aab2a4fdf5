/**
 * The client-to-server stage of an allowed TLS connection that keeps the server name fixed
 * across a HelloRetryRequest (hello-retry.ts has the why).
 *
 * It sees what the client sends after its first hello (which was decided and written already).
 * All of it is held (up to a cap, then the client is paused) until the server's first
 * handshake message is known:
 *   - not a retry request (a ServerHello, an alert, anything else): the held bytes go on and the
 *     stage is a plain pass-through;
 *   - a retry request: the client's next hello is read with the same bounds as the first (bytes:
 *     the hello cap plus skipped records; time: the peek deadline) and must carry the same
 *     server_name; then everything passes;
 *   - a second hello with another or no name, a broken one, or the deadline: a refusal with a
 *     stable reason. Enforce mode closes the connection (the held bytes never reach the server);
 *     audit mode reports it and lets the bytes pass.
 * A client that half-closes while bytes are held: they are checked as they are (no second hello
 * can follow) and go on, so a server that waits for the client's FIN still gets it.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { type HelloLimits, maxPeekBytes } from './client-hello.ts';
import { readRetryHello, readServerFirst } from './hello-retry.ts';

/** Early-data and change_cipher_spec records allowed before the second hello. */
const MAX_SKIP_BYTES = 65_536;
/** Server bytes looked at for its first handshake message (four full records). */
const MAX_SERVER_BYTES = 4 * (5 + 16_384);

export type RetryReason =
  /** The second hello names another server, or none. */
  | 'retry_name_mismatch'
  /** The second hello is not a well-formed ClientHello within the limits. */
  | 'retry_hello_invalid'
  /** The second hello did not arrive within the peek deadline. */
  | 'retry_timeout';

export class RetryRefusal extends Error {
  readonly reason: RetryReason;
  constructor(reason: RetryReason, detail: string) {
    super(detail);
    this.name = 'RetryRefusal';
    this.reason = reason;
  }
}

export interface RetryGateOptions {
  /** The server_name the connection was allowed for. */
  readonly sni: string;
  readonly limits: HelloLimits;
  readonly timeoutMs: number;
  /** true: a refusal closes the connection (emitted as an error); false: reported only. */
  readonly enforce: boolean;
  /** Every refusal, before the connection closes (enforce) or passes (audit). */
  readonly onRefusal: (r: RetryRefusal) => void;
}

type State = 'wait' | 'second' | 'open' | 'refused';

export class RetryGate extends Transform {
  readonly #o: RetryGateOptions;
  #state: State = 'wait';
  #held: Buffer = Buffer.alloc(0);
  #server: Buffer = Buffer.alloc(0);
  #timer: NodeJS.Timeout | null = null;
  /** A write held back while over the cap before the server answered (backpressure). */
  #paused: TransformCallback | null = null;

  constructor(o: RetryGateOptions) {
    super();
    this.#o = o;
  }

  /** Has the gate stopped looking (pass-through or refused)? The server tap can go then. */
  get settled(): boolean {
    return this.#state === 'open' || this.#state === 'refused';
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.#state === 'open') {
      cb(null, chunk);
      return;
    }
    if (this.#state === 'refused') {
      cb();
      return;
    }
    this.#held = this.#held.length === 0 ? chunk : Buffer.concat([this.#held, chunk]);
    const over = this.#held.length > maxPeekBytes(this.#o.limits) + MAX_SKIP_BYTES;
    if (this.#state === 'second') {
      if (over)
        this.#refuse(new RetryRefusal('retry_hello_invalid', 'too many bytes before the second hello'));
      else this.#readSecond();
    } else if (over) {
      // The server has not answered yet: stop reading the client until it does.
      this.#paused = cb;
      return;
    }
    cb();
  }

  override _flush(cb: TransformCallback): void {
    // The client ended: no more bytes can come, so no second hello beyond what is held.
    if (this.#state === 'second') this.#readSecond(true);
    else if (this.#state === 'wait') this.#open();
    if (!this.destroyed) cb();
  }

  /** Bytes the server sent to the client (a tap beside the relay; never changed). */
  serverData(chunk: Buffer): void {
    if (this.#state !== 'wait') return;
    this.#server = this.#server.length === 0 ? chunk : Buffer.concat([this.#server, chunk]);
    const first = readServerFirst(this.#server);
    if (first === 'more' && this.#server.length <= MAX_SERVER_BYTES) return;
    this.#server = Buffer.alloc(0);
    if (first === 'retry') this.#expectSecond();
    else this.#open();
  }

  /** The server asked for a retry: the next hello must come within the deadline. */
  #expectSecond(): void {
    this.#state = 'second';
    this.#timer = setTimeout(
      () => this.#refuse(new RetryRefusal('retry_timeout', 'no second hello before the deadline')),
      this.#o.timeoutMs,
    );
    this.#readSecond();
  }

  /** `final`: the client ended, so a hello still incomplete never will be. */
  #readSecond(final = false): void {
    const r = readRetryHello(this.#held, this.#o.limits, MAX_SKIP_BYTES);
    if (r.kind === 'more') {
      if (final)
        this.#refuse(new RetryRefusal('retry_hello_invalid', 'the client ended before a second hello'));
      return;
    }
    if (r.kind === 'error') {
      const reason = r.reason === 'no_sni' ? 'retry_name_mismatch' : 'retry_hello_invalid';
      this.#refuse(new RetryRefusal(reason, `second hello: ${r.reason}: ${r.detail}`));
    } else if (r.sni !== this.#o.sni) {
      this.#refuse(
        new RetryRefusal('retry_name_mismatch', `second hello names ${r.sni}, the first ${this.#o.sni}`),
      );
    } else this.#open();
  }

  #open(): void {
    this.#clearTimer();
    this.#state = 'open';
    if (this.#held.length > 0) this.push(this.#held);
    this.#held = Buffer.alloc(0);
    this.#resume();
  }

  #resume(): void {
    const paused = this.#paused;
    this.#paused = null;
    paused?.();
  }

  #refuse(r: RetryRefusal): void {
    if (this.settled) return;
    this.#o.onRefusal(r);
    if (!this.#o.enforce) {
      this.#open();
      return;
    }
    this.#clearTimer();
    this.#state = 'refused';
    this.#held = Buffer.alloc(0);
    this.#resume();
    this.destroy(r);
  }

  #clearTimer(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this.#clearTimer();
    cb(err);
  }
}
