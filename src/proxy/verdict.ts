/**
 * The transparent proxy's decision, pure: may this source open this original destination, given
 * the name it claimed (TLS SNI or HTTP Host)? Both must hold (docs/architecture.md, principle 4):
 *   1. policy: the source is governed and decide(identity, name, TCP, port) allows;
 *   2. binding: the original destination IP is one that this source, or a sibling address of
 *      the same workload, learned from DNS for that very name (SNI-01, SNI-02: an IP learned
 *      only for another name, the shared-CDN case, does not count).
 * A toCIDRs rule covering the destination and port allows without any name (TLS-05's exception).
 * Audit sources get the same decision with 'audit' in place of 'deny'.
 */
import type { CanonicalName } from '../core/names.ts';
import type { IdentityProvider } from '../identity/identity.ts';
import type { CompiledPolicies } from '../policy/compile.ts';
import { decide, decideAddress } from '../policy/decide.ts';
import { type Identity, type Mode, policyRefText } from '../policy/model.ts';

/** What the store answers (src/store/learned-store.ts LearnedStore.holds). */
export interface LearnedView {
  holds(source: string, name: string, ip: string, now: number): boolean;
}

export type NameKind = 'tls' | 'http';

export interface ProxyDecision {
  readonly verdict: 'allow' | 'deny' | 'audit';
  readonly reason: string;
  readonly policy: string | null;
  readonly rule: number | null;
  readonly mode: Mode | null;
}

const decision = (
  verdict: ProxyDecision['verdict'],
  reason: string,
  mode: Mode | null,
  policy: string | null = null,
  rule: number | null = null,
): ProxyDecision => ({ verdict, reason, policy, rule, mode });

/** The source and its sibling addresses (a dual-stack pod's other family), source first. */
export function sourceSet(identities: IdentityProvider, src: string): string[] {
  const all = identities.siblings ? identities.siblings(src) : [];
  return all.includes(src) ? [src, ...all.filter((a) => a !== src)] : [src, ...all];
}

/** The mode the source is governed in, or null. */
export function modeOf(set: CompiledPolicies, identity: Identity): Mode | null {
  return set.selection(identity).mode;
}

/** Deny, or audit when the source is governed in Audit mode. */
export function refuse(mode: Mode | null, reason: string): ProxyDecision {
  return decision(mode === 'Audit' ? 'audit' : 'deny', reason, mode);
}

/** A toCIDRs rule allows the destination and port: no name needed. Null when none does. */
export function cidrDecision(
  set: CompiledPolicies,
  identity: Identity,
  ip: string,
  port: number,
): ProxyDecision | null {
  const d = decideAddress(set, identity, ip, 'TCP', port);
  if (d.verdict !== 'allow' || d.reason !== 'cidr_rule') return null;
  return decision('allow', 'cidr_rule', d.mode, d.policy ? policyRefText(d.policy) : null, d.rule);
}

export interface NameQuestion {
  readonly set: CompiledPolicies;
  readonly identity: Identity;
  /** The connection's source and its siblings (sourceSet). */
  readonly sources: readonly string[];
  readonly name: CanonicalName;
  readonly ip: string;
  readonly port: number;
  readonly kind: NameKind;
  readonly learned: LearnedView;
  readonly now: number;
}

export function decideName(q: NameQuestion): ProxyDecision {
  const d = decide(q.set, q.identity, q.name, 'TCP', q.port);
  const prefix = q.kind === 'tls' ? 'sni' : 'host';
  if (d.mode === null) return decision('deny', 'ungoverned', null);
  const policy = d.policy ? policyRefText(d.policy) : null;
  if (d.verdict !== 'allow') return decision(d.verdict, `${prefix}_not_allowed`, d.mode, policy, d.rule);
  for (const s of q.sources) {
    if (q.learned.holds(s, q.name, q.ip, q.now)) return decision('allow', d.reason, d.mode, policy, d.rule);
  }
  return decision(d.mode === 'Audit' ? 'audit' : 'deny', `${prefix}_ip_mismatch`, d.mode, policy, d.rule);
}
