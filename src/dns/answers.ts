/**
 * What an upstream reply lets a source reach: the addresses at the end of the CNAME chain that
 * starts at the queried name, each with the TTL the client will hold it for.
 *
 * Only records on that chain count: `allowed.example CNAME cdn.example.net` followed by
 * `cdn.example.net A 192.0.2.1` yields 192.0.2.1; an A record for any other owner in the same
 * reply is ignored, so a reply cannot smuggle addresses for names the source did not ask for.
 * A chain that loops or is longer than the limit makes the reply unusable (the proxy answers
 * SERVFAIL and learns nothing). Every section is read to its end and the message must end with
 * the last record, so a reply namegate learns from is one any strict parser reads the same way.
 */
import { ErrorCode, NamegateError } from '../core/errors.ts';
import { readSvcbHints } from './svcb.ts';
import {
  HEADER_BYTES,
  ipv4Text,
  ipv6Text,
  type Question,
  RrClass,
  RrType,
  readQuestion,
  readRdataName,
  readRrHead,
  WireError,
  WireReader,
} from './wire.ts';

export interface AnswerLimits {
  /** CNAMEs followed from the queried name before giving up. */
  readonly maxCnameDepth: number;
  /** Records in the answer section. */
  readonly maxAnswerRecords: number;
}

export interface AnswerAddress {
  readonly ip: string;
  readonly family: 4 | 6;
  /** Seconds: the smallest TTL along the chain and of the record itself. */
  readonly ttl: number;
}

export interface AnswerFacts {
  readonly rcode: number;
  readonly truncated: boolean;
  /** The names from the queried one to the end of its CNAME chain. */
  readonly chain: readonly string[];
  /** Addresses at the chain's end of the queried type (A, AAAA, or SVCB/HTTPS hints). */
  readonly addresses: readonly AnswerAddress[];
}

export type AnswerProblem = 'cname_loop' | 'cname_too_long' | 'cname_conflict' | 'too_many_answers';

export class AnswerError extends NamegateError {
  readonly reason: AnswerProblem;
  constructor(reason: AnswerProblem, detail: string) {
    super(ErrorCode.DnsMalformed, detail);
    this.name = 'AnswerError';
    this.reason = reason;
  }
}

interface Found {
  readonly owner: string;
  readonly ip: string;
  readonly family: 4 | 6;
  readonly ttl: number;
}

/** Read a reply (already matched to `question`) and collect what it lets the source reach. */
export function readAnswers(reply: Uint8Array, question: Question, limits: AnswerLimits): AnswerFacts {
  const r = new WireReader(reply);
  r.skip(2);
  const flags = r.u16();
  const qdcount = r.u16();
  const ancount = r.u16();
  const nscount = r.u16();
  const arcount = r.u16();
  if (ancount > limits.maxAnswerRecords) {
    throw new AnswerError(
      'too_many_answers',
      `${ancount} answer records; at most ${limits.maxAnswerRecords}`,
    );
  }
  r.pos = HEADER_BYTES;
  for (let i = 0; i < qdcount; i++) readQuestion(r);

  // Most replies have no CNAME and one address: the map and the duplicate check are made only
  // when a reply needs them.
  let cnames: Map<string, { target: string; ttl: number }> | null = null;
  const found: Found[] = [];
  const wanted = question.type;
  for (let i = 0; i < ancount; i++) {
    const rr = readRrHead(r);
    if (rr.class !== RrClass.IN) continue;
    switch (rr.type) {
      case RrType.CNAME: {
        const target = readRdataName(reply, rr, reply.length);
        cnames ??= new Map();
        const prior = cnames.get(rr.name);
        if (prior && prior.target !== target) {
          throw new AnswerError('cname_conflict', `${rr.name} has two CNAME targets`);
        }
        if (!prior || rr.ttl < prior.ttl) cnames.set(rr.name, { target, ttl: rr.ttl });
        break;
      }
      case RrType.A:
        if (rr.rdEnd - rr.rdStart !== 4) throw new WireError('bad-rdata', 'A rdata is not 4 bytes');
        if (wanted === RrType.A)
          found.push({ owner: rr.name, ip: ipv4Text(reply, rr.rdStart), family: 4, ttl: rr.ttl });
        break;
      case RrType.AAAA:
        if (rr.rdEnd - rr.rdStart !== 16) throw new WireError('bad-rdata', 'AAAA rdata is not 16 bytes');
        if (wanted === RrType.AAAA) {
          found.push({ owner: rr.name, ip: ipv6Text(reply, rr.rdStart), family: 6, ttl: rr.ttl });
        }
        break;
      case RrType.SVCB:
      case RrType.HTTPS: {
        const hints = readSvcbHints(reply, rr);
        if (rr.type !== wanted) break;
        for (const ip of hints.ipv4) found.push({ owner: rr.name, ip, family: 4, ttl: rr.ttl });
        for (const ip of hints.ipv6) found.push({ owner: rr.name, ip, family: 6, ttl: rr.ttl });
        break;
      }
      default:
        break;
    }
  }
  // The other sections are not learned from, but must be well-formed to the last byte.
  for (let i = 0; i < nscount + arcount; i++) readRrHead(r);
  if (r.pos !== reply.length) {
    throw new WireError('trailing-bytes', `${reply.length - r.pos} bytes after the last record`);
  }

  const chain = [question.name];
  let end = question.name;
  let chainTtl = Number.POSITIVE_INFINITY;
  while (cnames !== null) {
    const link = cnames.get(end);
    if (!link) break;
    if (chain.includes(link.target)) {
      throw new AnswerError('cname_loop', `CNAME loop at ${link.target}`);
    }
    if (chain.length > limits.maxCnameDepth) {
      throw new AnswerError('cname_too_long', `CNAME chain longer than ${limits.maxCnameDepth}`);
    }
    chain.push(link.target);
    chainTtl = Math.min(chainTtl, link.ttl);
    end = link.target;
  }

  const addresses: AnswerAddress[] = [];
  const seen = found.length > 1 ? new Set<string>() : null;
  for (const f of found) {
    if (f.owner !== end) continue;
    if (seen !== null) {
      if (seen.has(f.ip)) continue;
      seen.add(f.ip);
    }
    addresses.push({ ip: f.ip, family: f.family, ttl: Math.min(f.ttl, chainTtl) });
  }
  return { rcode: flags & 0xf, truncated: (flags & 0x0200) !== 0, chain, addresses };
}
