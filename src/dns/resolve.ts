/**
 * Resolving one name through the trusted upstream with namegate's own client (upstream.ts:
 * random IDs and ports, reply matching, TCP fallback), never dns.lookup (NODE-07): A and AAAA
 * asked side by side, the addresses taken from the end of the CNAME chain that starts at the
 * name (answers.ts), each with its TTL. The CONNECT proxy and `namegate sync` both resolve here.
 *
 * Each type's outcome is reported on its own: one type failing does not hide what the other
 * answered, and the caller decides what a failure means (the sync keeps its last good set).
 */
import { errorMessage } from '../core/errors.ts';
import { type AnswerAddress, type AnswerLimits, readAnswers } from './answers.ts';
import type { UpstreamClient } from './upstream.ts';
import { encodeName, type Question, Rcode, RrClass, RrType } from './wire.ts';

export const RESOLVE_LIMITS: AnswerLimits = { maxCnameDepth: 16, maxAnswerRecords: 1000 };

/** The outcome of one query type. */
export type TypeOutcome =
  | {
      readonly ok: true;
      /** NOERROR or NXDOMAIN (a name without addresses is an answer too). */
      readonly rcode: number;
      readonly addresses: readonly AnswerAddress[];
      readonly chain: readonly string[];
    }
  | {
      readonly ok: false;
      /** upstream_timeout | upstream_failed | rcode_<n> | malformed | truncated */
      readonly reason: string;
      readonly detail: string;
    };

export interface NameResolution {
  readonly a: TypeOutcome;
  readonly aaaa: TypeOutcome;
}

/** A recursion-desired query for (name, type); its ID is set by the upstream client. */
export function buildQuery(name: string, type: number): Buffer {
  const qname = encodeName(name);
  const msg = Buffer.alloc(12 + qname.length + 4);
  msg.writeUInt16BE(0x0100, 2); // RD
  msg.writeUInt16BE(1, 4); // QDCOUNT
  qname.copy(msg, 12);
  msg.writeUInt16BE(type, 12 + qname.length);
  msg.writeUInt16BE(RrClass.IN, 14 + qname.length);
  return msg;
}

/** Ask one type; never rejects. */
export async function resolveType(
  client: Pick<UpstreamClient, 'query'>,
  name: string,
  type: number,
  limits: AnswerLimits = RESOLVE_LIMITS,
): Promise<TypeOutcome> {
  const question: Question = { name, type, class: RrClass.IN };
  let bytes: Buffer;
  try {
    bytes = (await client.query(buildQuery(name, type), question, false)).bytes;
  } catch (err) {
    const reason = (err as { reason?: string }).reason ?? 'upstream_failed';
    return { ok: false, reason, detail: errorMessage(err) };
  }
  try {
    const facts = readAnswers(bytes, question, limits);
    if (facts.truncated) return { ok: false, reason: 'truncated', detail: 'the reply was truncated' };
    if (facts.rcode !== Rcode.NOERROR && facts.rcode !== Rcode.NXDOMAIN)
      return {
        ok: false,
        reason: `rcode_${facts.rcode}`,
        detail: `the upstream answered rcode ${facts.rcode}`,
      };
    return { ok: true, rcode: facts.rcode, addresses: facts.addresses, chain: facts.chain };
  } catch (err) {
    return { ok: false, reason: 'malformed', detail: errorMessage(err) };
  }
}

/** A and AAAA of `name`, asked at the same time. */
export async function resolveName(
  client: Pick<UpstreamClient, 'query'>,
  name: string,
  limits: AnswerLimits = RESOLVE_LIMITS,
): Promise<NameResolution> {
  const [a, aaaa] = await Promise.all([
    resolveType(client, name, RrType.A, limits),
    resolveType(client, name, RrType.AAAA, limits),
  ]);
  return { a, aaaa };
}
