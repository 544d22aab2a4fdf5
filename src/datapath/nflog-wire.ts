/**
 * NFLOG messages as the kernel sends them (nfnetlink_log) and as tcpdump writes them (pcap
 * link type DLT_NFLOG): the packets nft `log group N` rules copy to user space, with the rule's
 * prefix. Pure parsing of untrusted bytes: every length is checked against what is left, a
 * malformed message is counted and skipped, and nothing here throws on any input.
 *
 * Layouts (include/uapi/linux/netfilter/nfnetlink_log.h, netlink(7)):
 *   netlink datagram  = nlmsghdr { u32 len, u16 type, u16 flags, u32 seq, u32 pid } ... (host order)
 *   NFULNL_MSG_PACKET = type (NFNL_SUBSYS_ULOG << 8) | 0, then
 *                       nfgenmsg { u8 family, u8 version, be16 group } and attributes
 *   attribute         = { u16 len, u16 type, value, padding to 4 }   (host order, as nlattr)
 *   DLT_NFLOG record  = nflog_hdr { u8 family, u8 version, be16 group } and the same attributes
 */

import { ipv4Text, ipv6Text } from '../core/ip.ts';

export const NFNL_SUBSYS_ULOG = 4;
export const NFULNL_MSG_PACKET = 0;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;

/** Attribute types (enum nfulnl_attr_type). */
export const NFULA = {
  PACKET_HDR: 1,
  MARK: 2,
  TIMESTAMP: 3,
  IFINDEX_INDEV: 4,
  IFINDEX_OUTDEV: 5,
  PAYLOAD: 9,
  PREFIX: 10,
  UID: 11,
  GID: 14,
} as const;

/** One logged packet. */
export interface NflogPacket {
  readonly group: number;
  /** The rule's `prefix`, without the trailing NUL. */
  readonly prefix: string;
  /** When the kernel logged it (ms since the epoch), if it said. */
  readonly timestampMs: number | null;
  readonly indev: number | null;
  readonly outdev: number | null;
  /** The packet from its network header on, cut to the rule's snaplen. */
  readonly payload: Uint8Array;
}

export interface ParseResult {
  readonly packets: NflogPacket[];
  /** Messages that were malformed and skipped. */
  readonly malformed: number;
  /** Netlink error messages (acks of config commands carry errno 0 and are not counted). */
  readonly errors: number[];
}

const ATTR_TYPE_MASK = 0x3fff;
/** The longest prefix nft allows is 127 characters; anything longer is cut. */
const MAX_PREFIX = 128;

const align4 = (n: number) => (n + 3) & ~3;

/** Attributes from `start` to `end` of `buf` into a packet; null when they are malformed. */
function parseAttributes(
  buf: Uint8Array,
  view: DataView,
  start: number,
  end: number,
  group: number,
): NflogPacket | null {
  let prefix = '';
  let timestampMs: number | null = null;
  let indev: number | null = null;
  let outdev: number | null = null;
  let payload: Uint8Array | null = null;
  let at = start;
  while (at + 4 <= end) {
    const len = view.getUint16(at, true);
    const type = view.getUint16(at + 2, true) & ATTR_TYPE_MASK;
    if (len < 4 || at + len > end) return null;
    const v = at + 4;
    const vlen = len - 4;
    switch (type) {
      case NFULA.PREFIX: {
        let n = 0;
        while (n < vlen && n < MAX_PREFIX && buf[v + n] !== 0) n++;
        prefix = Buffer.from(buf.buffer, buf.byteOffset + v, n).toString('latin1');
        break;
      }
      case NFULA.TIMESTAMP:
        if (vlen >= 16) {
          const sec = view.getBigUint64(v, false);
          const usec = view.getBigUint64(v + 8, false);
          const ms = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
          timestampMs = Number.isSafeInteger(ms) ? ms : null;
        }
        break;
      case NFULA.IFINDEX_INDEV:
        if (vlen >= 4) indev = view.getUint32(v, false);
        break;
      case NFULA.IFINDEX_OUTDEV:
        if (vlen >= 4) outdev = view.getUint32(v, false);
        break;
      case NFULA.PAYLOAD:
        payload = buf.subarray(v, v + vlen);
        break;
      default:
        break;
    }
    at += align4(len);
  }
  if (payload === null) return null;
  return { group, prefix, timestampMs, indev, outdev, payload };
}

/** A datagram read from an NFLOG netlink socket: zero or more netlink messages. */
export function parseNetlink(buf: Uint8Array): ParseResult {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const packets: NflogPacket[] = [];
  const errors: number[] = [];
  let malformed = 0;
  let at = 0;
  while (at + 16 <= buf.length) {
    const len = view.getUint32(at, true);
    const type = view.getUint16(at + 4, true);
    if (len < 16 || at + len > buf.length) {
      malformed++;
      break;
    }
    if (type === NLMSG_ERROR) {
      if (len >= 20) {
        const errno = -view.getInt32(at + 16, true);
        if (errno !== 0) errors.push(errno);
      } else malformed++;
    } else if (type === ((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET)) {
      if (len < 20) malformed++;
      else {
        const group = view.getUint16(at + 18, false);
        const p = parseAttributes(buf, view, at + 20, at + len, group);
        if (p) packets.push(p);
        else malformed++;
      }
    } else if (type === NLMSG_DONE) {
      // end of a multipart batch
    }
    at += align4(len);
  }
  return { packets, malformed, errors };
}

/** One DLT_NFLOG record's data (from a pcap stream); null when malformed. */
export function parseNflogRecord(data: Uint8Array): NflogPacket | null {
  if (data.length < 4) return null;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  return parseAttributes(data, view, 4, data.length, view.getUint16(2, false));
}

/** The 5-tuple of a logged packet (network header on). */
export interface PacketTuple {
  readonly family: 4 | 6;
  readonly src: string;
  readonly dst: string;
  /** tcp, udp, icmp, icmpv6, sctp, udplite, or the protocol number as text. */
  readonly proto: string;
  readonly sport: number | null;
  readonly dport: number | null;
}

const PROTOCOLS: Readonly<Record<number, string>> = {
  1: 'icmp',
  6: 'tcp',
  17: 'udp',
  58: 'icmpv6',
  132: 'sctp',
  136: 'udplite',
};
const WITH_PORTS = new Set([6, 17, 132, 136]);
/** IPv6 extension headers walked to reach the transport header (bounded). */
const IPV6_EXTENSIONS = new Set([0, 43, 60, 51, 44]);

function ports(b: Uint8Array, at: number, proto: number): { sport: number | null; dport: number | null } {
  if (!WITH_PORTS.has(proto) || at + 4 > b.length) return { sport: null, dport: null };
  return {
    sport: ((b[at] as number) << 8) | (b[at + 1] as number),
    dport: ((b[at + 2] as number) << 8) | (b[at + 3] as number),
  };
}

/** The addresses, protocol and ports of an IP packet; null when it is not a readable one. */
export function packetTuple(b: Uint8Array): PacketTuple | null {
  if (b.length < 1) return null;
  const version = (b[0] as number) >> 4;
  if (version === 4) {
    if (b.length < 20) return null;
    const ihl = ((b[0] as number) & 0x0f) * 4;
    if (ihl < 20 || ihl > b.length) return null;
    const proto = b[9] as number;
    const fragOffset = (((b[6] as number) & 0x1f) << 8) | (b[7] as number);
    const src = ipv4Text(b, 12);
    const dst = ipv4Text(b, 16);
    const p = fragOffset === 0 ? ports(b, ihl, proto) : { sport: null, dport: null };
    return { family: 4, src, dst, proto: PROTOCOLS[proto] ?? String(proto), ...p };
  }
  if (version === 6) {
    if (b.length < 40) return null;
    let next = b[6] as number;
    let at = 40;
    let fragmented = false;
    for (let hops = 0; hops < 8 && IPV6_EXTENSIONS.has(next); hops++) {
      if (at + 8 > b.length) break;
      const following = b[at] as number;
      let len: number;
      if (next === 44) {
        fragmented = ((((b[at + 2] as number) << 8) | (b[at + 3] as number)) & 0xfff8) !== 0;
        len = 8;
      } else if (next === 51) len = ((b[at + 1] as number) + 2) * 4;
      else len = ((b[at + 1] as number) + 1) * 8;
      next = following;
      at += len;
    }
    const p = fragmented || IPV6_EXTENSIONS.has(next) ? { sport: null, dport: null } : ports(b, at, next);
    return {
      family: 6,
      src: ipv6Text(b, 8),
      dst: ipv6Text(b, 24),
      proto: PROTOCOLS[next] ?? String(next),
      ...p,
    };
  }
  return null;
}

/**
 * Reads a pcap stream (tcpdump -w -) record by record: feed it chunks, it returns the DLT_NFLOG
 * records completed so far. Bounded: a record longer than `maxRecord` ends the stream with an
 * error (tcpdump never writes one; garbage would).
 */
export class PcapReader {
  #buf: Buffer = Buffer.alloc(0);
  #littleEndian: boolean | null = null;
  #linkType: number | null = null;
  readonly #maxRecord: number;

  constructor(maxRecord = 256 * 1024) {
    this.#maxRecord = maxRecord;
  }

  get linkType(): number | null {
    return this.#linkType;
  }

  /** Complete records' data; throws on a stream that is not pcap or has an oversized record. */
  push(chunk: Uint8Array): Uint8Array[] {
    this.#buf = this.#buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.#buf, chunk]);
    const out: Uint8Array[] = [];
    let at = 0;
    if (this.#littleEndian === null) {
      if (this.#buf.length < 24) return out;
      const magic = this.#buf.readUInt32LE(0);
      if (magic === 0xa1b2c3d4 || magic === 0xa1b23c4d) this.#littleEndian = true;
      else if (magic === 0xd4c3b2a1 || magic === 0x4d3cb2a1) this.#littleEndian = false;
      else throw new Error('not a pcap stream');
      this.#linkType = this.#littleEndian ? this.#buf.readUInt32LE(20) : this.#buf.readUInt32BE(20);
      at = 24;
    }
    const le = this.#littleEndian;
    while (at + 16 <= this.#buf.length) {
      const caplen = le ? this.#buf.readUInt32LE(at + 8) : this.#buf.readUInt32BE(at + 8);
      if (caplen > this.#maxRecord) throw new Error(`pcap record of ${caplen} bytes`);
      if (at + 16 + caplen > this.#buf.length) break;
      out.push(this.#buf.subarray(at + 16, at + 16 + caplen));
      at += 16 + caplen;
    }
    this.#buf = this.#buf.subarray(at);
    return out;
  }
}

/** pcap's link type for NFLOG captures. */
export const DLT_NFLOG = 239;
