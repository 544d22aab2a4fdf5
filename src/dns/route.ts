/**
 * The policy stage: what to do with a valid query from a source, decided before any I/O and
 * without side effects. Order:
 *   1. unknown source (no identity): forwarded without learning, or refused when configured;
 *      always refused inside the datapath's source CIDRs, where an unknown address gets no
 *      grants at all (its packets are dropped; a forwarded answer would only leak names);
 *   2. pass-through zone (cluster.local, ...): forwarded without learning, for every source;
 *   3. ungoverned source (no policy selects it): forwarded without learning;
 *   4. the name is canonicalized here, once; a name that is not canonical is denied;
 *   5. the DoH canary (use-application-dns.net) gets NXDOMAIN for enforced sources, so browsers
 *      keep using this resolver instead of switching to DNS over HTTPS (security case DNS-06);
 *   6. decideQuery: allow -> forward and learn; deny -> refuse (REFUSED or NXDOMAIN with an
 *      Extended DNS Error "Blocked"); audit (would deny) -> forward, nothing learned.
 */
import { isIP } from 'node:net';
import { type Cidr, CidrSet, parseCidr } from '../core/ip.ts';
import { type CanonicalName, tryWireName } from '../core/names.ts';
import type { CompiledPolicies } from '../policy/compile.ts';
import { type Decision, decideQuery } from '../policy/decide.ts';
import type { Identity } from '../policy/model.ts';
import type { DnsVerdict } from './flow-log.ts';
import { type Ede, EdeCode } from './message.ts';
import { Rcode } from './wire.ts';

export interface RouteSettings {
  /** Canonical zone names; a query for a zone or a name below it passes through. */
  readonly passThroughZones: readonly string[];
  readonly denyRcode: typeof Rcode.REFUSED | typeof Rcode.NXDOMAIN;
  readonly unknownSources: 'forward' | 'refuse';
  /**
   * The datapath's source CIDRs (datapath.sourceCIDRs): an unknown source inside them is refused
   * whatever `unknownSources` says. Absent or empty: `unknownSources` alone decides.
   */
  readonly unknownScope?: { has(ip: string): boolean };
}

export type Route =
  | {
      readonly kind: 'refuse';
      readonly verdict: DnsVerdict;
      readonly reason: string;
      readonly rcode: number;
      readonly ede: Ede;
      readonly decision: Decision | null;
    }
  | {
      readonly kind: 'forward';
      readonly learn: false;
      readonly verdict: DnsVerdict;
      readonly reason: string;
      readonly decision: Decision | null;
    }
  | {
      readonly kind: 'forward';
      readonly learn: true;
      readonly verdict: 'allow';
      readonly reason: string;
      readonly decision: Decision;
      readonly identity: Identity;
      readonly name: CanonicalName;
    };

/** Firefox's canary: NXDOMAIN here turns its automatic DoH off. */
export const DOH_CANARY = 'use-application-dns.net';

export const BLOCKED_EDE: Ede = { code: EdeCode.Blocked, text: 'blocked by namegate egress policy' };
const UNKNOWN_EDE: Ede = { code: EdeCode.Prohibited, text: 'source not known to namegate' };

// Queried names repeat; canonicalization (IDNA checks, label rules) runs once per distinct
// name until the memo fills, then it starts over.
const CANONICAL_MEMO_MAX = 65_536;
const canonicalMemo = new Map<string, CanonicalName | null>();

function canonical(qname: string): CanonicalName | null {
  let name = canonicalMemo.get(qname);
  if (name === undefined) {
    // A \DDD escape means a byte no canonical name has; never hand it to IDNA mapping.
    const c = qname.includes('\\') ? null : tryWireName(qname);
    name = typeof c === 'string' ? c : null;
    if (canonicalMemo.size >= CANONICAL_MEMO_MAX) canonicalMemo.clear();
    canonicalMemo.set(qname, name);
  }
  return name;
}

export function inZone(name: string, zones: readonly string[]): boolean {
  for (const z of zones) {
    if (
      name === z ||
      (name.length > z.length && name.endsWith(z) && name[name.length - z.length - 1] === '.')
    ) {
      return true;
    }
  }
  return false;
}

/**
 * The `unknownScope` setting from the datapath's source CIDRs (validated by the config schema; a
 * malformed entry is skipped here, the datapath refuses it): spread into RouteSettings.
 */
export function unknownScopeFrom(cidrs: readonly string[]): { unknownScope?: CidrSet } {
  const parsed: Cidr[] = [];
  for (const text of cidrs) {
    const c = parseCidr(text);
    if (typeof c !== 'string') parsed.push(c);
  }
  return parsed.length > 0 ? { unknownScope: new CidrSet(parsed) } : {};
}

/** Is this source address inside the scope? False for anything that is not an address. */
export function inUnknownScope(settings: RouteSettings, source: string | undefined): boolean {
  if (source === undefined || settings.unknownScope === undefined || isIP(source) === 0) return false;
  return settings.unknownScope.has(source);
}

export function route(
  settings: RouteSettings,
  set: CompiledPolicies,
  identity: Identity | undefined,
  qname: string,
  /** The query's source address (for `unknownScope`). */
  source?: string,
): Route {
  if (!identity) {
    if (settings.unknownSources === 'refuse' || inUnknownScope(settings, source)) {
      return {
        kind: 'refuse',
        verdict: 'deny',
        reason: 'unknown_source',
        rcode: Rcode.REFUSED,
        ede: UNKNOWN_EDE,
        decision: null,
      };
    }
    return { kind: 'forward', learn: false, verdict: 'forward', reason: 'unknown_source', decision: null };
  }
  if (inZone(qname, settings.passThroughZones)) {
    return { kind: 'forward', learn: false, verdict: 'forward', reason: 'pass_through', decision: null };
  }
  const mode = set.selection(identity).mode;
  if (mode === null)
    return { kind: 'forward', learn: false, verdict: 'forward', reason: 'ungoverned', decision: null };
  const name = canonical(qname);
  if (name === null) {
    if (mode === 'Audit')
      return { kind: 'forward', learn: false, verdict: 'audit', reason: 'name_invalid', decision: null };
    return {
      kind: 'refuse',
      verdict: 'deny',
      reason: 'name_invalid',
      rcode: settings.denyRcode,
      ede: BLOCKED_EDE,
      decision: null,
    };
  }
  if (mode === 'Enforce' && (name === DOH_CANARY || name.endsWith(`.${DOH_CANARY}`))) {
    return {
      kind: 'refuse',
      verdict: 'deny',
      reason: 'doh_canary',
      rcode: Rcode.NXDOMAIN,
      ede: BLOCKED_EDE,
      decision: null,
    };
  }
  const decision = decideQuery(set, identity, name);
  switch (decision.verdict) {
    case 'allow':
      return {
        kind: 'forward',
        learn: true,
        verdict: 'allow',
        reason: decision.reason,
        decision,
        identity,
        name,
      };
    case 'audit':
      return { kind: 'forward', learn: false, verdict: 'audit', reason: decision.reason, decision };
    default:
      return {
        kind: 'refuse',
        verdict: 'deny',
        reason: decision.reason,
        rcode: settings.denyRcode,
        ede: BLOCKED_EDE,
        decision,
      };
  }
}
