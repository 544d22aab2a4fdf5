/**
 * From learned entries to datapath elements. One implementation for the DNS proxy (a fresh
 * answer), its checkpoint restore and the agent's resync after a policy or identity change, so
 * the three can never disagree about which ports an answer opens.
 *
 * An entry (source, name, ip) opens ip to source on the port ranges that today's policies grant
 * that source for that name, for as long as the longest-lived name of the source holding ip.
 */
import type { CanonicalName } from '../core/names.ts';
import { type AllowElement, elementKey } from '../datapath/datapath.ts';
import { elementSources, type IdentityProvider } from '../identity/identity.ts';
import type { CompiledPolicies } from '../policy/compile.ts';
import { answerAddressAllowed, grantsFor } from '../policy/decide.ts';
import type { Identity, PortRange } from '../policy/model.ts';
import type { LearnedStore, StoreEntry } from '../store/learned-store.ts';

/** The distinct port ranges the rules matching `name` grant `identity`. */
export function portRanges(set: CompiledPolicies, identity: Identity, name: CanonicalName): PortRange[] {
  const out: PortRange[] = [];
  for (const g of grantsFor(set, identity, name)) {
    for (const p of g.ports) {
      if (!out.some((o) => o.protocol === p.protocol && o.from === p.from && o.to === p.to)) out.push(p);
    }
  }
  return out;
}

/**
 * The elements one learned address opens: for the query source and its siblings of the
 * address's family (see elementSources), on each port range.
 */
export function elementsFor(
  identities: IdentityProvider,
  querySource: string,
  ip: string,
  ranges: readonly PortRange[],
  timeoutMs: number,
): AllowElement[] {
  const out: AllowElement[] = [];
  for (const source of elementSources(identities, querySource, ip)) {
    for (const p of ranges) {
      out.push({ source, destination: ip, protocol: p.protocol, portFrom: p.from, portTo: p.to, timeoutMs });
    }
  }
  return out;
}

export interface DesiredLearned {
  /** Every element the store justifies under today's policies, by elementKey. */
  readonly elements: Map<string, AllowElement>;
  /** Entries today's policies no longer justify (source gone or ungoverned, name or range no longer allowed). */
  readonly stale: StoreEntry[];
}

/** What the learned sets should hold now, computed from the store alone. */
export function desiredLearned(
  store: LearnedStore,
  set: CompiledPolicies,
  identities: IdentityProvider,
  now: number,
): DesiredLearned {
  const elements = new Map<string, AllowElement>();
  const stale: StoreEntry[] = [];
  for (const entry of store.entries()) {
    if (entry.expiresAt <= now) continue;
    const identity = identities.lookup(entry.source);
    const ranges = identity ? portRanges(set, identity, entry.name as CanonicalName) : [];
    if (!identity || ranges.length === 0 || !answerAddressAllowed(set, identity, entry.ip)) {
      stale.push(entry);
      continue;
    }
    const timeoutMs = store.expiryFor(entry.source, entry.ip) - now;
    if (timeoutMs <= 0) continue;
    for (const e of elementsFor(identities, entry.source, entry.ip, ranges, timeoutMs)) {
      const key = elementKey(e);
      const seen = elements.get(key);
      if (!seen || seen.timeoutMs < e.timeoutMs) elements.set(key, e);
    }
  }
  return { elements, stale };
}
