/**
 * Compile validated policies into the structures decisions run on: one FqdnIndex over every
 * pattern of every policy (so a lookup costs the same with 10 or 100,000 patterns), compiled
 * selectors, and CIDR sets. The result is immutable; a policy change builds a new one.
 */
import { CidrSet } from '../core/ip.ts';
import { FqdnIndex } from './fqdn-index.ts';
import type { Identity, Mode, Policy, Rule } from './model.ts';
import { compileSelector, type Selector } from './selector.ts';

/** Points at one rule of one policy of a compiled set. */
export interface RuleRef {
  readonly policy: number;
  readonly rule: number;
}

/** Which policies apply to one identity, computed once per identity object. */
export interface Selection {
  /** Enforce if any Enforce policy selects the identity, else Audit if any Audit one does. */
  readonly mode: Mode | null;
  /** selected[i] === 1 when policy i selects the identity in `mode`. */
  readonly selected: Uint8Array;
  /** The indices of those policies, in order. */
  readonly policies: readonly number[];
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
  readonly fqdns = new FqdnIndex<RuleRef>();
  readonly #compiled: readonly CompiledPolicy[];
  readonly #selections = new WeakMap<Identity, Selection>();
  /** True when at least one rule has a toCIDRs entry (lets hot paths skip CIDR work). */
  readonly hasCidrRules: boolean;

  constructor(policies: readonly Policy[]) {
    // A stable order makes "which policy decided" deterministic whatever the input order.
    this.policies = [...policies].sort(comparePolicies);
    let hasCidrRules = false;
    this.#compiled = this.policies.map((policy, p) => {
      const rules = policy.rules.map((rule, r) => {
        for (const f of rule.fqdns) this.fqdns.add(f.pattern, { policy: p, rule: r });
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
    const selected = new Uint8Array(this.policies.length);
    for (const i of chosen) selected[i] = 1;
    return { mode, selected, policies: chosen };
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

function comparePolicies(a: Policy, b: Policy): number {
  return (
    a.ref.kind.localeCompare(b.ref.kind) ||
    (a.ref.namespace ?? '').localeCompare(b.ref.namespace ?? '') ||
    a.ref.name.localeCompare(b.ref.name)
  );
}
