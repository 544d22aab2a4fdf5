/**
 * Messages the proxy reads and writes: validating a client's query before anything else looks
 * at it, matching an upstream reply to the query it answers, and the few replies namegate
 * builds itself (errors, policy refusals with an Extended DNS Error, truncation). Upstream
 * answers are never re-encoded: the proxy relays their bytes with only the ID restored.
 */
import {
  Flag,
  HEADER_BYTES,
  matchName,
  type Question,
  Rcode,
  RrClass,
  RrType,
  readQuestion,
  readRrHead,
  WireError,
  WireReader,
} from './wire.ts';

/** Our UDP payload size in replies we build (DNS flag day 2020). */
export const OUR_EDNS_UDP_SIZE = 1232;
/** A client without EDNS accepts 512 bytes over UDP (RFC 1035 section 4.2.1). */
export const CLASSIC_UDP_SIZE = 512;
/** RFC 8914 option code. */
export const EDE_OPTION = 15;

/** RFC 8914 info codes used here. */
export const EdeCode = {
  Other: 0,
  Blocked: 15,
  Prohibited: 18,
  NotReady: 14,
  NoReachableAuthority: 22,
} as const;

export interface Ede {
  readonly code: number;
  readonly text: string;
}

export interface ParsedQuery {
  readonly id: number;
  readonly flags: number;
  readonly question: Question;
  /** The question's bytes are [12, questionEnd) of the query; copied into replies we build. */
  readonly questionEnd: number;
  /** The client sent an OPT record (EDNS); replies we build then carry one too. */
  readonly edns: boolean;
  /** What the client accepts over UDP: its EDNS payload size (at least 512), else 512. */
  readonly udpLimit: number;
}

/** Why a query is not served normally; stable, used in logs and metric labels. */
export type QueryProblem =
  | 'short'
  | 'too_large'
  | 'response'
  | 'opcode'
  | 'qdcount'
  | 'sections'
  | 'malformed'
  | 'class'
  | 'qtype';

export type QueryCheck =
  | { readonly ok: true; readonly query: ParsedQuery }
  | {
      readonly ok: false;
      readonly problem: QueryProblem;
      /** The reply to send, or null to drop the message. */
      readonly reply: Buffer | null;
      readonly rcode: number | null;
      /** The question when it could be read (for the flow log). */
      readonly question: Question | null;
    };

export interface QueryRules {
  readonly maxQueryBytes: number;
  /** Query types refused for every source (ANY, AXFR, IXFR, ...). */
  readonly refusedTypes: ReadonlySet<number>;
}

/**
 * Validate a client's message. Responses (QR=1) and messages too short to carry an ID are
 * dropped without a reply: answering a response could start a loop between two servers.
 */
export function checkQuery(msg: Uint8Array, rules: QueryRules): QueryCheck {
  if (msg.length < HEADER_BYTES) return dropped('short');
  const id = (msg[0]! << 8) | msg[1]!;
  const flags = (msg[2]! << 8) | msg[3]!;
  if ((flags & Flag.QR) !== 0) return dropped('response');
  // The reply bases below are built only on the error paths: a valid query allocates nothing
  // but its question and the result.
  if (msg.length > rules.maxQueryBytes)
    return refuse('too_large', basis(id, flags, 0, false), msg, Rcode.FORMERR, null);
  const opcode = (flags >> 11) & 0xf;
  if (opcode !== 0) return refuse('opcode', basis(id, flags, 0, false), msg, Rcode.REFUSED, null);
  const qdcount = (msg[4]! << 8) | msg[5]!;
  const ancount = (msg[6]! << 8) | msg[7]!;
  const nscount = (msg[8]! << 8) | msg[9]!;
  const arcount = (msg[10]! << 8) | msg[11]!;
  if (qdcount !== 1) return refuse('qdcount', basis(id, flags, 0, false), msg, Rcode.FORMERR, null);

  const r = new WireReader(msg, HEADER_BYTES);
  let question: Question;
  try {
    question = readQuestion(r);
  } catch {
    return refuse('malformed', basis(id, flags, 0, false), msg, Rcode.FORMERR, null);
  }
  const questionEnd = r.pos;
  // A query carries a question and at most an OPT record; anything else (prerequisites,
  // updates, TSIG) is not something a stub resolver sends and is not forwarded.
  if (ancount !== 0 || nscount !== 0 || arcount > 1) {
    return refuse('sections', basis(id, flags, questionEnd, false), msg, Rcode.FORMERR, question);
  }
  let edns = false;
  let udpLimit = CLASSIC_UDP_SIZE;
  if (arcount === 1) {
    try {
      const rr = readRrHead(r);
      if (rr.type !== RrType.OPT || rr.name !== '') {
        return refuse('sections', basis(id, flags, questionEnd, false), msg, Rcode.FORMERR, question);
      }
      edns = true;
      udpLimit = Math.max(CLASSIC_UDP_SIZE, rr.class);
    } catch {
      return refuse('malformed', basis(id, flags, questionEnd, false), msg, Rcode.FORMERR, question);
    }
  }
  if (r.pos !== msg.length) {
    return refuse('malformed', basis(id, flags, questionEnd, edns), msg, Rcode.FORMERR, question);
  }
  if (question.class !== RrClass.IN) {
    return refuse('class', basis(id, flags, questionEnd, edns), msg, Rcode.REFUSED, question);
  }
  if (rules.refusedTypes.has(question.type)) {
    return refuse('qtype', basis(id, flags, questionEnd, edns), msg, Rcode.REFUSED, question);
  }
  return { ok: true, query: { id, flags, question, questionEnd, edns, udpLimit } };
}

function basis(id: number, flags: number, questionEnd: number, edns: boolean): ReplyBasis {
  return { id, flags, questionEnd, edns };
}

function dropped(problem: QueryProblem): QueryCheck {
  return { ok: false, problem, reply: null, rcode: null, question: null };
}

function refuse(
  problem: QueryProblem,
  basis: ReplyBasis,
  msg: Uint8Array,
  rcode: number,
  question: Question | null,
): QueryCheck {
  return { ok: false, problem, reply: buildReply(basis, msg, rcode, null), rcode, question };
}

/** What a reply we build copies from its query. */
export interface ReplyBasis {
  readonly id: number;
  readonly flags: number;
  /** 0 when the question could not be read: the reply then has none. */
  readonly questionEnd: number;
  readonly edns: boolean;
}

/**
 * A reply with no records: header (ID, opcode, RD and CD copied; QR and RA set), the query's
 * question, and an OPT record (with an Extended DNS Error when given) if the query had EDNS.
 */
export function buildReply(
  basis: ReplyBasis,
  query: Uint8Array,
  rcode: number,
  ede: Ede | null,
  extraFlags = 0,
): Buffer {
  const qlen = basis.questionEnd > 0 ? basis.questionEnd - HEADER_BYTES : 0;
  const edeText = ede ? Buffer.from(ede.text, 'utf8') : null;
  const optLen = basis.edns ? 11 + (edeText ? 6 + edeText.length : 0) : 0;
  const out = Buffer.alloc(HEADER_BYTES + qlen + optLen);
  out.writeUInt16BE(basis.id, 0);
  const flags =
    Flag.QR |
    (basis.flags & (0xf << 11)) |
    (basis.flags & (Flag.RD | Flag.CD)) |
    Flag.RA |
    extraFlags |
    (rcode & 0xf);
  out.writeUInt16BE(flags, 2);
  out.writeUInt16BE(qlen > 0 ? 1 : 0, 4);
  out.writeUInt16BE(basis.edns ? 1 : 0, 10);
  if (qlen > 0) out.set(query.subarray(HEADER_BYTES, basis.questionEnd), HEADER_BYTES);
  if (basis.edns) writeOpt(out, HEADER_BYTES + qlen, ede ? { code: ede.code, text: edeText! } : null);
  return out;
}

function writeOpt(out: Buffer, at: number, ede: { code: number; text: Buffer } | null): void {
  out[at] = 0; // root owner
  out.writeUInt16BE(RrType.OPT, at + 1);
  out.writeUInt16BE(OUR_EDNS_UDP_SIZE, at + 3);
  out.writeUInt32BE(0, at + 5); // extended rcode 0, version 0, no flags
  if (!ede) {
    out.writeUInt16BE(0, at + 9);
    return;
  }
  out.writeUInt16BE(6 + ede.text.length, at + 9);
  out.writeUInt16BE(EDE_OPTION, at + 11);
  out.writeUInt16BE(2 + ede.text.length, at + 13);
  out.writeUInt16BE(ede.code, at + 15);
  ede.text.copy(out, at + 17);
}

/**
 * The reply a UDP client gets when the real one does not fit what it accepts: the upstream's
 * flags and rcode with TC set, the question, no records (RFC 2181 section 9: a client that
 * sees TC retries over TCP and must not use a partial answer).
 */
export function truncatedReply(query: ParsedQuery, queryBytes: Uint8Array, upstreamFlags: number): Buffer {
  const basis: ReplyBasis = {
    id: query.id,
    flags: (upstreamFlags & ~0xf & ~Flag.QR) | (query.flags & (Flag.RD | Flag.CD)),
    questionEnd: query.questionEnd,
    edns: query.edns,
  };
  const out = buildReply(basis, queryBytes, upstreamFlags & 0xf, null, Flag.TC);
  // Keep the upstream's AA/AD bits as they were rather than what buildReply derives.
  const keep = upstreamFlags & (Flag.AA | Flag.AD | Flag.RA);
  out.writeUInt16BE((out.readUInt16BE(2) & ~(Flag.AA | Flag.AD | Flag.RA)) | keep | Flag.TC, 2);
  return out;
}

/** How a reply failed to match its query; replies that do not match are ignored, not used. */
export type MatchProblem = 'short' | 'not-response' | 'opcode' | 'qdcount' | 'question';

/**
 * Does `reply` answer a query with this question? Checks QR, opcode, one question and that it
 * is the same question (name compared case-insensitively). The ID is checked by the caller,
 * which knows which ID it sent. Returns null on a match.
 */
export function replyMismatch(reply: Uint8Array, question: Question): MatchProblem | null {
  if (reply.length < HEADER_BYTES) return 'short';
  const flags = (reply[2]! << 8) | reply[3]!;
  if ((flags & Flag.QR) === 0) return 'not-response';
  if (((flags >> 11) & 0xf) !== 0) return 'opcode';
  const qdcount = (reply[4]! << 8) | reply[5]!;
  if (qdcount !== 1) return 'qdcount';
  try {
    // Compared in place (no name string is built): this runs on every upstream reply.
    const at = matchName(reply, HEADER_BYTES, reply.length, question.name);
    if (at < 0 || at + 4 > reply.length) return 'question';
    const type = (reply[at]! << 8) | reply[at + 1]!;
    const cls = (reply[at + 2]! << 8) | reply[at + 3]!;
    if (type !== question.type || cls !== question.class) return 'question';
  } catch (err) {
    if (err instanceof WireError) return 'question';
    throw err;
  }
  return null;
}

export function flagsOf(msg: Uint8Array): number {
  return (msg[2]! << 8) | msg[3]!;
}

export function setId(msg: Uint8Array, id: number): void {
  msg[0] = (id >> 8) & 0xff;
  msg[1] = id & 0xff;
}

export function idOf(msg: Uint8Array): number {
  return (msg[0]! << 8) | msg[1]!;
}
