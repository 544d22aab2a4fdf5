/**
 * TLS 1.3 HelloRetryRequest (RFC 8446 4.1.4): a server that cannot use the client's key shares
 * answers the first ClientHello with a ServerHello whose random is a fixed value, and the client
 * sends a second ClientHello. A proxy that decided on the first hello and then relayed blindly
 * would let the second one name another server: a CDN routes on it. So after an allowed hello
 * the proxy reads the server's first handshake message; when it is a retry request, the
 * client's next hello must name the same server, or the connection closes.
 *
 * Pure: bytes in, a verdict out; the proxy feeds both directions (retry-gate.ts).
 */
import { type HelloLimits, parseClientHello } from './client-hello.ts';

/** SHA-256("HelloRetryRequest"), the ServerHello.random of a retry request (RFC 8446 4.1.3). */
export const HRR_RANDOM = Buffer.from(
  'cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c',
  'hex',
);

const RECORD_HEADER = 5;
const CONTENT_CCS = 20;
const CONTENT_HANDSHAKE = 22;
const CONTENT_APPLICATION = 23;
const SERVER_HELLO = 2;
/** Handshake type (1) + length (3) + legacy_version (2) + random (32). */
const SERVER_HELLO_PREFIX = 38;
/** A real server sends the ServerHello's first 38 bytes in its first record or two; a retry request split wider is not looked for. */
const MAX_SERVER_RECORDS = 4;

/** What the server's first bytes say: wait for more, a retry request, or anything else. */
export type ServerFirst = 'more' | 'retry' | 'no_retry';

/**
 * Read the start of the server-to-client stream: `retry` only for a handshake that starts with
 * a ServerHello whose random is HRR_RANDOM. Anything else (a ServerHello, an alert, bytes that
 * are not TLS) is `no_retry`: a server that did not ask for a retry never reads a second hello,
 * so nothing after the first one can change the name it serves.
 */
export function readServerFirst(buf: Uint8Array): ServerFirst {
  const prefix = new Uint8Array(SERVER_HELLO_PREFIX);
  let have = 0;
  let at = 0;
  for (let records = 0; records < MAX_SERVER_RECORDS; records++) {
    // What there is of a record header already tells a non-handshake record apart.
    if (at < buf.length && buf[at] !== CONTENT_HANDSHAKE) return 'no_retry';
    if (at + 1 < buf.length && buf[at + 1] !== 3) return 'no_retry';
    if (buf.length - at < RECORD_HEADER) return 'more';
    const len = (buf[at + 3]! << 8) | buf[at + 4]!;
    if (len === 0) return 'no_retry';
    const start = at + RECORD_HEADER;
    const take = Math.min(len, SERVER_HELLO_PREFIX - have, buf.length - start);
    prefix.set(buf.subarray(start, start + take), have);
    have += take;
    if (have >= 1 && prefix[0] !== SERVER_HELLO) return 'no_retry';
    if (have === SERVER_HELLO_PREFIX) {
      const random = prefix.subarray(6, 38);
      return Buffer.compare(random, HRR_RANDOM) === 0 ? 'retry' : 'no_retry';
    }
    if (start + len > buf.length) return 'more';
    at = start + len;
  }
  return 'no_retry';
}

export type RetryHello =
  | { readonly kind: 'more' }
  | { readonly kind: 'hello'; readonly sni: string; readonly consumed: number }
  | { readonly kind: 'error'; readonly reason: string; readonly detail: string };

/**
 * The client's second hello at the start of `buf` (what the client sent after its first hello):
 * change_cipher_spec records (middlebox compatibility) and early-data records the server will
 * skip may come first, up to `maxSkipBytes`; then a ClientHello, read by the same bounded parser
 * as the first. A hello without a usable server_name is an error here too.
 */
export function readRetryHello(buf: Uint8Array, limits: HelloLimits, maxSkipBytes: number): RetryHello {
  let at = 0;
  for (;;) {
    if (at > maxSkipBytes)
      return {
        kind: 'error',
        reason: 'too_large',
        detail: `more than ${maxSkipBytes} bytes before the second hello`,
      };
    if (buf.length - at < RECORD_HEADER) return { kind: 'more' };
    const type = buf[at]!;
    if (type !== CONTENT_CCS && type !== CONTENT_APPLICATION) break;
    if (buf[at + 1] !== 3)
      return { kind: 'error', reason: 'malformed', detail: 'record version major is not 3' };
    at += RECORD_HEADER + ((buf[at + 3]! << 8) | buf[at + 4]!);
  }
  const r = parseClientHello(buf.subarray(at), limits);
  if (r.kind === 'more') return r;
  if (r.kind === 'error') return { kind: 'error', reason: r.reason, detail: r.detail };
  return { kind: 'hello', sni: r.hello.sni, consumed: at + r.consumed };
}
