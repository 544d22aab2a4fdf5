/**
 * Where an HTTP/1.1 message body ends: Content-Length bytes, or chunked coding with bounded size
 * lines and trailers (RFC 9112 7.1). Shared by the request gate (http-gate.ts) and the response
 * framer of the inspecting proxy, so both directions frame bodies the same strict way: a size
 * line with junk, a chunk not followed by CRLF, a bare LF or overlong trailers is an error with
 * a stable reason, never a guess.
 */

export class FramingError extends Error {
  readonly reason: string;
  constructor(reason: string, detail: string) {
    super(`${reason}: ${detail}`);
    this.name = 'FramingError';
    this.reason = reason;
  }
}

export type Framing = { readonly kind: 'length'; readonly length: number } | { readonly kind: 'chunked' };

const MAX_CHUNK_LINE = 1024;
const MAX_TRAILER_BYTES = 16_384;
const SIZE_LINE = /^([0-9a-fA-F]{1,12})(?:[ \t]*;[\x21-\x7e \t]*)?$/;
const TRAILER_LINE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\x20-\x7e\t]*$/;

type State =
  | { kind: 'length'; left: number }
  | { kind: 'size' }
  | { kind: 'data'; left: number }
  | { kind: 'data-end' }
  | { kind: 'trailers'; bytes: number }
  | { kind: 'done' };

export class BodyFramer {
  #state: State;
  /** feed(): the start of a line not complete yet. */
  #partial: Buffer = Buffer.alloc(0);

  constructor(framing: Framing) {
    this.#state = framing.kind === 'length' ? { kind: 'length', left: framing.length } : { kind: 'size' };
    if (framing.kind === 'length' && framing.length === 0) this.#state = { kind: 'done' };
  }

  get done(): boolean {
    return this.#state.kind === 'done';
  }

  /**
   * How many bytes at the start of `buf` belong to the body (stop at its end). Fewer than
   * buf.length while the body goes on means a line is incomplete: call again with more bytes.
   */
  take(buf: Buffer): number {
    let used = 0;
    while (used < buf.length && this.#state.kind !== 'done') {
      const n = this.#step(buf.subarray(used));
      if (n === 0) break;
      used += n;
    }
    return used;
  }

  /**
   * For an observer that cannot hold bytes back: like take, but an incomplete line is kept
   * here, so all of buf up to the body's end counts as consumed.
   */
  feed(buf: Buffer): number {
    const held = this.#partial.length;
    const all = held === 0 ? buf : Buffer.concat([this.#partial, buf]);
    const n = this.take(all);
    if (this.done) {
      this.#partial = Buffer.alloc(0);
      return n - held;
    }
    this.#partial = Buffer.from(all.subarray(n));
    return buf.length;
  }

  /** Consume one piece; 0 when more bytes are needed. */
  #step(buf: Buffer): number {
    const s = this.#state;
    switch (s.kind) {
      case 'length':
      case 'data': {
        const n = Math.min(s.left, buf.length);
        s.left -= n;
        if (s.left === 0) this.#state = s.kind === 'length' ? { kind: 'done' } : { kind: 'data-end' };
        return n;
      }
      case 'size': {
        const eol = buf.indexOf('\r\n');
        if (eol < 0) {
          if (buf.length > MAX_CHUNK_LINE) throw new FramingError('bad_chunk', 'chunk size line too long');
          if (buf.includes(0x0a)) throw new FramingError('bare_lf', 'chunk size line ends in LF');
          return 0;
        }
        const m = SIZE_LINE.exec(buf.toString('latin1', 0, eol));
        if (!m) throw new FramingError('bad_chunk', 'bad chunk size line');
        const size = Number.parseInt(m[1] as string, 16);
        this.#state = size === 0 ? { kind: 'trailers', bytes: 0 } : { kind: 'data', left: size };
        return eol + 2;
      }
      case 'data-end': {
        if (buf[0] !== 0x0d || (buf.length > 1 && buf[1] !== 0x0a))
          throw new FramingError('bad_chunk', 'chunk data not followed by CRLF');
        if (buf.length < 2) return 0;
        this.#state = { kind: 'size' };
        return 2;
      }
      case 'trailers': {
        const eol = buf.indexOf('\r\n');
        if (eol < 0) {
          if (s.bytes + buf.length > MAX_TRAILER_BYTES)
            throw new FramingError('too_large', 'trailers too long');
          if (buf.includes(0x0a)) throw new FramingError('bare_lf', 'trailer line ends in LF');
          return 0;
        }
        const line = buf.toString('latin1', 0, eol);
        if (line.includes('\n') || line.includes('\r'))
          throw new FramingError('bare_lf', 'bare CR or LF in trailers');
        if (line !== '' && !TRAILER_LINE.test(line)) throw new FramingError('malformed', 'bad trailer line');
        s.bytes += eol + 2;
        if (s.bytes > MAX_TRAILER_BYTES) throw new FramingError('too_large', 'trailers too long');
        if (line === '') this.#state = { kind: 'done' };
        return eol + 2;
      }
      case 'done':
        return 0;
    }
  }
}
