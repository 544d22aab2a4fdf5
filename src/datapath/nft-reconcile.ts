/**
 * The startup/reload plan (pure): from what the kernel holds to what config and static state
 * want, as the commands of ONE transaction. It never flushes a set and never rebuilds the table:
 *   1. `add table` (a no-op when it exists);
 *   2. flush every chain of the table, delete the chains that are unknown or whose hook, type,
 *      priority or policy changed; since everything is flushed first, no rule still refers to
 *      a set or chain that goes;
 *   3. delete sets that are unknown or whose definition (type, flags, size, counter) changed,
 *      and add the missing ones: a changed definition is the only case that recreates a set
 *      (and, for a learned set, drops its elements: the caller resets its model and logs it);
 *   4. add the named counters (`add` keeps an existing counter and its values), missing
 *      chains, then every rule of every chain;
 *   5. static sets (sources, drop counters, CIDR allows, verify ports) by difference. A
 *      concatenated interval set (pipapo: cidr, verify) that would lose more than
 *      PIPAPO_MAX_DELETES elements is deleted and refilled in step 3 instead: removing elements
 *      one by one from pipapo costs O(set size) each in the kernel commit (see
 *      docs/datapath.md, "Interval sets and the kernel"), destroying the set is linear.
 * The kernel applies all of it at once, so packets see the old ruleset or the new one.
 */

import { type AddrRange, mergeRanges, parseRangeText, rangePrefixes, subtractRanges } from './ip-range.ts';
import type { NftConfig } from './nft-config.ts';
import { diffTexts, elementKeyText, type StaticElements, staticElementCommands } from './nft-elements.ts';
import type { KernelChain, KernelSet, KernelTable } from './nft-json.ts';
import {
  type ChainDef,
  chainDefs,
  counterNames,
  renderChainHead,
  renderSetBody,
  type SetDef,
  SOURCE_ROLES,
  setDefs,
} from './nft-ruleset.ts';

export interface SetChange {
  readonly set: string;
  readonly added: number;
  readonly removed: number;
}

export interface ReconcilePlan {
  readonly commands: readonly string[];
  readonly createdTable: boolean;
  /** Sets deleted and added again because their definition changed. */
  readonly recreatedSets: readonly string[];
  /** Pipapo sets deleted and refilled instead of losing many elements one by one. */
  readonly rebuiltSets: readonly string[];
  /** Sets or chains of the table that namegate does not define (deleted). */
  readonly removedUnknown: readonly string[];
  readonly elementChanges: readonly SetChange[];
  /**
   * Addresses whose DNS the kernel did not redirect before, as the fewest prefixes (a bare
   * address for a single one): newly governed sources, and unknown addresses of the source
   * CIDRs (the CIDRs just configured, or a known ungoverned source that left); for the UDP/TCP
   * 53 conntrack flush (K8S-05).
   */
  readonly newlyGoverned: readonly string[];
}

/** More deletions than this from one pipapo set in one transaction rebuild the set instead. */
export const PIPAPO_MAX_DELETES = 256;

function isPipapo(def: SetDef): boolean {
  return def.type.length > 1 && def.flags.includes('interval');
}

function rangesOf(texts: Iterable<string>): AddrRange[] {
  const out: AddrRange[] = [];
  for (const t of texts) {
    const r = parseRangeText(elementKeyText(t));
    if (r) out.push(r);
  }
  return out;
}

/**
 * The addresses whose DNS is redirected: governed ones, and (with source CIDRs) the unknown ones,
 * i.e. the `scope` minus the known ungoverned sources.
 */
function redirectedRanges(sets: ReadonlyMap<string, ReadonlySet<string>>, f: 4 | 6): AddrRange[] {
  const of = (roles: readonly string[]) => roles.flatMap((role) => rangesOf(sets.get(`${role}${f}`) ?? []));
  const ungoverned = mergeRanges(of(SOURCE_ROLES.ungoverned));
  const unknown = mergeRanges(of(['scope'])).flatMap((r) => subtractRanges(r, ungoverned));
  return mergeRanges([...of([...SOURCE_ROLES.Enforce, ...SOURCE_ROLES.Audit]), ...unknown]);
}

/** What `wanted` redirects that `present` did not, as prefixes. */
export function newlyGovernedPrefixes(
  present: ReadonlyMap<string, ReadonlySet<string>>,
  wanted: ReadonlyMap<string, ReadonlySet<string>>,
): string[] {
  const out: string[] = [];
  for (const f of [4, 6] as const) {
    const before = redirectedRanges(present, f);
    const after = redirectedRanges(wanted, f);
    for (const r of after) {
      for (const piece of subtractRanges(r, before)) {
        const width = f === 4 ? 32 : 128;
        for (const [addr, len] of rangePrefixes(piece)) out.push(len === width ? addr : `${addr}/${len}`);
      }
    }
  }
  return out;
}

export function setMatches(def: SetDef, k: KernelSet): boolean {
  return (
    def.type.join(' . ') === k.type.join(' . ') &&
    def.flags.join(',') === [...k.flags].sort().join(',') &&
    def.size === k.size &&
    def.counter === k.counter
  );
}

export function chainMatches(def: ChainDef, k: KernelChain): boolean {
  if (def.base === null || k.base === null) return def.base === null && k.base === null;
  return (
    def.base.type === k.base.type &&
    def.base.hook === k.base.hook &&
    def.base.priority === k.base.priority &&
    def.base.policy === k.base.policy
  );
}

/**
 * @param kernel the table as listed terse (null: no table yet)
 * @param present canonical element texts of the static sets as the kernel holds them
 * @param wanted canonical element texts the state asks for
 */
export function planReconcile(
  config: NftConfig,
  kernel: KernelTable | null,
  present: ReadonlyMap<string, ReadonlySet<string>>,
  wanted: StaticElements,
): ReconcilePlan {
  const t = `inet ${config.table}`;
  const cmds: string[] = [`add table ${t}`];
  const sets = setDefs(config);
  const chains = chainDefs(config);
  const wantedSets = new Map(sets.map((s) => [s.name, s]));
  const wantedChains = new Map(chains.map((c) => [c.name, c]));
  const recreated: string[] = [];
  const removedUnknown: string[] = [];
  const kSets = kernel?.sets ?? new Map<string, KernelSet>();
  const kChains = kernel?.chains ?? new Map<string, KernelChain>();

  const keptChains = new Set<string>();
  for (const k of kChains.values()) cmds.push(`flush chain ${t} ${k.name}`);
  for (const k of kChains.values()) {
    const def = wantedChains.get(k.name);
    if (def && chainMatches(def, k)) keptChains.add(k.name);
    else {
      cmds.push(`delete chain ${t} ${k.name}`);
      if (!def) removedUnknown.push(`chain ${k.name}`);
    }
  }

  const rebuilt: string[] = [];
  for (const def of sets) {
    const k = kSets.get(def.name);
    const want = wanted.get(def.name);
    if (!k || !setMatches(def, k) || !want || !isPipapo(def)) continue;
    let removals = 0;
    for (const p of present.get(def.name) ?? []) if (!want.has(p)) removals++;
    if (removals > PIPAPO_MAX_DELETES) rebuilt.push(def.name);
  }

  const freshSets = new Set<string>();
  for (const k of kSets.values()) {
    const def = wantedSets.get(k.name);
    if (def && setMatches(def, k) && !rebuilt.includes(k.name)) continue;
    cmds.push(`delete set ${t} ${k.name}`);
    if (def && !rebuilt.includes(k.name)) recreated.push(k.name);
    else if (!def) removedUnknown.push(`set ${k.name}`);
  }
  for (const s of sets) {
    const k = kSets.get(s.name);
    if (k && setMatches(s, k) && !rebuilt.includes(s.name)) continue;
    cmds.push(`add set ${t} ${s.name} { ${renderSetBody(s)} }`);
    freshSets.add(s.name);
  }

  // A counter the config no longer uses stays (with its count) until the table goes.
  for (const name of counterNames(config)) cmds.push(`add counter ${t} ${name}`);
  for (const c of chains) {
    if (keptChains.has(c.name)) continue;
    const head = renderChainHead(c);
    cmds.push(head ? `add chain ${t} ${c.name} { ${head} }` : `add chain ${t} ${c.name}`);
  }
  for (const c of chains) for (const r of c.rules) cmds.push(`add rule ${t} ${c.name} ${r}`);

  const changes: SetChange[] = [];
  for (const [name, want] of wanted) {
    const have = freshSets.has(name) ? new Set<string>() : (present.get(name) ?? new Set<string>());
    const d = diffTexts(want, have);
    if (d.remove.length > 0) cmds.push(...staticElementCommands('delete', config.table, name, d.remove));
    if (d.add.length > 0) cmds.push(...staticElementCommands('add', config.table, name, d.add));
    if (d.add.length > 0 || d.remove.length > 0)
      changes.push({ set: name, added: d.add.length, removed: d.remove.length });
  }

  return {
    commands: cmds,
    createdTable: kernel === null,
    recreatedSets: recreated,
    rebuiltSets: rebuilt,
    removedUnknown,
    elementChanges: changes,
    newlyGoverned: newlyGovernedPrefixes(present, wanted),
  };
}
