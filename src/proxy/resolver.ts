/**
 * Name resolution for the CONNECT proxy: A and AAAA through the trusted upstream, with the DNS
 * proxy's own client (src/dns/upstream.ts: random IDs and ports, reply matching, TCP fallback),
 * never dns.lookup (NODE-07). The addresses are those at the end of the CNAME chain that starts
 * at the name (src/dns/answers.ts), so a reply cannot slip in addresses for other owners.
 * The proxy then dials exactly one of the addresses returned here (CON-06: no second lookup).
 */

import { readAnswers } from '../dns/answers.ts';
import type { UpstreamClient } from '../dns/upstream.ts';
import { encodeName, type Question, RrClass, RrType } from '../dns/wire.ts';

export interface ResolvedAddress {
  readonly ip: string;
  readonly family: 4 | 6;
}

export interface NameResolver {
  /** Addresses of `name` (IPv4 first); [] when it has none; throws when no upstream answered. */
  resolve(name: string): Promise<ResolvedAddress[]>;
}

const LIMITS = { maxCnameDepth: 16, maxAnswerRecords: 1000 };

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

export class UpstreamResolver implements NameResolver {
  readonly #client: Pick<UpstreamClient, 'query'>;

  constructor(client: Pick<UpstreamClient, 'query'>) {
    this.#client = client;
  }

  async resolve(name: string): Promise<ResolvedAddress[]> {
    const ask = async (type: number): Promise<ResolvedAddress[]> => {
      const question: Question = { name, type, class: RrClass.IN };
      const reply = await this.#client.query(buildQuery(name, type), question, false);
      const facts = readAnswers(reply.bytes, question, LIMITS);
      if (facts.rcode !== 0) return [];
      return facts.addresses.map((a) => ({ ip: a.ip, family: a.family }));
    };
    const [v4, v6] = await Promise.allSettled([ask(RrType.A), ask(RrType.AAAA)]);
    if (v4.status === 'rejected' && v6.status === 'rejected') throw v4.reason;
    return [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])];
  }
}
