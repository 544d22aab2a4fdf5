/**
 * Identity for the gateway: source groups from the agent config, each a set of CIDRs with a
 * name, a namespace and labels. A source IP belongs to the group with the longest prefix that
 * contains it. Two groups listing the very same prefix would make that choice ambiguous, so such
 * a configuration is rejected; nested prefixes are fine (the more specific one wins).
 *
 * entries() yields CIDR texts ("10.0.1.0/24") rather than single IPs: a group may cover more
 * addresses than can be listed, and the datapath programs sources as intervals.
 */
import { isIP } from 'node:net';
import { ErrorCode, NamegateError } from '../core/errors.ts';
import { type Cidr, ipToBytes, parseCidr } from '../core/ip.ts';
import type { Identity } from '../policy/model.ts';
import type { Labels } from '../policy/selector.ts';
import { type IdentityProvider, makeIdentity } from './identity.ts';

export interface SourceGroup {
  readonly name: string;
  readonly namespace: string;
  readonly labels: Labels;
  readonly namespaceLabels?: Labels;
  readonly cidrs: readonly string[];
}

export interface GroupProblem {
  readonly path: string;
  readonly message: string;
}

/** Problems in a list of groups, each with the path of the field it is about. */
export function groupProblems(groups: readonly SourceGroup[]): GroupProblem[] {
  const problems: GroupProblem[] = [];
  const names = new Map<string, number>();
  const prefixes = new Map<string, string>();
  groups.forEach((g, i) => {
    const prior = names.get(g.name);
    if (prior !== undefined)
      problems.push({ path: `[${i}].name`, message: `"${g.name}" is also group ${prior}` });
    names.set(g.name, i);
    g.cidrs.forEach((text, j) => {
      const cidr = parseCidr(text);
      if (typeof cidr === 'string') {
        problems.push({ path: `[${i}].cidrs[${j}]`, message: cidr });
        return;
      }
      const owner = prefixes.get(cidr.text);
      if (owner !== undefined && owner !== g.name) {
        problems.push({
          path: `[${i}].cidrs[${j}]`,
          message: `${cidr.text} is also listed by group "${owner}"; equal prefixes in two groups are ambiguous`,
        });
      }
      prefixes.set(cidr.text, g.name);
    });
  });
  return problems;
}

const LOOKUP_CACHE_MAX = 16_384;

interface Table {
  /** Distinct prefix lengths, longest first. */
  readonly lengths: number[];
  readonly byLength: Map<number, Map<string, Identity>>;
}

export class StaticGroups implements IdentityProvider {
  #v4: Table = { lengths: [], byLength: new Map() };
  #v6: Table = { lengths: [], byLength: new Map() };
  #entries: Array<readonly [string, Identity]> = [];
  /** identity -> its host addresses (/32 and /128 entries), for siblings(). */
  #hosts = new Map<Identity, string[]>();
  // Sources repeat; the prefix walk runs once per address until the cache fills.
  readonly #cache = new Map<string, Identity | null>();
  readonly #listeners = new Set<() => void>();

  constructor(groups: readonly SourceGroup[]) {
    this.#build(groups);
  }

  /** Swap in new groups (a config reload); listeners are told. */
  replace(groups: readonly SourceGroup[]): void {
    this.#build(groups);
    for (const l of this.#listeners) l();
  }

  #build(groups: readonly SourceGroup[]): void {
    const problems = groupProblems(groups);
    if (problems.length > 0) {
      throw new NamegateError(
        ErrorCode.ConfigInvalid,
        problems.map((p) => `sources${p.path}: ${p.message}`).join('; '),
      );
    }
    const v4: Table = { lengths: [], byLength: new Map() };
    const v6: Table = { lengths: [], byLength: new Map() };
    const entries: Array<readonly [string, Identity]> = [];
    const hosts = new Map<Identity, string[]>();
    for (const g of groups) {
      const identity = makeIdentity(`group:${g.name}`, g.namespace, g.labels, g.namespaceLabels ?? {});
      for (const text of g.cidrs) {
        const cidr = parseCidr(text) as Cidr;
        const table = cidr.family === 4 ? v4 : v6;
        let map = table.byLength.get(cidr.prefix);
        if (!map) {
          map = new Map();
          table.byLength.set(cidr.prefix, map);
          table.lengths.push(cidr.prefix);
        }
        map.set(prefixKey(bitsOf(cidr.address), cidr.prefix), identity);
        entries.push([cidr.text, identity]);
        if (cidr.prefix === (cidr.family === 4 ? 32 : 128)) {
          const list = hosts.get(identity) ?? [];
          list.push(cidr.address);
          hosts.set(identity, list);
        }
      }
    }
    v4.lengths.sort((a, b) => b - a);
    v6.lengths.sort((a, b) => b - a);
    this.#v4 = v4;
    this.#v6 = v6;
    this.#entries = entries;
    this.#hosts = hosts;
    this.#cache.clear();
  }

  lookup(ip: string): Identity | undefined {
    const cached = this.#cache.get(ip);
    if (cached !== undefined) return cached ?? undefined;
    const family = isIP(ip);
    let found: Identity | undefined;
    if (family !== 0) {
      const table = family === 4 ? this.#v4 : this.#v6;
      const bits = bitsOf(ip);
      for (const len of table.lengths) {
        found = table.byLength.get(len)?.get(prefixKey(bits, len));
        if (found) break;
      }
    }
    if (this.#cache.size >= LOOKUP_CACHE_MAX) this.#cache.clear();
    this.#cache.set(ip, found ?? null);
    return found;
  }

  entries(): Iterable<readonly [string, Identity]> {
    return this.#entries;
  }

  /** The group's single-host entries, when `ip` is one of them; else `ip` alone. */
  siblings(ip: string): readonly string[] {
    const identity = this.lookup(ip);
    const hosts = identity ? this.#hosts.get(identity) : undefined;
    return hosts?.includes(ip) ? hosts : [ip];
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

/** The address as a string of '0'/'1' (32 or 128 characters). */
function bitsOf(ip: string): string {
  let out = '';
  for (const b of ipToBytes(ip)) out += b.toString(2).padStart(8, '0');
  return out;
}

function prefixKey(bits: string, len: number): string {
  return bits.slice(0, len);
}
