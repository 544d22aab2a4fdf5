/**
 * Compile validated policies into the structures decisions run on: one FqdnIndex over every
 * pattern of every policy (so a lookup costs the same with 10 or 100,000 patterns), compiled
 * selectors, and CIDR sets. The result is immutable; a policy change builds a new one.
 */
import { CidrSet } from '../core/ip.ts';
import { type Decision, ruleDecisions } from './decision.ts';
import { FqdnIndex } from './fqdn-index.ts';
import type { Identity, Mode, Policy, PortRange, Rule, Verify } from './model.ts';
import { compileSelector, type Selector } from './selector.ts';

/** Points at one rule of one policy of a compiled set. */
export interface RuleRef {
  readonly policy: number;
  readonly rule: number;
}

/**
 * What the FQDN index holds for a rule: its place, what the hot path reads (ports, verify), and
 * the decisions that name it, built once so a decision allocates nothing. One per rule, shared
 * by all its patterns: a few thousand small objects that stay in cache.
 */
export interface IndexedRule extends RuleRef {
  /** A plain { policy, rule } for callers that keep references. */
  readonly ref: RuleRef;
  readonly ports: readonly PortRange[];
  /** The same ranges in CompiledPolicies.portTable: entries from portStart to portEnd. */
  readonly portStart: number;
  readonly portEnd: number;
  readonly verify: Verify;
  /** allow in Enforce, allow in Audit, port_not_allowed in Enforce, port_not_allowed in Audit. */
  readonly decisions: readonly [Decision, Decision, Decision, Decision];
}

/** Which policies apply to one identity, computed once per identity object. */
export interface Selection {
  /** Enforce if any Enforce policy selects the identity, else Audit if any Audit one does. */
  readonly mode: Mode | null;
  /**
   * Bit i (word i >>> 5, bit i & 31) is set when policy i selects the identity in `mode`; see
   * isSelected. A bitset keeps every identity's selection small enough to stay in cache.
   */
  readonly selected: Uint32Array;
  /** The indices of those policies, in order. */
  readonly policies: readonly number[];
  /**
   * The same bits where decisions read them: words [base, base + words) of `bits`, an array
   * shared by many selections (see CompiledPolicies.#place).
   */
  readonly bits: Uint32Array;
  readonly base: number;
}

interface CompiledRule {
  readonly rule: Rule;
  readonly cidrs: ReadonlyArray<{ readonly allow: CidrSet; readonly except: CidrSet }>;
}

interface CompiledPolicy {
  readonly policy: Policy;
  readonly pods: Selector;
  readonly namespaces: Selector;
  readonly rules: readonly CompiledRule[];
}

export class CompiledPolicies {
  readonly policies: readonly Policy[];
  readonly fqdns = new FqdnIndex<IndexedRule>();
  /**
   * Every FQDN rule's port ranges, three numbers each: protocol (0 TCP, 1 UDP), first, last.
   * One small array instead of range objects spread over the heap keeps the port check of a
   * decision in cache.
   */
  readonly portTable: Int32Array;
  readonly #compiled: readonly CompiledPolicy[];
  readonly #selections = new WeakMap<Identity, Selection>();
  /** Selections by their bits: identities with the same labels share one (and its row). */
  readonly #byBits = new Map<string, Selection>();
  /** The block new selections' bits go into, and how much of it is used. */
  #block = new Uint32Array(0);
  #blockUsed = 0;
  readonly #words: number;
  /** True when at least one rule has a toCIDRs entry (lets hot paths skip CIDR work). */
  readonly hasCidrRules: boolean;

  constructor(policies: readonly Policy[]) {
    // A stable order makes "which policy decided" deterministic whatever the input order.
    this.policies = [...policies].sort(comparePolicies);
    let hasCidrRules = false;
    const ports: number[] = [];
    this.#compiled = this.policies.map((policy, p) => {
      const rules = policy.rules.map((rule, r) => {
        if (rule.fqdns.length > 0) {
          const ref: RuleRef = { policy: p, rule: r };
          const portStart = ports.length;
          for (const range of rule.ports) ports.push(range.protocol === 'TCP' ? 0 : 1, range.from, range.to);
          const indexed: IndexedRule = {
            policy: p,
            rule: r,
            ref,
            ports: rule.ports,
            portStart,
            portEnd: ports.length,
            verify: rule.verify,
            decisions: ruleDecisions(policy.ref, r),
          };
          for (const f of rule.fqdns) this.fqdns.add(f.pattern, indexed);
        }
        if (rule.cidrs.length > 0) hasCidrRules = true;
        return {
          rule,
          cidrs: rule.cidrs.map((c) => ({ allow: new CidrSet([c.cidr]), except: new CidrSet(c.except) })),
        };
      });
      return {
        policy,
        pods: compileSelector(policy.podSelector),
        namespaces: compileSelector(policy.namespaceSelector),
        rules,
      };
    });
    this.hasCidrRules = hasCidrRules;
    this.#words = (this.policies.length + 31) >>> 5;
    this.portTable = Int32Array.from(ports);
    this.fqdns.seal();
  }

  get size(): number {
    return this.policies.length;
  }

  rule(ref: RuleRef): Rule {
    const rule = this.policies[ref.policy]?.rules[ref.rule];
    if (!rule) throw new RangeError(`no rule ${ref.policy}/${ref.rule}`);
    return rule;
  }

  /** Does policy i select this identity (ignoring mode)? */
  selects(i: number, identity: Identity): boolean {
    const c = this.#compiled[i];
    if (!c) return false;
    const p = c.policy;
    if (p.namespace !== null && p.namespace !== identity.namespace) return false;
    if (p.namespace === null && !c.namespaces(identity.namespaceLabels)) return false;
    return c.pods(identity.labels);
  }

  selection(identity: Identity): Selection {
    let sel = this.#selections.get(identity);
    if (!sel) {
      sel = this.#select(identity);
      this.#selections.set(identity, sel);
    }
    return sel;
  }

  #select(identity: Identity): Selection {
    const enforce: number[] = [];
    const audit: number[] = [];
    for (let i = 0; i < this.#compiled.length; i++) {
      if (!this.selects(i, identity)) continue;
      (this.policies[i]?.mode === 'Audit' ? audit : enforce).push(i);
    }
    // Audit policies never loosen or tighten what Enforce policies decide for the same source.
    const mode: Mode | null = enforce.length > 0 ? 'Enforce' : audit.length > 0 ? 'Audit' : null;
    const chosen = mode === 'Enforce' ? enforce : audit;
    const words = this.#words;
    const own = new Uint32Array(words);
    for (const i of chosen) own[i >>> 5] = (own[i >>> 5] as number) | (1 << (i & 31));
    const key = own.join(',');
    const shared = this.#byBits.get(key);
    if (shared && shared.mode === mode) return shared;
    const [bits, base] = this.#place(own);
    const selection: Selection = {
      mode,
      selected: bits.subarray(base, base + words),
      policies: chosen,
      bits,
      base,
    };
    if (this.#byBits.size >= MAX_SHARED_SELECTIONS) this.#byBits.clear();
    this.#byBits.set(key, selection);
    return selection;
  }

  /**
   * Copy a selection's bits into the current block (a new block when it is full). Decisions read
   * them there: through one array that many selections share, instead of each identity's own
   * typed array, one dependent memory read fewer per decision, which at 100,000 patterns is a
   * measurable share of it. A block is freed with the last selection in it.
   */
  #place(own: Uint32Array): [Uint32Array, number] {
    const words = own.length;
    if (this.#blockUsed + words > this.#block.length) {
      this.#block = new Uint32Array(Math.max(words, BLOCK_WORDS));
      this.#blockUsed = 0;
    }
    const base = this.#blockUsed;
    this.#block.set(own, base);
    this.#blockUsed += words;
    return [this.#block, base];
  }

  /** Rules of selected policies whose toCIDRs contain `ip` (any port). */
  cidrRulesFor(selection: Selection, ip: string): RuleRef[] {
    const out: RuleRef[] = [];
    if (!this.hasCidrRules) return out;
    for (const p of selection.policies) {
      const rules = this.#compiled[p]?.rules ?? [];
      rules.forEach((r, i) => {
        if (r.cidrs.some((c) => c.allow.has(ip) && !c.except.has(ip))) out.push({ policy: p, rule: i });
      });
    }
    return out;
  }
}

/** Words per block of selection bits (64 KiB). */
const BLOCK_WORDS = 16_384;
/** Distinct selections remembered for sharing; past it, sharing starts over (memory stays bounded). */
const MAX_SHARED_SELECTIONS = 65_536;

// Code-unit order, not localeCompare: the order (and so which policy a decision names) must not
// depend on the machine's locale ("aa" sorts after "z" in Danish collation).
function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Does policy i count for the identity of this selection? */
export function isSelected(selection: Selection, i: number): boolean {
  return (((selection.selected[i >>> 5] as number) >>> (i & 31)) & 1) === 1;
}

function comparePolicies(a: Policy, b: Policy): number {
  return (
    compareText(a.ref.kind, b.ref.kind) ||
    compareText(a.ref.namespace ?? '', b.ref.namespace ?? '') ||
    compareText(a.ref.name, b.ref.name)
  );
}
