/**
 * Cilium `toPorts[].serverNames`: on those ports a connection needs TLS whose SNI is one of the
 * listed names, on top of the rule's peers. namegate's SNI check requires the SNI to be a name
 * the rule allows (its toFQDNs) and the destination learned for it, so the exact conversion is a
 * rule whose toFQDNs are the names in BOTH lists: serverNames ∩ toFQDNs.
 *
 * The intersection is computed entry by entry and is never wider than either side:
 *   - an exact name on one side is kept when the other side's entry matches it;
 *   - two wildcards: the narrower one is kept when the wider one provably covers it
 *     (`**.x` covers `*.x`, `*.y.x`, `**.y.x`; equal texts cover each other);
 *   - any other overlap (partial-label globs against each other, say) is left out with a warning.
 * A serverNames entry is read as Cilium reads a matchPattern (`*` one label, `**.` one or more).
 * The price of exactness is on the narrow side: Cilium also lets an SNI in serverNames through to
 * an address learned for *another* toFQDNs name (one address, two names); namegate does not.
 */
import { type FqdnPattern, parsePattern, patternMatches, patternText } from '../policy/pattern.ts';
import { type Conversion, child, readList, readString } from './foreign-common.ts';
import type { RuleInput } from './native-schema.ts';

type FqdnPeers = NonNullable<RuleInput['toFQDNs']>;
type FqdnPeer = FqdnPeers[number];

const LENIENT = { allowPartialLabelWildcards: true, allowPublicSuffixWildcards: true };

/** The serverNames list as native pattern texts (Cilium's matchPattern meaning), or undefined when absent/empty. */
export function readServerNames(
  c: Conversion,
  value: unknown,
  path: string,
  toNative: (c: Conversion, text: string, at: string) => string | undefined,
): string[] | undefined {
  const list = readList(c, value, path);
  if (!list || list.length === 0) return undefined;
  const out: string[] = [];
  list.forEach((v, j) => {
    const at = child(path, j);
    const text = readString(c, v, at);
    if (text === undefined) return;
    const native = toNative(c, text.replace(/\.$/, ''), at);
    if (native !== undefined) out.push(native);
  });
  return out;
}

function parsed(text: string): FqdnPattern | null {
  const p = parsePattern(text, LENIENT);
  return p instanceof Error ? null : p;
}

/** Is every name `narrow` matches also matched by `wide`? (false when that is not provable here) */
function covers(wide: FqdnPattern, narrow: FqdnPattern): boolean {
  if (patternText(wide) === patternText(narrow)) return true;
  if (narrow.kind === 'exact') return patternMatches(wide, narrow.name);
  if (wide.kind === 'any-depth') {
    if (wide.suffix === '') return true;
    const tail = `.${wide.suffix}`;
    const s = narrow.suffix;
    if (narrow.kind === 'label-glob' && narrow.globs.length === 0) return false;
    // Every name of `narrow` has at least one label in front of its suffix.
    return s === wide.suffix || s.endsWith(tail);
  }
  if (wide.kind === 'one-label' && narrow.kind === 'label-glob')
    return !narrow.anyDepthPrefix && narrow.globs.length === 1 && narrow.suffix === wide.suffix;
  return false;
}

function peerOf(p: FqdnPattern): FqdnPeer {
  return p.kind === 'exact' ? { name: p.name } : { pattern: patternText(p) };
}

/**
 * serverNames ∩ toFQDNs for one PortRule. Warns about what could not be kept exactly, and when
 * nothing is left (then those ports are not converted: narrower, never wider).
 */
export function intersectServerNames(
  c: Conversion,
  path: string,
  serverNames: readonly string[],
  toFQDNs: FqdnPeers,
  /** Admit a serverNames wildcard kept as a native pattern (records the policy's pattern flags). */
  admit: (text: string) => boolean,
): FqdnPeers {
  const out = new Map<string, FqdnPeer>();
  const dropped: string[] = [];
  const peers = toFQDNs
    .map((f) => parsed(('name' in f ? f.name : f.pattern) ?? ''))
    .filter((p): p is FqdnPattern => p !== null);
  for (const text of serverNames) {
    const s = parsed(text);
    if (s === null) continue;
    let kept = false;
    for (const f of peers) {
      let both: FqdnPattern | null = null;
      if (covers(f, s)) both = s;
      else if (covers(s, f)) both = f;
      else if (s.kind !== 'exact' && f.kind !== 'exact') dropped.push(`${text} with ${patternText(f)}`);
      if (both && (both === f || both.kind === 'exact' || admit(patternText(both)))) {
        out.set(patternText(both), peerOf(both));
        kept = true;
      }
    }
    if (!kept && s.kind === 'exact') dropped.push(`${text} (no toFQDNs entry allows it)`);
  }
  if (dropped.length > 0)
    c.warn(
      path,
      `not converted (namegate keeps only names both lists allow, never more): ${dropped.join('; ')}`,
    );
  if (out.size === 0) {
    c.warn(path, 'not converted for these ports: no name is both in serverNames and allowed by toFQDNs');
    return [];
  }
  return [...out.values()];
}
