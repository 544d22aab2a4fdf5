/**
 * Why did the kernel drop this packet? A pure function of the packet, the agent's memory of DNS
 * answers (history.ts) and what policy grants the source, so tests assert on each case:
 *
 *   expired         this source resolved the name through namegate, but the element's time ran
 *                   out (the client kept using the address past the TTL and the grace)
 *   other_port      resolved and live, but the policy grants the name on other ports/protocols
 *   name_revoked    resolved and live, but the policy no longer allows the name at all
 *   not_committed   resolved, live and allowed: the element never reached the kernel (a full
 *                   set, a failed commit) or the packet raced the commit
 *   denied_range    the address is in a range answers may never open (private, loopback, ...)
 *   other_source    never resolved by this source, but another source (pod) learned it
 *   never_resolved  nobody resolved it through namegate: a DNS bypass or a hard-coded address
 *   no_matching_rule / port_not_allowed
 *                   an Audit source resolved the name, its policies do not allow it (or not on
 *                   this port), so the answer passed without being learned: the policy's reason
 *
 * Each names the name the address was learned for, when there is one, however long ago.
 */
import type { DropDetail } from './event.ts';
import type { AddressHistoryView, LearnedName } from './history.ts';

export const DropReason = {
  Expired: 'expired',
  OtherPort: 'other_port',
  NameRevoked: 'name_revoked',
  NotCommitted: 'not_committed',
  DeniedRange: 'denied_range',
  OtherSource: 'other_source',
  NeverResolved: 'never_resolved',
  /** The decision's own reasons, for answers an Audit source got without learning them. */
  NoMatchingRule: 'no_matching_rule',
  PortNotAllowed: 'port_not_allowed',
  /** Set by the kernel rule itself, not derived: an unknown address inside the source CIDRs. */
  UnknownSource: 'unknown_source',
  /** Set by the kernel rule itself: failed the reverse-path check. */
  Spoofed: 'spoofed',
} as const;
export type DropReason = (typeof DropReason)[keyof typeof DropReason];

export interface DroppedPacket {
  /** The source address and its siblings (a dual-stack pod's other address), source first. */
  readonly sources: readonly string[];
  readonly dst: string;
  /** "tcp", "udp", ... */
  readonly proto: string;
  readonly dport: number | null;
  /** Wall ms. */
  readonly now: number;
}

/** What policy says about a name for this source on this protocol and port. */
export interface NameGrant {
  /** allow: the port is granted; port: the name is, on other ports; name: the name is not. */
  readonly result: 'allow' | 'port' | 'name';
  /** The ports granted for the name, e.g. "TCP/443, UDP/443" (for other_port). */
  readonly ports: string;
  readonly policy: string | null;
  readonly rule: number | null;
}

export interface ExplainContext {
  readonly history: AddressHistoryView;
  /** "public", or the class that keeps the address from being learned (core classifyAddress). */
  addressClass(ip: string): string;
  /** The policy's view of `name` for the dropped packet's source (null: the source is unknown). */
  grant(name: string, proto: string, port: number | null): NameGrant | null;
}

export interface DropExplanation {
  readonly reason: DropReason;
  readonly name: string | null;
  readonly policy: string | null;
  readonly rule: number | null;
  readonly detail: DropDetail;
}

const iso = (ms: number) => new Date(ms).toISOString();

function ownEntry(p: DroppedPacket, history: AddressHistoryView): LearnedName | undefined {
  let best: LearnedName | undefined;
  for (const s of p.sources) {
    const e = history.lookup(s, p.dst);
    if (e && (!best || e.learnedAt > best.learnedAt)) best = e;
  }
  return best;
}

export function explainDrop(p: DroppedPacket, ctx: ExplainContext): DropExplanation {
  const own = ownEntry(p, ctx.history);
  if (own) {
    const learned = { learnedAt: iso(own.learnedAt) };
    if (own.expiresAt <= p.now) {
      return {
        reason: DropReason.Expired,
        name: own.name,
        policy: null,
        rule: null,
        detail: { ...learned, expiredAt: iso(own.expiresAt) },
      };
    }
    const g = ctx.grant(own.name, p.proto, p.dport);
    const by = { policy: g?.policy ?? null, rule: g?.rule ?? null };
    if (!own.learned) {
      const reason = g?.result === 'port' ? DropReason.PortNotAllowed : DropReason.NoMatchingRule;
      return {
        reason,
        name: own.name,
        ...by,
        detail: g?.result === 'port' ? { ...learned, ports: g.ports } : learned,
      };
    }
    if (g?.result === 'port')
      return { reason: DropReason.OtherPort, name: own.name, ...by, detail: { ...learned, ports: g.ports } };
    if (g === null || g.result === 'name')
      return { reason: DropReason.NameRevoked, name: own.name, ...by, detail: learned };
    return { reason: DropReason.NotCommitted, name: own.name, ...by, detail: learned };
  }
  const cls = ctx.addressClass(p.dst);
  if (cls !== 'public') {
    return {
      reason: DropReason.DeniedRange,
      name: null,
      policy: null,
      rule: null,
      detail: { addressClass: cls },
    };
  }
  const others = ctx.history.learners(p.dst).filter((e) => !p.sources.includes(e.source));
  const first = others[0];
  if (first) {
    return {
      reason: DropReason.OtherSource,
      name: first.name,
      policy: null,
      rule: null,
      detail: { learnedBy: others.map((e) => e.source) },
    };
  }
  return { reason: DropReason.NeverResolved, name: null, policy: null, rule: null, detail: {} };
}
