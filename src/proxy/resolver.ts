/**
 * Name resolution for the CONNECT proxy: A and AAAA through the trusted upstream with the DNS
 * proxy's own client (src/dns/resolve.ts), never dns.lookup (NODE-07). The addresses are those
 * at the end of the CNAME chain that starts at the name, so a reply cannot slip in addresses
 * for other owners. The proxy then dials exactly one of the addresses returned here (CON-06: no
 * second lookup).
 */

import { resolveName, type TypeOutcome } from '../dns/resolve.ts';
import { type UpstreamClient, UpstreamError } from '../dns/upstream.ts';

export interface ResolvedAddress {
  readonly ip: string;
  readonly family: 4 | 6;
}

export interface NameResolver {
  /** Addresses of `name` (IPv4 first); [] when it has none; throws when no upstream answered. */
  resolve(name: string): Promise<ResolvedAddress[]>;
}

const UPSTREAM_REASONS: ReadonlySet<string> = new Set(['upstream_timeout', 'upstream_failed']);

export class UpstreamResolver implements NameResolver {
  readonly #client: Pick<UpstreamClient, 'query'>;

  constructor(client: Pick<UpstreamClient, 'query'>) {
    this.#client = client;
  }

  async resolve(name: string): Promise<ResolvedAddress[]> {
    const { a, aaaa } = await resolveName(this.#client, name);
    if (!a.ok && !aaaa.ok && UPSTREAM_REASONS.has(a.reason)) {
      throw new UpstreamError(a.reason as 'upstream_timeout' | 'upstream_failed', a.detail);
    }
    // A type that failed otherwise (a malformed reply, SERVFAIL) or answered NXDOMAIN adds nothing.
    const of = (o: TypeOutcome) => (o.ok ? o.addresses.map((x) => ({ ip: x.ip, family: x.family })) : []);
    return [...of(a), ...of(aaaa)];
  }
}
