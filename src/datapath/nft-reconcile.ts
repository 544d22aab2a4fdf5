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
 *   4. add missing chains, then every rule of every chain;
 *   5. static sets (sources, drop counters, CIDR allows, verify ports) by difference.
 * The kernel applies all of it at once, so packets see the old ruleset or the new one.
 */
import type { NftConfig } from './nft-config.ts';
import { diffTexts, type StaticElements, staticElementCommands } from './nft-elements.ts';
import type { KernelChain, KernelSet, KernelTable } from './nft-json.ts';
import {
  type ChainDef,
  chainDefs,
  renderChainHead,
  renderSetBody,
  type SetDef,
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
  /** Sets or chains of the table that namegate does not define (deleted). */
  readonly removedUnknown: readonly string[];
  readonly elementChanges: readonly SetChange[];
  /** Governed sources (Enforce or Audit) that the kernel did not govern before. */
  readonly newlyGoverned: readonly string[];
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

  const freshSets = new Set<string>();
  for (const k of kSets.values()) {
    const def = wantedSets.get(k.name);
    if (def && setMatches(def, k)) continue;
    cmds.push(`delete set ${t} ${k.name}`);
    if (def) recreated.push(k.name);
    else removedUnknown.push(`set ${k.name}`);
  }
  for (const s of sets) {
    const k = kSets.get(s.name);
    if (k && setMatches(s, k)) continue;
    cmds.push(`add set ${t} ${s.name} { ${renderSetBody(s)} }`);
    freshSets.add(s.name);
  }

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

  const governedBefore = new Set<string>();
  for (const role of ['enforce', 'audit']) {
    for (const f of [4, 6]) for (const a of present.get(`${role}${f}`) ?? []) governedBefore.add(a);
  }
  const newlyGoverned: string[] = [];
  for (const role of ['enforce', 'audit']) {
    for (const f of [4, 6])
      for (const a of wanted.get(`${role}${f}`) ?? []) if (!governedBefore.has(a)) newlyGoverned.push(a);
  }

  return {
    commands: cmds,
    createdTable: kernel === null,
    recreatedSets: recreated,
    removedUnknown,
    elementChanges: changes,
    newlyGoverned,
  };
}
