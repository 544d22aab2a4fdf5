/**
 * From observed names to the fewest patterns that allow exactly what was seen, or a little more
 * where many siblings appeared:
 *   - names are kept exact;
 *   - when at least `siblings` distinct names share a parent under one registrable domain
 *     (tldts, ICANN section: the same notion of public suffix that policy validation uses), they
 *     become one wildcard on their longest common parent: `*.parent` when every one of them is
 *     exactly one label below it, `**.parent` when some are deeper;
 *   - a wildcard never stands on a public suffix (the parent is at least the registrable domain),
 *     and the parent itself stays an exact name when it was seen (a wildcard does not match it).
 */
import { getDomain } from 'tldts';

export interface NamePattern {
  /** An exact name, or `*.x` / `**.x`. */
  readonly text: string;
  readonly kind: 'exact' | 'one-label' | 'any-depth';
  /** The observed names it stands for. */
  readonly names: readonly string[];
}

function labels(name: string): string[] {
  return name.split('.');
}

/** The longest common label suffix of names (at least `floor`). */
function commonParent(names: readonly string[], floor: string): string {
  const split = names.map(labels);
  const out: string[] = [];
  for (let i = 1; ; i++) {
    const label = split[0]?.[split[0].length - i];
    if (label === undefined) break;
    if (!split.every((l) => l.length >= i && l[l.length - i] === label)) break;
    out.unshift(label);
  }
  const parent = out.join('.');
  return parent.length >= floor.length ? parent : floor;
}

export function generalize(names: Iterable<string>, siblings: number): NamePattern[] {
  const unique = [...new Set(names)].sort();
  const byDomain = new Map<string, string[]>();
  const out: NamePattern[] = [];
  for (const n of unique) {
    const domain = getDomain(n, { allowPrivateDomains: false });
    if (!domain) {
      out.push({ text: n, kind: 'exact', names: [n] });
      continue;
    }
    let list = byDomain.get(domain);
    if (!list) {
      list = [];
      byDomain.set(domain, list);
    }
    list.push(n);
  }
  for (const [domain, list] of byDomain) {
    const below = list.filter((n) => n !== domain);
    if (siblings < 2 || below.length < siblings) {
      for (const n of list) out.push({ text: n, kind: 'exact', names: [n] });
      continue;
    }
    const parent = commonParent(below, domain);
    const depth = labels(parent).length;
    // The parent itself (when it was seen) is not a sibling: a wildcard does not match it.
    const deeper = below.filter((n) => labels(n).length > depth);
    if (deeper.length < siblings) {
      for (const n of list) out.push({ text: n, kind: 'exact', names: [n] });
      continue;
    }
    const oneLabel = deeper.every((n) => labels(n).length === depth + 1);
    out.push({
      text: `${oneLabel ? '*' : '**'}.${parent}`,
      kind: oneLabel ? 'one-label' : 'any-depth',
      names: deeper,
    });
    for (const n of list) if (!deeper.includes(n)) out.push({ text: n, kind: 'exact', names: [n] });
  }
  return out.sort(
    (a, b) =>
      a.text.replace(/^\*+\./, '').localeCompare(b.text.replace(/^\*+\./, '')) ||
      a.text.localeCompare(b.text),
  );
}
