/**
 * The DNS wire format, read with strict bounds. Every read checks the message end; names are
 * read with a compression rule that makes loops impossible (each pointer must land strictly
 * before the segment it was read from, RFC 9267 section 2), at most 255 octets and labels of at
 * most 63 (RFC 1035 section 3.1). A violation throws a WireError with a stable reason; nothing
 * here allocates more than the message it reads.
 *
 * Names come out as lowercase presentation text without the trailing dot; a byte outside
 * [a-z0-9_-] is written as \DDD so that one label holding a dot can never equal two labels.
 */
import { ErrorCode, NamegateError } from '../core/errors.ts';

// Address text of wire bytes lives in core (the datapath's NFLOG reader reads it too).
export { ipv4Text, ipv6Text } from '../core/ip.ts';

export const HEADER_BYTES = 12;
/** The largest DNS message (TCP length prefix is 16 bits). */
export const MAX_MESSAGE_BYTES = 65535;
export const MAX_NAME_WIRE_OCTETS = 255;
export const MAX_LABEL_OCTETS = 63;

export const RrType = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  NULL: 10,
  PTR: 12,
  HINFO: 13,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  DNAME: 39,
  OPT: 41,
  SVCB: 64,
  HTTPS: 65,
  IXFR: 251,
  AXFR: 252,
  MAILB: 253,
  MAILA: 254,
  ANY: 255,
} as const;

export const RrClass = { IN: 1, CH: 3, HS: 4, NONE: 254, ANY: 255 } as const;

export const Rcode = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
} as const;
export type Rcode = (typeof Rcode)[keyof typeof Rcode];

const RCODE_NAMES: Record<number, string> = {
  0: 'NOERROR',
  1: 'FORMERR',
  2: 'SERVFAIL',
  3: 'NXDOMAIN',
  4: 'NOTIMP',
  5: 'REFUSED',
};

export function rcodeName(rcode: number): string {
  return RCODE_NAMES[rcode] ?? `RCODE${rcode}`;
}

const TYPE_NAMES: Record<number, string> = {};
for (const [name, value] of Object.entries(RrType)) TYPE_NAMES[value] = name;

/** "A", "AAAA", ... or "TYPE123" (RFC 3597) for types without a mnemonic here. */
export function typeName(type: number): string {
  return TYPE_NAMES[type] ?? `TYPE${type}`;
}

/** Header flag bits (second 16-bit word). */
export const Flag = {
  QR: 0x8000,
  AA: 0x0400,
  TC: 0x0200,
  RD: 0x0100,
  RA: 0x0080,
  AD: 0x0020,
  CD: 0x0010,
} as const;

export type WireReason =
  | 'truncated'
  | 'pointer-into-header'
  | 'pointer-not-backward'
  | 'bad-label-type'
  | 'name-too-long'
  | 'bad-rdata'
  | 'trailing-bytes'
  | 'too-large';

export class WireError extends NamegateError {
  readonly reason: WireReason;
  constructor(reason: WireReason, detail: string) {
    super(ErrorCode.DnsMalformed, `malformed DNS message: ${detail}`);
    this.name = 'WireError';
    this.reason = reason;
  }
}

function fail(reason: WireReason, detail: string): never {
  throw new WireError(reason, detail);
}

export interface Header {
  readonly id: number;
  readonly flags: number;
  readonly qdcount: number;
  readonly ancount: number;
  readonly nscount: number;
  readonly arcount: number;
}

export function readHeader(buf: Uint8Array): Header {
  if (buf.length < HEADER_BYTES) fail('truncated', `${buf.length} bytes is shorter than a header`);
  return {
    id: (buf[0]! << 8) | buf[1]!,
    flags: (buf[2]! << 8) | buf[3]!,
    qdcount: (buf[4]! << 8) | buf[5]!,
    ancount: (buf[6]! << 8) | buf[7]!,
    nscount: (buf[8]! << 8) | buf[9]!,
    arcount: (buf[10]! << 8) | buf[11]!,
  };
}

export function opcodeOf(flags: number): number {
  return (flags >> 11) & 0xf;
}

export function rcodeOf(flags: number): number {
  return flags & 0xf;
}

// Scratch space for name text: 255 wire octets become at most 4 characters each (\DDD).
const nameOut = Buffer.allocUnsafe(MAX_NAME_WIRE_OCTETS * 4);

/**
 * A cursor over one message. `end` bounds every read; names may point anywhere before their own
 * segment within [0, end), as compression allows.
 */
export class WireReader {
  readonly buf: Uint8Array;
  readonly end: number;
  pos: number;
  /** Whether the last name read used a compression pointer. */
  compressed = false;

  constructor(buf: Uint8Array, pos = 0, end = buf.length) {
    this.buf = buf;
    this.pos = pos;
    this.end = end;
  }

  need(n: number): void {
    if (this.pos + n > this.end) fail('truncated', `needs ${n} bytes at offset ${this.pos}`);
  }

  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }

  u16(): number {
    this.need(2);
    const b = this.buf;
    const v = (b[this.pos]! << 8) | b[this.pos + 1]!;
    this.pos += 2;
    return v;
  }

  u32(): number {
    this.need(4);
    const b = this.buf;
    const p = this.pos;
    this.pos += 4;
    return ((b[p]! << 24) >>> 0) + ((b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!);
  }

  skip(n: number): void {
    this.need(n);
    this.pos += n;
  }

  /** Read a (possibly compressed) name; the cursor moves past its in-place part. */
  name(): string {
    const buf = this.buf;
    const end = this.end;
    let pos = this.pos;
    // Lowest offset read so far: a pointer must land strictly before it, so every jump goes
    // backwards and no sequence of pointers can revisit a byte.
    let segmentStart = pos;
    let after = -1;
    let jumped = false;
    let wire = 1;
    let n = 0;
    for (;;) {
      if (pos >= end) fail('truncated', 'name runs past the end of the message');
      const len = buf[pos]!;
      if (len === 0) {
        if (after < 0) after = pos + 1;
        break;
      }
      const tag = len & 0xc0;
      if (tag === 0xc0) {
        if (pos + 1 >= end) fail('truncated', 'compression pointer cut off');
        const target = ((len & 0x3f) << 8) | buf[pos + 1]!;
        if (after < 0) after = pos + 2;
        if (target < HEADER_BYTES) fail('pointer-into-header', `pointer to offset ${target}`);
        if (target >= segmentStart) {
          fail('pointer-not-backward', `pointer at ${pos} to ${target} does not go backwards`);
        }
        segmentStart = target;
        pos = target;
        jumped = true;
        continue;
      }
      if (tag !== 0) fail('bad-label-type', `label type 0x${tag.toString(16)} at offset ${pos}`);
      wire += len + 1;
      if (wire > MAX_NAME_WIRE_OCTETS)
        fail('name-too-long', `name longer than ${MAX_NAME_WIRE_OCTETS} octets`);
      if (pos + 1 + len > end) fail('truncated', 'label runs past the end of the message');
      if (n > 0) nameOut[n++] = 0x2e;
      const stop = pos + 1 + len;
      for (let i = pos + 1; i < stop; i++) {
        let c = buf[i]!;
        if (c >= 0x41 && c <= 0x5a) c += 0x20;
        if ((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f) {
          nameOut[n++] = c;
        } else {
          nameOut[n++] = 0x5c;
          nameOut[n++] = 0x30 + Math.floor(c / 100);
          nameOut[n++] = 0x30 + (Math.floor(c / 10) % 10);
          nameOut[n++] = 0x30 + (c % 10);
        }
      }
      pos = stop;
    }
    this.pos = after;
    this.compressed = jumped;
    return n === 0 ? '' : nameOut.toString('latin1', 0, n);
  }
}

/**
 * Does the name at `pos` read, as WireReader.name() would read it, as `text`? The same bounds
 * and compression rules apply (a malformed name throws the same WireError), but no string is
 * built: an upstream reply's question is compared with the one asked on every reply. Returns
 * the offset after the name (as WireReader.name() leaves it) when it matches, -1 at the first
 * difference.
 */
export function matchName(buf: Uint8Array, pos: number, end: number, text: string): number {
  let segmentStart = pos;
  let after = -1;
  let wire = 1;
  let n = 0;
  for (;;) {
    if (pos >= end) fail('truncated', 'name runs past the end of the message');
    const len = buf[pos]!;
    if (len === 0) {
      if (n !== text.length) return -1;
      return after < 0 ? pos + 1 : after;
    }
    const tag = len & 0xc0;
    if (tag === 0xc0) {
      if (pos + 1 >= end) fail('truncated', 'compression pointer cut off');
      const target = ((len & 0x3f) << 8) | buf[pos + 1]!;
      if (after < 0) after = pos + 2;
      if (target < HEADER_BYTES) fail('pointer-into-header', `pointer to offset ${target}`);
      if (target >= segmentStart) {
        fail('pointer-not-backward', `pointer at ${pos} to ${target} does not go backwards`);
      }
      segmentStart = target;
      pos = target;
      continue;
    }
    if (tag !== 0) fail('bad-label-type', `label type 0x${tag.toString(16)} at offset ${pos}`);
    wire += len + 1;
    if (wire > MAX_NAME_WIRE_OCTETS) fail('name-too-long', `name longer than ${MAX_NAME_WIRE_OCTETS} octets`);
    if (pos + 1 + len > end) fail('truncated', 'label runs past the end of the message');
    if (n > 0) {
      if (text.charCodeAt(n) !== 0x2e) return -1;
      n++;
    }
    const stop = pos + 1 + len;
    for (let i = pos + 1; i < stop; i++) {
      let c = buf[i]!;
      if (c >= 0x41 && c <= 0x5a) c += 0x20;
      if ((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f) {
        if (text.charCodeAt(n) !== c) return -1;
        n++;
      } else {
        if (
          text.charCodeAt(n) !== 0x5c ||
          text.charCodeAt(n + 1) !== 0x30 + Math.floor(c / 100) ||
          text.charCodeAt(n + 2) !== 0x30 + (Math.floor(c / 10) % 10) ||
          text.charCodeAt(n + 3) !== 0x30 + (c % 10)
        ) {
          return -1;
        }
        n += 4;
      }
    }
    pos = stop;
  }
}

export interface Question {
  /** Lowercase presentation text without the trailing dot; '' is the root. */
  readonly name: string;
  readonly type: number;
  readonly class: number;
}

export function readQuestion(r: WireReader): Question {
  const name = r.name();
  const type = r.u16();
  const cls = r.u16();
  return { name, type, class: cls };
}

/** The fixed part of a resource record, with the bounds of its rdata. */
export interface RrHead {
  name: string;
  type: number;
  class: number;
  /** RFC 2181 section 8: a TTL with the top bit set is read as 0. */
  ttl: number;
  rdStart: number;
  rdEnd: number;
}

/** Read a record's owner and fixed fields, leaving the cursor after its rdata. */
export function readRrHead(r: WireReader): RrHead {
  const name = r.name();
  const type = r.u16();
  const cls = r.u16();
  const rawTtl = r.u32();
  const rdlength = r.u16();
  const rdStart = r.pos;
  r.skip(rdlength);
  return {
    name,
    type,
    class: cls,
    ttl: rawTtl > 0x7fffffff ? 0 : rawTtl,
    rdStart,
    rdEnd: rdStart + rdlength,
  };
}

/** Read a name that is the whole rdata (CNAME, DNAME), checking it ends exactly there. */
export function readRdataName(buf: Uint8Array, rr: RrHead, messageEnd: number): string {
  const r = new WireReader(buf, rr.rdStart, messageEnd);
  const name = r.name();
  if (r.pos !== rr.rdEnd) fail('bad-rdata', `${typeName(rr.type)} rdata length does not match its name`);
  return name;
}

/** Encode presentation text (as WireReader.name produces, no escapes) to wire labels. */
export function encodeName(name: string): Buffer {
  if (name === '') return Buffer.from([0]);
  const labels = name.split('.');
  const out = Buffer.allocUnsafe(name.length + 2);
  let at = 0;
  for (const label of labels) {
    out[at++] = label.length;
    out.write(label, at, 'latin1');
    at += label.length;
  }
  out[at++] = 0;
  return out.subarray(0, at);
}
