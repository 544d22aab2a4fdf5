/**
 * Reads (never changes) the upstream's HTTP/1.1 responses on an inspected connection, to know
 * when each forwarded request has been answered. The inspecting proxy needs that twice:
 *   - a refused request gets its 403 only after every earlier response has reached the client
 *     (pipelining: writing it sooner would splice it into another response);
 *   - after an Upgrade request the request gate holds the client's bytes until the response
 *     says whether the protocol switched (101) or HTTP goes on.
 * Body framing per RFC 9112 6.3: no body for HEAD, 1xx, 204 and 304; chunked; Content-Length;
 * else until the server closes. Bounded: a response head over maxHeadBytes is an error.
 */
import { BodyFramer, FramingError } from '../http-body.ts';

export interface ResponseEvents {
  /** A final response to the oldest outstanding request is complete (101: its head). */
  readonly onComplete: (status: number) => void;
}

type State =
  | { kind: 'head' }
  | { kind: 'body'; framer: BodyFramer; status: number }
  | { kind: 'until-close'; status: number }
  | { kind: 'switched' };

const STATUS_LINE = /^HTTP\/1\.[01] ([1-5][0-9][0-9])(?: [\x20-\x7e\t\x80-\xff]*)?$/;

export class ResponseFramer {
  readonly #events: ResponseEvents;
  readonly #maxHeadBytes: number;
  readonly #methods: string[] = [];
  #state: State = { kind: 'head' };
  #head: Buffer = Buffer.alloc(0);

  constructor(maxHeadBytes: number, events: ResponseEvents) {
    this.#maxHeadBytes = maxHeadBytes;
    this.#events = events;
  }

  /** Requests forwarded and not yet answered. */
  get outstanding(): number {
    return this.#methods.length;
  }

  /** A request went upstream (its method decides whether the response has a body). */
  expect(method: string): void {
    this.#methods.push(method);
  }

  /** The upstream closed: a response delimited by the close is complete. */
  end(): void {
    if (this.#state.kind === 'until-close') this.#complete(this.#state.status);
  }

  /** Observe a chunk of upstream bytes. Throws FramingError on a response it cannot frame. */
  feed(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      const s = this.#state;
      if (s.kind === 'switched' || s.kind === 'until-close') return;
      if (s.kind === 'body') {
        at += s.framer.feed(chunk.subarray(at));
        if (!s.framer.done) return;
        this.#state = { kind: 'head' };
        this.#complete(s.status);
        continue;
      }
      at = this.#readHead(chunk, at);
    }
  }

  #readHead(chunk: Buffer, at: number): number {
    const part = chunk.subarray(at);
    const joined = this.#head.length === 0 ? part : Buffer.concat([this.#head, part]);
    const end = joined.indexOf('\r\n\r\n');
    if (end < 0) {
      if (joined.length > this.#maxHeadBytes) throw new FramingError('too_large', 'response head too large');
      this.#head = Buffer.from(joined);
      return chunk.length;
    }
    const headLen = end + 4;
    if (headLen > this.#maxHeadBytes) throw new FramingError('too_large', 'response head too large');
    const consumedFromChunk = headLen - this.#head.length;
    const lines = joined.toString('latin1', 0, end).split('\r\n');
    this.#head = Buffer.alloc(0);
    const m = STATUS_LINE.exec(lines[0] ?? '');
    if (!m) throw new FramingError('malformed', 'bad status line');
    const status = Number(m[1]);
    let length: number | null = null;
    let chunked = false;
    let otherCoding = false;
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i] as string;
      const colon = line.indexOf(':');
      if (colon <= 0 || line.includes('\n')) throw new FramingError('malformed', 'bad response field line');
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name === 'content-length') {
        if (!/^[0-9]{1,15}$/.test(value) || (length !== null && length !== Number(value)))
          throw new FramingError('bad_length', 'bad Content-Length in a response');
        length = Number(value);
      } else if (name === 'transfer-encoding') {
        const codings = value
          .toLowerCase()
          .split(',')
          .map((c) => c.trim());
        if (codings[codings.length - 1] === 'chunked') chunked = true;
        else otherCoding = true;
      }
    }
    const method = this.#methods[0] ?? 'GET';
    if (status < 200) {
      if (status === 101) {
        this.#state = { kind: 'switched' };
        this.#complete(101);
      }
      return at + consumedFromChunk; // interim: the final response follows
    }
    if (method === 'HEAD' || status === 204 || status === 304 || (method === 'CONNECT' && status < 300)) {
      this.#complete(status);
    } else if (chunked && !otherCoding) {
      this.#state = { kind: 'body', framer: new BodyFramer({ kind: 'chunked' }), status };
    } else if (otherCoding || length === null) {
      this.#state = { kind: 'until-close', status };
    } else if (length === 0) {
      this.#complete(status);
    } else {
      this.#state = { kind: 'body', framer: new BodyFramer({ kind: 'length', length }), status };
    }
    return at + consumedFromChunk;
  }

  #complete(status: number): void {
    this.#methods.shift();
    this.#events.onComplete(status);
  }
}
