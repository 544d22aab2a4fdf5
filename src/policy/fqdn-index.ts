/**
 * The fast matcher: a trie of labels read right to left (com -> example -> api). A lookup walks
 * the name's labels once, so its cost is linear in the name's length and does not grow with the
 * number of patterns. Each node keeps the values of the patterns that end there:
 *
 *   exact   the name ends here              (api.example.com)
 *   one     exactly one more label          (*.example.com)
 *   any     one or more labels              (**.example.com)
 *   globs   Cilium-style label globs, checked label by label against what is left
 *
 * No regular expression is involved anywhere, so no input can make matching backtrack.
 */
import type { CanonicalName } from '../core/names.ts';
import { type FqdnPattern, globMatchesLabel } from './pattern.ts';

interface GlobTail<T> {
  readonly globs: readonly string[];
  readonly anyDepthPrefix: boolean;
  readonly value: T;
}

class Node<T> {
  children: Map<string, Node<T>> | null = null;
  exact: T[] | null = null;
  one: T[] | null = null;
  any: T[] | null = null;
  globs: GlobTail<T>[] | null = null;

  child(label: string): Node<T> {
    this.children ??= new Map();
    let next = this.children.get(label);
    if (!next) {
      next = new Node<T>();
      this.children.set(label, next);
    }
    return next;
  }
}

export class FqdnIndex<T> {
  readonly #root = new Node<T>();
  #size = 0;

  get size(): number {
    return this.#size;
  }

  add(pattern: FqdnPattern, value: T): void {
    this.#size++;
    switch (pattern.kind) {
      case 'exact':
        push(this.#nodeFor(pattern.name), 'exact', value);
        return;
      case 'one-label':
        push(this.#nodeFor(pattern.suffix), 'one', value);
        return;
      case 'any-depth':
        push(this.#nodeFor(pattern.suffix), 'any', value);
        return;
      case 'label-glob': {
        const node = this.#nodeFor(pattern.suffix);
        node.globs ??= [];
        node.globs.push({ globs: pattern.globs, anyDepthPrefix: pattern.anyDepthPrefix, value });
        return;
      }
    }
  }

  #nodeFor(suffix: string): Node<T> {
    let node = this.#root;
    if (suffix === '') return node;
    let end = suffix.length;
    while (end > 0) {
      const dot = suffix.lastIndexOf('.', end - 1);
      node = node.child(suffix.slice(dot + 1, end));
      end = dot;
    }
    return node;
  }

  /** Append the value of every pattern that matches `name` to `out`; returns `out`. */
  match(name: CanonicalName, out: T[] = []): T[] {
    let node: Node<T> | undefined = this.#root;
    // `end` is the length of the part of the name still in front of the current node.
    let end = name.length;
    while (node) {
      if (end === 0) {
        if (node.exact) pushAll(out, node.exact);
        return out;
      }
      const dot = name.lastIndexOf('.', end - 1);
      if (node.one && dot < 0) pushAll(out, node.one);
      if (node.any) pushAll(out, node.any);
      if (node.globs) matchGlobs(node.globs, name, end, out);
      node = node.children?.get(name.slice(dot + 1, end));
      end = Math.max(dot, 0);
    }
    return out;
  }
}

function push<T>(node: Node<T>, slot: 'exact' | 'one' | 'any', value: T): void {
  const list = node[slot];
  if (list) list.push(value);
  else node[slot] = [value];
}

function pushAll<T>(out: T[], values: T[]): void {
  for (const v of values) out.push(v);
}

/** `front` is name[0:end], the labels in front of the node's suffix. */
function matchGlobs<T>(tails: GlobTail<T>[], name: string, end: number, out: T[]): void {
  const front = name.slice(0, end).split('.');
  for (const tail of tails) {
    const extra = front.length - tail.globs.length;
    if (tail.anyDepthPrefix ? extra < 1 : extra !== 0) continue;
    let ok = true;
    for (let i = 0; i < tail.globs.length && ok; i++) {
      ok = globMatchesLabel(tail.globs[i] ?? '', front[extra + i] ?? '');
    }
    if (ok) out.push(tail.value);
  }
}
