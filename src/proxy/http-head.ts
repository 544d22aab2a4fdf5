/**
 * A strict, bounded HTTP/1.x request-head reader for the proxies (plain HTTP on verify ports, and
 * the CONNECT proxy's requests). Pure: bytes in, a head or a stable reason out; never throws.
 *
 * Strictness is the point (NODE-08, RFC 9112): every line ends in CRLF (a bare LF or CR is
 * refused), no obs-fold, no whitespace between a field name and its colon, no control bytes in
 * values, one Host, no duplicate or comma-listed Content-Length, Transfer-Encoding only as a lone
 * `chunked` and never together with Content-Length. A request two parsers could read differently
 * is refused rather than interpreted. h2c upgrades and the HTTP/2 prior-knowledge preface are
 * refused because nothing after them could be inspected (SNI-08, SNI-09).
 */
import { isIP } from 'node:net';
import { canonicalIp } from '../core/ip.ts';
import { type CanonicalName, NameError, tryWireName } from '../core/names.ts';

export type HeadReason =
  /** Not an HTTP/1.x request line at all. */
  | 'not_http'
  /** Syntax broken (request line, field line, target). */
  | 'malformed'
  /** A line ended in LF without CR, or a CR without LF. */
  | 'bare_lf'
  /** A field line starts with whitespace (obsolete line folding). */
  | 'obs_fold'
  /** The head is larger than the cap, or has too many fields. */
  | 'too_large'
  /** HTTP version other than 1.0 / 1.1. */
  | 'bad_version'
  /** Content-Length twice, comma-listed, not a number, or together with Transfer-Encoding. */
  | 'bad_length'
  /** Transfer-Encoding other than a single `chunked`. */
  | 'bad_transfer_encoding'
  /** No Host, two Hosts, or a Host that is not an authority. */
  | 'bad_host'
  /** The Host or target names a host that is not a canonical name as sent (tryWireName). */
  | 'name_invalid'
  /** The absolute-form target's authority differs from Host. */
  | 'authority_mismatch'
  /** `Upgrade: h2c` or an HTTP2-Settings field. */
  | 'h2c_upgrade'
  /** The HTTP/2 connection preface (prior knowledge). */
  | 'h2_prior_knowledge';

export interface HeadLimits {
  readonly maxHeadBytes: number;
  readonly maxFields: number;
}

export const DEFAULT_HEAD_LIMITS: HeadLimits = { maxHeadBytes: 16_384, maxFields: 100 };

/** host[:port] after normalisation: a canonical name or a canonical IP literal. */
export interface Authority {
  readonly host: CanonicalName | null;
  /** Set when the host is an IP literal (then `host` is null). */
  readonly ip: string | null;
  /** The explicit port, or null when none was written. */
  readonly port: number | null;
}

export type BodyFraming =
  | { readonly kind: 'none' }
  | { readonly kind: 'length'; readonly length: number }
  | { readonly kind: 'chunked' };

export interface RequestHead {
  readonly method: string;
  readonly target: string;
  readonly version: '1.0' | '1.1';
  /** Field names lowercased, values trimmed, in order. */
  readonly fields: ReadonlyArray<readonly [string, string]>;
  readonly host: Authority;
  /** absolute-form: the target's authority; CONNECT: the authority-form target; else null. */
  readonly targetAuthority: Authority | null;
  /** The target's scheme for absolute-form ('http' | 'https'), else null. */
  readonly scheme: string | null;
  readonly body: BodyFraming;
  /** The Upgrade field's value (e.g. "websocket"), or null. */
  readonly upgrade: string | null;
  /** Bytes of the head including the final empty line. */
  readonly headBytes: number;
}

export type HeadResult =
  | { readonly kind: 'more' }
  | { readonly kind: 'head'; readonly head: RequestHead }
  | { readonly kind: 'error'; readonly reason: HeadReason; readonly detail: string };

const MORE: HeadResult = Object.freeze({ kind: 'more' });
const fail = (reason: HeadReason, detail: string): Failure => ({ kind: 'error', reason, detail });

const H2_PREFACE = 'PRI * HTTP/2.0\r\n';
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Visible ASCII only: no space, no control, no obs-text in a request target.
const TARGET = /^[\x21-\x7e]+$/;
// Field values: visible ASCII, space and tab (obs-text refused: nothing we check needs it).
const VALUE = /^[\x20-\x7e\t]*$/;
// Printable text with bytes above 0x7f (read as latin1): in a Host or a CONNECT target that is
// a name spelled outside ASCII, refused as `name_invalid` like everywhere else, not `malformed`.
const HIGH_TEXT = /^[\x20-\x7e\t\x80-\xff]*$/;
const NOT_ASCII_NAME = 'a byte above 0x7f in the name; a name on the wire is ASCII only';

function isTokenByte(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x30 && c <= 0x39) ||
    "!#$%&'*+-.^_`|~".includes(String.fromCharCode(c))
  );
}

/** Where the head ends (index after the empty line), -1 when not yet, or a reason for bare line ends. */
function findHeadEnd(buf: Uint8Array, limit: number): number | HeadReason {
  const n = Math.min(buf.length, limit);
  let lineStart = 0;
  for (let i = 0; i < n; i++) {
    const c = buf[i]!;
    if (c === 0x0a) return 'bare_lf';
    if (c !== 0x0d) continue;
    if (i + 1 >= buf.length) return -1;
    if (buf[i + 1] !== 0x0a) return 'bare_lf';
    if (i === lineStart) return i + 2;
    i++;
    lineStart = i + 1;
  }
  return -1;
}

type Failure = Extract<HeadResult, { kind: 'error' }>;
const failed = (v: unknown): v is Failure =>
  typeof v === 'object' && v !== null && (v as { kind?: unknown }).kind === 'error';

/**
 * Read the request head at the start of `buf`: where it ends, the request line, the fields,
 * the target's authority, the body's framing and the upgrade check, each a step that may fail
 * with a reason code.
 */
export function parseRequestHead(buf: Uint8Array, limits: HeadLimits = DEFAULT_HEAD_LIMITS): HeadResult {
  const end = headEnd(buf, limits);
  if (typeof end !== 'number') return end;
  const text = Buffer.from(buf.buffer, buf.byteOffset, end).toString('latin1');
  const lines = text.slice(0, -4).split('\r\n');
  const line = requestLine(lines[0]!);
  if (failed(line)) return line;
  if (lines.length - 1 > limits.maxFields) return fail('too_large', `more than ${limits.maxFields} fields`);
  const fields = readFields(lines);
  if (failed(fields)) return fields;
  const all = (n: string) => fields.filter(([k]) => k === n).map(([, v]) => v);
  const hosts = all('host');
  if (hosts.length !== 1)
    return fail('bad_host', hosts.length === 0 ? 'no Host field' : 'more than one Host field');
  const host = parseAuthority(hosts[0]!);
  if (host instanceof NameError) return fail('name_invalid', `Host: ${host.message}`);
  if (typeof host === 'string') return fail('bad_host', host);
  const target = readTarget(line.method, line.target, host);
  if (failed(target)) return target;
  const body = bodyFraming(all('content-length'), all('transfer-encoding'), line.version);
  if (failed(body)) return body;
  const upgrade = checkUpgrade(all('http2-settings').length > 0, all('upgrade'));
  if (failed(upgrade)) return upgrade;
  return {
    kind: 'head',
    head: { ...line, fields, host, ...target, body, upgrade, headBytes: end },
  };
}

/**
 * Where the head ends (the index after its empty line), or the result when that is not known
 * yet: more bytes needed, or bytes that can never become an HTTP/1.x head (the HTTP/2 preface, a
 * first byte or request line that no method starts, bare LF, too large).
 */
function headEnd(buf: Uint8Array, limits: HeadLimits): number | HeadResult {
  if (buf.length === 0) return MORE;
  // The HTTP/2 preface, as early as its first bytes prove it.
  const pre = Buffer.from(buf.buffer, buf.byteOffset, Math.min(buf.length, H2_PREFACE.length)).toString(
    'latin1',
  );
  if (H2_PREFACE.startsWith(pre) && pre.length >= 4) {
    return pre.length === H2_PREFACE.length
      ? fail('h2_prior_knowledge', 'the HTTP/2 connection preface')
      : MORE;
  }
  if (!isTokenByte(buf[0]!))
    return fail('not_http', `first byte 0x${buf[0]!.toString(16)} does not start a method`);
  const end = findHeadEnd(buf, limits.maxHeadBytes);
  if (typeof end === 'string') return fail(end, 'a line does not end in CRLF');
  if (end >= 0) return end;
  if (buf.length >= limits.maxHeadBytes)
    return fail('too_large', `no end of head within ${limits.maxHeadBytes} bytes`);
  // Fail early on a request line that cannot become valid.
  const firstLine = Buffer.from(buf.buffer, buf.byteOffset, buf.length).toString('latin1');
  const sp = firstLine.indexOf(' ');
  if (sp < 0 ? !TOKEN.test(firstLine) : !TOKEN.test(firstLine.slice(0, sp)))
    return fail('not_http', 'the request line does not start with a method');
  return MORE;
}

/** "METHOD target HTTP/1.x". */
function requestLine(line: string): Pick<RequestHead, 'method' | 'target' | 'version'> | Failure {
  const m = /^([^ ]+) ([^ ]+) HTTP\/(\d)\.(\d)$/.exec(line);
  if (!m) return fail('malformed', 'bad request line');
  const method = m[1]!;
  const target = m[2]!;
  if (!TOKEN.test(method)) return fail('malformed', 'bad method');
  if (m[3] !== '1' || (m[4] !== '0' && m[4] !== '1'))
    return fail('bad_version', `HTTP/${m[3]}.${m[4]} is not HTTP/1.0 or 1.1`);
  if (!TARGET.test(target)) {
    if (method === 'CONNECT' && HIGH_TEXT.test(target) && !target.includes(' '))
      return fail('name_invalid', `CONNECT target: ${NOT_ASCII_NAME}`);
    return fail('malformed', 'bad request target');
  }
  return { method, target, version: m[4] === '1' ? '1.1' : '1.0' };
}

/** The field lines: names lowercased, values trimmed; no folding, no control bytes. */
function readFields(lines: readonly string[]): Array<readonly [string, string]> | Failure {
  const fields: Array<readonly [string, string]> = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.startsWith(' ') || line.startsWith('\t')) return fail('obs_fold', 'obsolete line folding');
    const colon = line.indexOf(':');
    if (colon <= 0) return fail('malformed', 'a field line without a name');
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) return fail('malformed', `bad field name ${JSON.stringify(name.slice(0, 40))}`);
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (!VALUE.test(value)) {
      if (name.toLowerCase() === 'host' && HIGH_TEXT.test(value))
        return fail('name_invalid', `Host: ${NOT_ASCII_NAME}`);
      return fail('malformed', `field ${name} holds a control byte`);
    }
    fields.push([name.toLowerCase(), value]);
  }
  return fields;
}

/** The target's authority and scheme: CONNECT's authority-form, or absolute-form (which must match Host). */
function readTarget(
  method: string,
  target: string,
  host: Authority,
): Pick<RequestHead, 'targetAuthority' | 'scheme'> | Failure {
  if (method === 'CONNECT') {
    const a = parseAuthority(target);
    if (a instanceof NameError) return fail('name_invalid', `CONNECT target: ${a.message}`);
    if (typeof a === 'string') return fail('malformed', `CONNECT target: ${a}`);
    if (a.port === null) return fail('malformed', 'CONNECT target without a port');
    return { targetAuthority: a, scheme: null };
  }
  if (target.startsWith('/') || (target === '*' && method === 'OPTIONS')) {
    return { targetAuthority: null, scheme: null };
  }
  const u = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([/?#].*)?$/.exec(target);
  if (!u) return fail('malformed', 'the target is neither origin-form nor absolute-form');
  const scheme = u[1]!.toLowerCase();
  if (scheme !== 'http' && scheme !== 'https') return fail('malformed', `scheme ${scheme} is not http(s)`);
  if (u[2]!.includes('@')) return fail('malformed', 'userinfo in the target');
  const a = parseAuthority(u[2]!);
  if (a instanceof NameError) return fail('name_invalid', `target authority: ${a.message}`);
  if (typeof a === 'string') return fail('malformed', `target authority: ${a}`);
  if (!sameAuthority(a, host, scheme === 'https' ? 443 : 80))
    return fail('authority_mismatch', 'the absolute-form authority differs from Host');
  return { targetAuthority: a, scheme };
}

/** How the body is framed: one Content-Length, or one chunked Transfer-Encoding (HTTP/1.1), never both. */
function bodyFraming(
  lengths: string[],
  te: string[],
  version: RequestHead['version'],
): BodyFraming | Failure {
  if (te.length > 0) {
    if (lengths.length > 0) return fail('bad_length', 'Content-Length together with Transfer-Encoding');
    if (te.length > 1 || te[0]!.toLowerCase() !== 'chunked' || version === '1.0')
      return fail('bad_transfer_encoding', 'Transfer-Encoding other than one chunked');
    return { kind: 'chunked' };
  }
  if (lengths.length === 0) return { kind: 'none' };
  if (lengths.length > 1) return fail('bad_length', 'more than one Content-Length');
  if (!/^[0-9]{1,15}$/.test(lengths[0]!)) return fail('bad_length', 'Content-Length is not a number');
  const n = Number(lengths[0]);
  return n === 0 ? { kind: 'none' } : { kind: 'length', length: n };
}

/** The Upgrade field (one at most), refusing upgrades to HTTP/2 that could not be inspected. */
function checkUpgrade(h2Settings: boolean, upgrades: string[]): string | null | Failure {
  if (h2Settings) return fail('h2c_upgrade', 'an HTTP2-Settings field (h2c upgrade)');
  if (upgrades.length > 1) return fail('malformed', 'more than one Upgrade field');
  const upgrade = upgrades[0] ?? null;
  if (upgrade === null) return null;
  for (const p of upgrade.split(',')) {
    const proto = (p.trim().split('/')[0] ?? '').toLowerCase();
    if (proto === 'h2c' || proto === 'h2')
      return fail('h2c_upgrade', `Upgrade: ${proto} cannot be inspected`);
  }
  return upgrade;
}

/**
 * host[:port] with the host a name (read as sent by tryWireName: ASCII, case folded, one
 * trailing dot) or an IP literal (IPv6 in brackets). Returns the NameError when the host is no
 * canonical name, a message when the authority is malformed otherwise.
 */
export function parseAuthority(text: string): Authority | NameError | string {
  if (text.length === 0 || text.length > 300) return 'empty or overlong authority';
  let hostText: string;
  let portText: string | null = null;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return 'unclosed [';
    hostText = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) return 'junk after ]';
      portText = rest.slice(1);
    }
    if (isIP(hostText) !== 6) return 'not an IPv6 literal in brackets';
  } else {
    const colon = text.lastIndexOf(':');
    if (colon >= 0) {
      hostText = text.slice(0, colon);
      portText = text.slice(colon + 1);
    } else hostText = text;
    if (hostText.includes(':')) return 'an IPv6 literal must be in brackets';
  }
  let port: number | null = null;
  if (portText !== null) {
    if (!/^[0-9]{1,5}$/.test(portText)) return 'bad port';
    port = Number(portText);
    if (port < 1 || port > 65535) return 'port out of range';
  }
  const bare = hostText.endsWith('.') ? hostText.slice(0, -1) : hostText;
  if (isIP(bare) !== 0) return { host: null, ip: canonicalIp(bare), port };
  const name = tryWireName(hostText);
  if (typeof name !== 'string') {
    if (name.rule === 'numeric-tld' || name.rule === 'ip-literal')
      return 'an IP address in a non-canonical form';
    return name;
  }
  return { host: name, ip: null, port };
}

/** Do two authorities name the same host and effective port? */
export function sameAuthority(a: Authority, b: Authority, defaultPort: number): boolean {
  return a.host === b.host && a.ip === b.ip && (a.port ?? defaultPort) === (b.port ?? defaultPort);
}
