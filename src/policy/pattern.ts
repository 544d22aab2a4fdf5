/**
 * FQDN patterns: parsing, validation and the reference (obviously correct, label by label)
 * matcher. The fast matcher is FqdnIndex; tests prove the two agree.
 *
 * Native forms:
 *   api.example.com     exactly that name
 *   *.example.com       exactly one label in front of example.com
 *   **.example.com      one or more labels in front of example.com
 * Neither wildcard matches example.com itself.
 *
 * Foreign forms kept only for importers (opt-in per policy with allowPartialLabelWildcards):
 * `*` inside a label (Cilium: zero or more of [a-z0-9_-] within that one label), and a
 * whole-label `*` after the first label.
 */
import { getPublicSuffix } from 'tldts';
import { ErrorCode, NamegateError } from '../core/errors.ts';
import { type CanonicalName, MAX_NAME_OCTETS, tryCanonicalName } from '../core/names.ts';

export type FqdnPattern =
  | { readonly kind: 'exact'; readonly name: CanonicalName }
  /** `*.suffix`; an empty suffix means "any one-label name". */
  | { readonly kind: 'one-label'; readonly suffix: string }
  /** `**.suffix`; an empty suffix means "any name". */
  | { readonly kind: 'any-depth'; readonly suffix: string }
  /**
   * Labels with `*` globs (left to right) in front of a literal suffix; with anyDepthPrefix,
   * one or more further labels may come before them.
   */
  | {
      readonly kind: 'label-glob';
      readonly globs: readonly string[];
      readonly suffix: string;
      readonly anyDepthPrefix: boolean;
    };

export interface PatternOptions {
  /** Allow a wildcard whose fixed part is a public suffix (`*.com`, `**.co.uk`, `**`). */
  readonly allowPublicSuffixWildcards?: boolean;
  /** Allow `*` inside a label or after the first label (Cilium's meaning). */
  readonly allowPartialLabelWildcards?: boolean;
}

export class PatternError extends NamegateError {
  readonly pattern: string;
  constructor(pattern: string, detail: string) {
    super(ErrorCode.PatternInvalid, `${JSON.stringify(pattern)}: ${detail}`);
    this.name = 'PatternError';
    this.pattern = pattern;
  }
}

const MAX_PATTERN_CHARS = 1024;
const GLOB_LABEL = /^[a-z0-9_*-]+$/;

/** Parse a native pattern (or a name) into its form, or return the error. */
export function parsePattern(text: string, options: PatternOptions = {}): FqdnPattern | PatternError {
  if (text.length === 0) return new PatternError(text, 'a pattern may not be empty');
  if (text.length > MAX_PATTERN_CHARS) return new PatternError(text.slice(0, 40), 'the pattern is too long');
  if (!text.includes('*')) {
    const name = tryCanonicalName(text);
    if (typeof name !== 'string') return new PatternError(text, stripQuoted(name.message, text));
    return { kind: 'exact', name };
  }
  const body = text.endsWith('.') ? text.slice(0, -1) : text;
  const labels = body.split('.');
  // Only the one trailing dot (the root) is dropped; any other empty label is an error, also
  // where it would leave an empty fixed part ("*.." is not "*").
  if (labels.includes('')) return new PatternError(text, 'empty label (two dots in a row, or a leading dot)');
  const first = labels[0] ?? '';
  const rest = labels.slice(1).join('.');
  const restHasStar = rest.includes('*');

  if ((first === '*' || first === '**') && !restHasStar) {
    const suffix = rest === '' ? '' : canonicalSuffix(text, rest);
    if (suffix instanceof PatternError) return suffix;
    const guard =
      publicSuffixGuard(text, suffix, options) ?? lengthGuard(text, suffix === '' ? 1 : suffix.length + 2);
    if (guard) return guard;
    return first === '*' ? { kind: 'one-label', suffix } : { kind: 'any-depth', suffix };
  }

  if (!options.allowPartialLabelWildcards) {
    const starLabel = labels.find((l) => l.includes('*')) ?? '';
    if (starLabel !== '*' && starLabel !== '**') {
      return new PatternError(text, 'a wildcard must be a whole label (write "*.name" or "**.name")');
    }
    return new PatternError(text, 'a wildcard may only be the first label');
  }
  return parseLabelGlob(text, labels, options);
}

function parseLabelGlob(text: string, labels: string[], options: PatternOptions): FqdnPattern | PatternError {
  let anyDepthPrefix = false;
  let rest = labels;
  if (rest[0] === '**' && rest.length > 1) {
    anyDepthPrefix = true;
    rest = rest.slice(1);
  }
  let lastGlob = -1;
  rest.forEach((l, i) => {
    if (l.includes('*')) lastGlob = i;
  });
  const globs: string[] = [];
  for (const raw of rest.slice(0, lastGlob + 1)) {
    const label = raw.toLowerCase().replace(/\*+/g, '*');
    if (label.length === 0) return new PatternError(text, 'empty label in pattern');
    if (label.length > 63 && label.replaceAll('*', '').length > 63) {
      return new PatternError(text, `label ${JSON.stringify(raw)} is longer than 63 octets`);
    }
    if (!GLOB_LABEL.test(label)) {
      return new PatternError(
        text,
        `label ${JSON.stringify(raw)} may contain only letters, digits, "-", "_" and "*"`,
      );
    }
    globs.push(label);
  }
  const suffixText = rest.slice(lastGlob + 1).join('.');
  const suffix = suffixText === '' ? '' : canonicalSuffix(text, suffixText);
  if (suffix instanceof PatternError) return suffix;
  // The shortest name the pattern can match: every glob label needs at least one octet.
  const shortest =
    globs.reduce((n, g) => n + Math.max(1, g.replaceAll('*', '').length) + 1, -1) +
    (anyDepthPrefix ? 2 : 0) +
    (suffix === '' ? 0 : suffix.length + 1);
  const guard = publicSuffixGuard(text, suffix, options) ?? lengthGuard(text, shortest);
  if (guard) return guard;
  return { kind: 'label-glob', globs, suffix, anyDepthPrefix };
}

function canonicalSuffix(text: string, suffix: string): string | PatternError {
  const name = tryCanonicalName(suffix);
  if (typeof name !== 'string') return new PatternError(text, stripQuoted(name.message, suffix));
  return name;
}

/** A NameError message starts with the quoted input; the pattern error quotes the pattern instead. */
function stripQuoted(message: string, quoted: string): string {
  const prefix = `${JSON.stringify(quoted)}: `;
  return message.startsWith(prefix) ? message.slice(prefix.length) : message;
}

/** True when the name is itself a public suffix (ICANN section only: `*.s3.amazonaws.com` is fine). */
export function isPublicSuffix(name: string): boolean {
  if (name === '') return true;
  return getPublicSuffix(name, { allowPrivateDomains: false }) === name;
}

/** A wildcard no name of at most 253 octets can match is a mistake (NAME-11), not a rule. */
function lengthGuard(text: string, shortest: number): PatternError | null {
  if (shortest <= MAX_NAME_OCTETS) return null;
  return new PatternError(
    text,
    `no name can match: the shortest match has ${shortest} octets; at most ${MAX_NAME_OCTETS} are allowed`,
  );
}

function publicSuffixGuard(text: string, suffix: string, options: PatternOptions): PatternError | null {
  if (options.allowPublicSuffixWildcards || !isPublicSuffix(suffix)) return null;
  const what =
    suffix === ''
      ? 'matches every name'
      : `has the public suffix ${JSON.stringify(suffix)} as its fixed part`;
  return new PatternError(
    text,
    `the wildcard ${what}; set allowPublicSuffixWildcards: true if that is intended`,
  );
}

/** The native text of a pattern (A-labels, no trailing dot). */
export function patternText(p: FqdnPattern): string {
  switch (p.kind) {
    case 'exact':
      return p.name;
    case 'one-label':
      return p.suffix === '' ? '*' : `*.${p.suffix}`;
    case 'any-depth':
      return p.suffix === '' ? '**' : `**.${p.suffix}`;
    case 'label-glob': {
      const parts = [...(p.anyDepthPrefix ? ['**'] : []), ...p.globs, ...(p.suffix === '' ? [] : [p.suffix])];
      return parts.join('.');
    }
  }
}

/** True for every form but an exact name. */
export function isWildcard(p: FqdnPattern): boolean {
  return p.kind !== 'exact';
}

/**
 * The reference matcher: compares labels one by one, with no index and no regular expression.
 * Slow but obviously correct; the property tests hold FqdnIndex to it.
 */
export function patternMatches(p: FqdnPattern, name: CanonicalName): boolean {
  if (name.length > MAX_NAME_OCTETS) return false;
  const labels = name.split('.');
  switch (p.kind) {
    case 'exact':
      return name === p.name;
    case 'one-label': {
      const suffix = p.suffix === '' ? [] : p.suffix.split('.');
      return labels.length === suffix.length + 1 && endsWithLabels(labels, suffix);
    }
    case 'any-depth': {
      const suffix = p.suffix === '' ? [] : p.suffix.split('.');
      return labels.length >= suffix.length + 1 && endsWithLabels(labels, suffix);
    }
    case 'label-glob': {
      const suffix = p.suffix === '' ? [] : p.suffix.split('.');
      const fixed = p.globs.length + suffix.length;
      if (p.anyDepthPrefix ? labels.length < fixed + 1 : labels.length !== fixed) return false;
      if (!endsWithLabels(labels, suffix)) return false;
      const start = labels.length - fixed;
      return p.globs.every((g, i) => globMatchesLabel(g, labels[start + i] ?? ''));
    }
  }
}

function endsWithLabels(labels: string[], suffix: string[]): boolean {
  const offset = labels.length - suffix.length;
  if (offset < 0) return false;
  return suffix.every((s, i) => labels[offset + i] === s);
}

/**
 * Match one label against a glob whose only metacharacter is `*` (zero or more characters of
 * the label). Iterative with one backtrack point, so it runs in O(len(glob) * len(label)) at
 * worst, and labels are at most 63 octets.
 */
export function globMatchesLabel(glob: string, label: string): boolean {
  let g = 0;
  let l = 0;
  let starG = -1;
  let starL = 0;
  while (l < label.length) {
    if (g < glob.length && glob[g] !== '*' && glob[g] === label[l]) {
      g++;
      l++;
    } else if (g < glob.length && glob[g] === '*') {
      starG = g++;
      starL = l;
    } else if (starG >= 0) {
      g = starG + 1;
      l = ++starL;
    } else {
      return false;
    }
  }
  while (g < glob.length && glob[g] === '*') g++;
  return g === glob.length;
}
