/**
 * What a restart does to the learned elements the kernel kept while the agent was down. The DNS
 * proxy asks here after restoring its checkpoint and before it opens a socket, and removes what
 * this says (flows included), so no address keeps access that identities and policies changed
 * while the agent was down no longer give it.
 *
 * Each kernel element is judged once, in this order:
 *   desired       the restored store justifies it under today's policies: kept (and refreshed)
 *   ungoverned    its source is unknown, or no policy selects it: removed
 *   stale         the checkpoint held this (source, destination) pair, and today's policies and
 *                 identities no longer justify the element: removed
 *   unexplained   no FQDN rule of the source's policies grants its protocol and ports, or its
 *                 destination is an address no answer may open for the source: removed
 *   kept          explainable, but unknown to the checkpoint: learned after the last checkpoint,
 *                 or by another agent sharing the table (a rolling update); it expires on its own
 *
 * Pure: the caller reads the kernel and the checkpoint and does the removal.
 */
import { type AllowElement, type ElementKey, elementKey } from '../datapath/datapath.ts';
import { elementSources, type IdentityProvider } from '../identity/identity.ts';
import type { CompiledPolicies } from '../policy/compile.ts';
import { answerAddressAllowed } from '../policy/decide.ts';
import type { Identity } from '../policy/model.ts';

export type RestoreVerdict = 'desired' | 'ungoverned' | 'stale' | 'unexplained' | 'kept';

export interface RestorePlan {
  /** Elements to remove (with their flows) before DNS is served. */
  readonly forget: readonly ElementKey[];
  /** How many kernel elements got each verdict. */
  readonly counts: Readonly<Record<RestoreVerdict, number>>;
}

export interface RestoreInput {
  /** The learned elements the kernel holds. */
  readonly actual: readonly AllowElement[];
  /** What the restored store justifies under today's policies (by elementKey). */
  readonly desired: ReadonlyMap<string, AllowElement>;
  /** `${source}|${destination}` pairs the checkpoint held, stale entries included (checkpointPairs). */
  readonly checkpointed: ReadonlySet<string>;
  readonly policies: CompiledPolicies;
  readonly identities: IdentityProvider;
}

/**
 * The (source, destination) pairs the checkpoint's unexpired entries programmed: the query
 * source and its siblings of the destination's family, as the DNS proxy learned them. An expired
 * entry claims nothing: another agent sharing the table (a rolling update) may have refreshed the
 * element since, for its own fresh answer.
 */
export function checkpointPairs(
  entries: Iterable<{ readonly source: string; readonly ip: string; readonly expiresAt: number }>,
  identities: IdentityProvider,
  now: number,
): Set<string> {
  const out = new Set<string>();
  for (const e of entries) {
    if (e.expiresAt <= now) continue;
    for (const source of elementSources(identities, e.source, e.ip)) out.add(`${source}|${e.ip}`);
  }
  return out;
}

/**
 * Could some answer have opened this element for this identity today: an FQDN rule of a policy
 * selecting it grants the element's protocol and whole port range, and the destination is an
 * address an answer may open (public, or covered by a toCIDRs rule)?
 */
export function couldBeLearned(set: CompiledPolicies, identity: Identity, e: ElementKey): boolean {
  const selection = set.selection(identity);
  if (selection.mode === null) return false;
  if (!answerAddressAllowed(set, identity, e.destination)) return false;
  for (const p of selection.policies) {
    for (const rule of set.policies[p]?.rules ?? []) {
      if (rule.fqdns.length === 0) continue;
      if (rule.ports.some((r) => r.protocol === e.protocol && r.from <= e.portFrom && r.to >= e.portTo))
        return true;
    }
  }
  return false;
}

export function judgeRestored(input: RestoreInput, e: AllowElement): RestoreVerdict {
  if (input.desired.has(elementKey(e))) return 'desired';
  const identity = input.identities.lookup(e.source);
  if (!identity || input.policies.selection(identity).mode === null) return 'ungoverned';
  if (input.checkpointed.has(`${e.source}|${e.destination}`)) return 'stale';
  if (!couldBeLearned(input.policies, identity, e)) return 'unexplained';
  return 'kept';
}

export function planRestore(input: RestoreInput): RestorePlan {
  const counts: Record<RestoreVerdict, number> = {
    desired: 0,
    ungoverned: 0,
    stale: 0,
    unexplained: 0,
    kept: 0,
  };
  const forget: ElementKey[] = [];
  for (const e of input.actual) {
    const verdict = judgeRestored(input, e);
    counts[verdict]++;
    if (verdict === 'ungoverned' || verdict === 'stale' || verdict === 'unexplained') {
      forget.push({
        source: e.source,
        destination: e.destination,
        protocol: e.protocol,
        portFrom: e.portFrom,
        portTo: e.portTo,
      });
    }
  }
  return { forget, counts };
}
