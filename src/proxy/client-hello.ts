/**
 * A bounded, pure TLS ClientHello reader for the transparent proxy: given the bytes a client
 * sent so far, it says "need more", returns what the hello claims (SNI, ALPN, ECH, versions), or
 * refuses with a stable reason code. It never throws for any input.
 *
 * Why our own: the proxy must decide before a single byte reaches the server, on a hello that
 * may be split across TLS records and TCP segments (post-quantum key shares push it past one
 * MTU), and every byte it buffers is attacker-controlled. The reader therefore:
 * - reassembles the handshake message across records (each record 1..2^14 bytes, every record
 *   up to the hello's end a handshake record), with a cap on the hello and on the record count;
 * - requires the hello to end exactly at a record boundary (RFC 8446 5.1), so bytes after it
 *   (early data, change_cipher_spec) are never parsed, only held and forwarded after the verdict;
 * - refuses what a name check cannot stand on: no server_name, two names or repeated extension
 *   types, a name that is not a canonical host name (trailing dot, NUL, non-LDH, too long),
 *   an IP literal, legacy ESNI (0xffce), SSLv2-compatible hellos and non-TLS bytes.
 * ECH (0xfe0d) is reported, not refused: the outer server_name is the name decided on (a real
 * ECH hello names the provider's public_name there; GREASE ECH names the real server).
 */
import { type CanonicalName, tryWireName } from '../core/names.ts';

/** Why a hello was refused; stable, used in logs, metrics and tests. */
export type HelloReason =
  /** The bytes are not a TLS handshake record (HTTP, SSH banner, random). */
  | 'not_tls'
  /** An SSLv2-compatible ClientHello (no extensions, so no SNI; never accepted). */
  | 'sslv2'
  /** Structure broken: lengths disagree, truncated fields, bytes after the hello in its record. */
  | 'malformed'
  /** The first handshake message is not a ClientHello. */
  | 'not_client_hello'
  /** legacy_version is not TLS 1.0..1.3 (SSL 3.0 and unknown values). */
  | 'bad_version'
  /** The hello (or its framing) is larger than the cap, or uses too many records. */
  | 'too_large'
  /** No server_name extension, or no host_name in it. */
  | 'no_sni'
  /** An extension type appears twice. */
  | 'duplicate_extension'
  /** The server_name extension lists more than one name. */
  | 'multiple_names'
  /**
   * The name is not a canonical host name (trailing dot, NUL, non-ASCII, non-LDH, label or name
   * too long): the reason every path (DNS, SNI, Host, CONNECT, check) gives for such a name.
   */
  | 'name_invalid'
  /** The name is an IP address literal (RFC 6066 forbids it). */
  | 'ip_sni'
  /** Legacy encrypted SNI (draft ESNI, extension 0xffce). */
  | 'esni';

export const HELLO_REASONS: readonly HelloReason[] = [
  'not_tls',
  'sslv2',
  'malformed',
  'not_client_hello',
  'bad_version',
  'too_large',
  'no_sni',
  'duplicate_extension',
  'multiple_names',
  'name_invalid',
  'ip_sni',
  'esni',
];

export interface ClientHello {
  /** The server_name, canonical (lowercase A-labels, no trailing dot). */
  readonly sni: CanonicalName;
  /** ALPN protocol names in the client's order (latin1 text). */
  readonly alpn: readonly string[];
  /** An encrypted_client_hello extension is present: 'outer' (real or GREASE ECH), 'inner', or another type byte. */
  readonly ech: 'outer' | 'inner' | 'other' | null;
  /** legacy_version of the hello, e.g. 0x0303. */
  readonly legacyVersion: number;
  /** supported_versions (TLS 1.3 clients), GREASE values left out. */
  readonly versions: readonly number[];
  /** The early_data extension is present (0-RTT data may follow the hello). */
  readonly earlyData: boolean;
  /** A pre_shared_key extension is present (resumption). */
  readonly psk: boolean;
  /** Extension types in order (for tests and fingerprints). */
  readonly extensions: readonly number[];
  /** Number of TLS records the hello was spread over. */
  readonly records: number;
}

export type HelloResult =
  /** Feed more bytes (the buffer holds a valid prefix). */
  | { readonly kind: 'more' }
  /** `consumed`: bytes up to the end of the hello's last record; anything after is held, not parsed. */
  | { readonly kind: 'hello'; readonly hello: ClientHello; readonly consumed: number }
  | { readonly kind: 'error'; readonly reason: HelloReason; readonly detail: string };

export interface HelloLimits {
  /** Largest ClientHello message body accepted (bytes, without the 4-byte handshake header). */
  readonly maxHelloBytes: number;
  /** Most TLS records the hello may be spread over. */
  readonly maxRecords: number;
}

export const DEFAULT_HELLO_LIMITS: HelloLimits = { maxHelloBytes: 16_384, maxRecords: 64 };

/** RFC 8446 5.1: a plaintext record carries at most 2^14 bytes. */
export const MAX_RECORD_BYTES = 16_384;
const RECORD_HEADER = 5;
const HANDSHAKE_HEADER = 4;

const CONTENT_HANDSHAKE = 22;
const HANDSHAKE_CLIENT_HELLO = 1;

export const Ext = {
  serverName: 0,
  alpn: 16,
  preSharedKey: 41,
  earlyData: 42,
  supportedVersions: 43,
  ech: 0xfe0d,
  legacyEsni: 0xffce,
} as const;

/** The most bytes the reader ever looks at for these limits (the proxy's peek cap). */
export function maxPeekBytes(limits: HelloLimits): number {
  return HANDSHAKE_HEADER + limits.maxHelloBytes + RECORD_HEADER * limits.maxRecords;
}

const fail = (reason: HelloReason, detail: string): HelloResult => ({ kind: 'error', reason, detail });
const MORE: HelloResult = Object.freeze({ kind: 'more' });

/**
 * Read the ClientHello at the start of `buf`. Call again with the grown buffer after 'more'
 * (the work is linear in the buffer, and the buffer is capped by maxPeekBytes).
 */
export function parseClientHello(buf: Uint8Array, limits: HelloLimits = DEFAULT_HELLO_LIMITS): HelloResult {
  if (buf.length === 0) return MORE;
  const first = buf[0]!;
  if (first !== CONTENT_HANDSHAKE) {
    // SSLv2 record: 2-byte header with the top bit set, then msg_type 1 (CLIENT-HELLO).
    if ((first & 0x80) !== 0 && (buf.length < 3 || buf[2] === 1)) {
      return buf.length < 3 ? MORE : fail('sslv2', 'an SSLv2-compatible ClientHello has no server_name');
    }
    return fail('not_tls', `first byte 0x${hex2(first)} is not a TLS handshake record`);
  }
  if (buf.length >= 2 && buf[1] !== 3) return fail('not_tls', 'record version major is not 3');

  // Reassemble the handshake message from the records' fragments.
  const cap = HANDSHAKE_HEADER + limits.maxHelloBytes;
  const parts: Uint8Array[] = [];
  let have = 0;
  let need = -1; // handshake bytes in total, once the header is known
  let at = 0;
  let records = 0;
  for (;;) {
    if (buf.length - at < RECORD_HEADER) {
      // Check what is there of the next header before asking for more.
      if (at < buf.length && buf[at] !== CONTENT_HANDSHAKE)
        return fail('malformed', 'a record other than handshake inside the ClientHello');
      if (at + 1 < buf.length && buf[at + 1] !== 3) return fail('malformed', 'record version major is not 3');
      return MORE;
    }
    if (buf[at] !== CONTENT_HANDSHAKE)
      return fail('malformed', `record type ${buf[at]} inside the ClientHello`);
    if (buf[at + 1] !== 3) return fail('malformed', 'record version major is not 3');
    const len = (buf[at + 3]! << 8) | buf[at + 4]!;
    if (len === 0) return fail('malformed', 'an empty handshake record');
    if (len > MAX_RECORD_BYTES) return fail('malformed', `record length ${len} is over 2^14`);
    records++;
    if (records > limits.maxRecords)
      return fail('too_large', `the ClientHello spans more than ${limits.maxRecords} records`);
    const start = at + RECORD_HEADER;
    const end = Math.min(start + len, buf.length);
    if (end > start) {
      parts.push(buf.subarray(start, end));
      have += end - start;
    }
    if (need < 0 && have >= HANDSHAKE_HEADER) {
      const head = gather(parts, HANDSHAKE_HEADER);
      if (head[0] !== HANDSHAKE_CLIENT_HELLO)
        return fail('not_client_hello', `handshake type ${head[0]} is not ClientHello`);
      const bodyLen = (head[1]! << 16) | (head[2]! << 8) | head[3]!;
      if (bodyLen > limits.maxHelloBytes)
        return fail('too_large', `the ClientHello claims ${bodyLen} bytes; at most ${limits.maxHelloBytes}`);
      need = HANDSHAKE_HEADER + bodyLen;
    }
    // What the handshake holds once this record is complete: more than the hello means bytes
    // after it in its record, known as soon as both lengths are.
    const full = have - (end - start) + len;
    if (need >= 0 && full > need)
      return fail('malformed', 'bytes after the ClientHello in its last record (it must end a record)');
    if (full > cap) return fail('too_large', `more than ${cap} handshake bytes`);
    if (start + len > buf.length) return MORE;
    at = start + len;
    if (need >= 0 && have >= need) {
      if (have > need)
        return fail('malformed', 'bytes after the ClientHello in its last record (it must end a record)');
      const msg = gather(parts, need);
      return readBody(msg.subarray(HANDSHAKE_HEADER), records, at);
    }
  }
}

function gather(parts: readonly Uint8Array[], n: number): Uint8Array {
  if (parts.length === 1 && parts[0]!.length >= n) return parts[0]!.subarray(0, n);
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    if (off >= n) break;
    const take = Math.min(p.length, n - off);
    out.set(p.subarray(0, take), off);
    off += take;
  }
  return out;
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}

/** A cursor over the hello body; every read is checked against `end`. */
class Reader {
  readonly b: Uint8Array;
  pos: number;
  end: number;
  constructor(b: Uint8Array, pos: number, end: number) {
    this.b = b;
    this.pos = pos;
    this.end = end;
  }
  left(): number {
    return this.end - this.pos;
  }
  u8(): number {
    if (this.pos + 1 > this.end) return -1;
    return this.b[this.pos++]!;
  }
  u16(): number {
    if (this.pos + 2 > this.end) return -1;
    const v = (this.b[this.pos]! << 8) | this.b[this.pos + 1]!;
    this.pos += 2;
    return v;
  }
  /** A length-prefixed vector's bounds (prefix of `size` bytes); null when it overruns. */
  vec(size: 1 | 2): { start: number; end: number } | null {
    const n = size === 1 ? this.u8() : this.u16();
    if (n < 0 || this.pos + n > this.end) return null;
    const start = this.pos;
    this.pos += n;
    return { start, end: this.pos };
  }
}

const GREASE = (v: number) => (v & 0x0f0f) === 0x0a0a && v >> 8 === (v & 0xff);

function readBody(body: Uint8Array, records: number, consumed: number): HelloResult {
  const r = new Reader(body, 0, body.length);
  const version = r.u16();
  if (version < 0) return fail('malformed', 'truncated legacy_version');
  if (version < 0x0301 || version > 0x0304)
    return fail('bad_version', `legacy_version 0x${version.toString(16)} is not TLS 1.0..1.3`);
  if (r.left() < 32) return fail('malformed', 'truncated random');
  r.pos += 32;
  const session = r.vec(1);
  if (!session || session.end - session.start > 32) return fail('malformed', 'bad legacy_session_id');
  const suites = r.vec(2);
  if (!suites || suites.end === suites.start || (suites.end - suites.start) % 2 !== 0)
    return fail('malformed', 'bad cipher_suites');
  const compression = r.vec(1);
  if (!compression || compression.end === compression.start)
    return fail('malformed', 'bad compression_methods');
  if (r.left() === 0) return fail('no_sni', 'the ClientHello has no extensions');
  const exts = r.vec(2);
  if (!exts || r.left() !== 0)
    return fail('malformed', 'the extensions do not end where the ClientHello ends');

  const seen = new Set<number>();
  const order: number[] = [];
  let sni: CanonicalName | null = null;
  let alpn: string[] = [];
  let ech: ClientHello['ech'] = null;
  let versions: number[] = [];
  let earlyData = false;
  let psk = false;
  const x = new Reader(body, exts.start, exts.end);
  while (x.left() > 0) {
    const type = x.u16();
    const data = x.vec(2);
    if (type < 0 || !data) return fail('malformed', 'truncated extension');
    if (psk) return fail('malformed', 'pre_shared_key is not the last extension');
    if (seen.has(type)) return fail('duplicate_extension', `extension ${type} appears twice`);
    seen.add(type);
    order.push(type);
    const e = new Reader(body, data.start, data.end);
    switch (type) {
      case Ext.serverName: {
        const got = readServerName(e);
        if (typeof got !== 'string') return got;
        sni = got;
        break;
      }
      case Ext.alpn: {
        const list = e.vec(2);
        if (!list || e.left() !== 0 || list.end === list.start)
          return fail('malformed', 'bad ALPN extension');
        const p = new Reader(body, list.start, list.end);
        const names: string[] = [];
        while (p.left() > 0) {
          const n = p.vec(1);
          if (!n || n.end === n.start) return fail('malformed', 'bad ALPN protocol name');
          names.push(Buffer.from(body.buffer, body.byteOffset + n.start, n.end - n.start).toString('latin1'));
        }
        alpn = names;
        break;
      }
      case Ext.supportedVersions: {
        const list = e.vec(1);
        if (!list || e.left() !== 0 || (list.end - list.start) % 2 !== 0 || list.end === list.start)
          return fail('malformed', 'bad supported_versions extension');
        const out: number[] = [];
        for (let i = list.start; i < list.end; i += 2) {
          const v = (body[i]! << 8) | body[i + 1]!;
          if (!GREASE(v)) out.push(v);
        }
        versions = out;
        break;
      }
      case Ext.earlyData:
        if (e.left() !== 0) return fail('malformed', 'early_data in a ClientHello carries no data');
        earlyData = true;
        break;
      case Ext.preSharedKey:
        psk = true;
        break;
      case Ext.ech: {
        const t = e.u8();
        ech = t === 0 ? 'outer' : t === 1 ? 'inner' : 'other';
        break;
      }
      case Ext.legacyEsni:
        return fail('esni', 'legacy encrypted SNI (0xffce) hides the name');
      default:
        break;
    }
  }
  if (sni === null) return fail('no_sni', 'no server_name extension');
  return {
    kind: 'hello',
    consumed,
    hello: {
      sni,
      alpn,
      ech,
      legacyVersion: version,
      versions,
      earlyData,
      psk,
      extensions: order,
      records,
    },
  };
}

/** RFC 6066 3: ServerNameList with exactly one host_name entry here. */
function readServerName(e: Reader): CanonicalName | HelloResult {
  const list = e.vec(2);
  if (!list || e.left() !== 0) return fail('malformed', 'bad server_name extension');
  if (list.end === list.start) return fail('no_sni', 'an empty server_name list');
  const l = new Reader(e.b, list.start, list.end);
  let name: Uint8Array | null = null;
  while (l.left() > 0) {
    const type = l.u8();
    const n = l.vec(2);
    if (type < 0 || !n) return fail('malformed', 'truncated server_name entry');
    if (name !== null) return fail('multiple_names', 'the server_name extension lists more than one name');
    if (type !== 0) return fail('malformed', `server_name type ${type} is not host_name`);
    name = e.b.subarray(n.start, n.end);
  }
  if (name === null || name.length === 0) return fail('no_sni', 'an empty host_name');
  return checkSniBytes(name);
}

/**
 * The host_name must be a canonical name in ASCII as sent (tryWireName, the one reading of a
 * name off the wire): no trailing dot, only letters, digits, hyphen and underscore between
 * dots, within the length limits. Case is folded (DNS names are case-insensitive); nothing
 * else is rewritten, so what is decided is what was sent.
 */
export function checkSniBytes(name: Uint8Array): CanonicalName | HelloResult {
  if (name.length > 253) return fail('name_invalid', `server_name has ${name.length} bytes; at most 253`);
  // latin1 keeps one character per byte: a UTF-8 sequence stays non-ASCII and is refused.
  const text = Buffer.from(name.buffer, name.byteOffset, name.length).toString('latin1');
  if (/^[0-9a-fA-F:.]*:[0-9a-fA-F:.]*$|^\[.*\]$/.test(text))
    return fail('ip_sni', 'server_name is an IPv6 literal');
  if (text.endsWith('.')) return fail('name_invalid', 'server_name ends with a dot');
  if (/^[0-9.]+$/.test(text)) return fail('ip_sni', 'server_name is an IPv4 literal');
  const canonical = tryWireName(text);
  if (typeof canonical !== 'string') {
    return fail(
      canonical.rule === 'ip-literal' || canonical.rule === 'numeric-tld' ? 'ip_sni' : 'name_invalid',
      canonical.message,
    );
  }
  return canonical;
}
