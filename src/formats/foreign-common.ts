/**
 * What the four foreign importers share: a problem collector, defensive readers for untrusted
 * YAML values (every list bounded, every wrong type an error with its field path), label
 * selectors, CIDRs, port spans, and the check that every pattern an importer writes is one the
 * native validator accepts (setting the pattern options it needs).
 *
 * Importers translate wildcard meanings themselves; this file never guesses a meaning.
 */
import {
  type Cidr,
  CidrSet,
  canonicalIp,
  classifyAddress,
  ipFamily,
  ipToBytes,
  parseCidr,
} from '../core/ip.ts';
import { API_VERSION, type PolicyKind, type Protocol } from '../policy/model.ts';
import { type PatternOptions, parsePattern } from '../policy/pattern.ts';
import type { LabelSelector, LabelSelectorRequirement, SelectorOperator } from '../policy/selector.ts';
import { type ImportResult, SOURCE_ANNOTATION } from './importer.ts';
import { LIMITS, type NativeDocument, type Problem } from './native.ts';
import type { RuleInput } from './native-schema.ts';

/** Bounds on what one foreign document may make an importer read. */
export const FOREIGN_LIMITS = {
  /** Items in any one list (rules, peers, names, ports...). */
  listItems: LIMITS.fqdnsPerRule,
  /** Entries of a Cilium `specs` list. */
  specs: 1000,
  /** Characters of any one string the importers parse (names, CIDRs, ports). */
  textChars: 1024,
} as const;

/** Collects the warnings and errors of one conversion. */
export class Conversion {
  readonly warnings: Problem[] = [];
  readonly errors: Problem[] = [];

  warn(path: string, message: string): void {
    this.warnings.push({ path, message });
  }

  error(path: string, message: string): void {
    this.errors.push({ path, message });
  }

  get failed(): boolean {
    return this.errors.length > 0;
  }

  /** A document with errors yields no native documents: half a policy could allow too much. */
  result(documents: NativeDocument[]): ImportResult {
    return { documents: this.failed ? [] : documents, warnings: this.warnings, errors: this.errors };
  }
}

/** `spec` + `egress` -> `spec.egress`; `spec.egress` + 2 -> `spec.egress[2]`. */
export function child(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return path === '' ? key : `${path}.${key}`;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Absent (undefined or YAML null). */
export function absent(v: unknown): v is undefined | null {
  return v === undefined || v === null;
}

export function readRecord(c: Conversion, v: unknown, path: string): Record<string, unknown> | undefined {
  if (isRecord(v)) return v;
  c.error(path, absent(v) ? 'required' : 'expected a mapping');
  return undefined;
}

/** An optional mapping: undefined when absent, an error when present but not a mapping. */
export function readOptionalRecord(
  c: Conversion,
  v: unknown,
  path: string,
): Record<string, unknown> | undefined {
  if (absent(v)) return undefined;
  return readRecord(c, v, path);
}

/** A list; absent reads as empty; a wrong type or too many items is an error (undefined). */
export function readList(
  c: Conversion,
  v: unknown,
  path: string,
  max: number = FOREIGN_LIMITS.listItems,
): unknown[] | undefined {
  if (absent(v)) return [];
  if (!Array.isArray(v)) {
    c.error(path, 'expected a list');
    return undefined;
  }
  if (v.length > max) {
    c.error(path, `at most ${max} entries are read`);
    return undefined;
  }
  return v;
}

export function readString(c: Conversion, v: unknown, path: string): string | undefined {
  if (typeof v !== 'string') {
    c.error(path, absent(v) ? 'required' : 'expected a string');
    return undefined;
  }
  if (v.length > FOREIGN_LIMITS.textChars) {
    c.error(path, `longer than ${FOREIGN_LIMITS.textChars} characters`);
    return undefined;
  }
  return v;
}

export function readOptionalString(c: Conversion, v: unknown, path: string): string | undefined {
  return absent(v) ? undefined : readString(c, v, path);
}

export function readBoolean(c: Conversion, v: unknown, path: string): boolean | undefined {
  if (absent(v)) return undefined;
  if (typeof v !== 'boolean') {
    c.error(path, 'expected true or false');
    return undefined;
  }
  return v;
}

/** A port number 1..65535 given as a number (or, where `strings` allows, a numeric string). */
export function readPortNumber(
  c: Conversion,
  v: unknown,
  path: string,
  options: { allowZero?: boolean } = {},
): number | undefined {
  const n = typeof v === 'string' && /^[0-9]{1,5}$/.test(v) ? Number(v) : v;
  const min = options.allowZero ? 0 : 1;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > 65535) {
    c.error(path, `expected a port number ${min}..65535`);
    return undefined;
  }
  return n;
}

/** Warn about every field the importer neither reads nor knows to ignore. */
export function warnUnknown(
  c: Conversion,
  obj: Record<string, unknown>,
  path: string,
  known: readonly string[],
): void {
  for (const key of Object.keys(obj)) {
    if (!known.includes(key)) c.warn(child(path, key), 'ignored: not a field this importer knows');
  }
}

const OPERATORS: readonly SelectorOperator[] = ['In', 'NotIn', 'Exists', 'DoesNotExist'];

/**
 * A Kubernetes LabelSelector, structure only: keys are returned as written (Cilium prefixes
 * them with a source), so the caller maps keys and then runs validateSelector.
 */
export function readSelector(c: Conversion, v: unknown, path: string): LabelSelector | undefined {
  if (absent(v)) return {};
  const rec = readRecord(c, v, path);
  if (!rec) return undefined;
  warnUnknown(c, rec, path, ['matchLabels', 'matchExpressions']);
  const before = c.errors.length;
  const matchLabels: Record<string, string> = {};
  const labels = readOptionalRecord(c, rec['matchLabels'], child(path, 'matchLabels'));
  for (const [key, value] of Object.entries(labels ?? {})) {
    if (typeof value !== 'string') {
      c.error(child(child(path, 'matchLabels'), key), 'a label value must be a string (quote it)');
    } else {
      matchLabels[key] = value;
    }
  }
  const matchExpressions: LabelSelectorRequirement[] = [];
  const exprPath = child(path, 'matchExpressions');
  (readList(c, rec['matchExpressions'], exprPath) ?? []).forEach((e, i) => {
    const at = child(exprPath, i);
    const req = readRecord(c, e, at);
    if (!req) return;
    warnUnknown(c, req, at, ['key', 'operator', 'values']);
    const key = readString(c, req['key'], child(at, 'key'));
    const operator = req['operator'];
    if (!OPERATORS.includes(operator as SelectorOperator)) {
      c.error(child(at, 'operator'), 'expected In, NotIn, Exists or DoesNotExist');
    }
    const values: string[] = [];
    (readList(c, req['values'], child(at, 'values')) ?? []).forEach((value, j) => {
      if (typeof value === 'string') values.push(value);
      else c.error(child(child(at, 'values'), j), 'a label value must be a string (quote it)');
    });
    if (key !== undefined && OPERATORS.includes(operator as SelectorOperator)) {
      matchExpressions.push({
        key,
        operator: operator as SelectorOperator,
        ...(values.length > 0 ? { values } : {}),
      });
    }
  });
  if (c.errors.length > before) return undefined;
  return compactSelector({ matchLabels, matchExpressions });
}

/** Drop empty parts so the converted YAML stays short; {} still selects everything. */
export function compactSelector(s: LabelSelector): LabelSelector {
  const out: { matchLabels?: Record<string, string>; matchExpressions?: LabelSelectorRequirement[] } = {};
  if (s.matchLabels && Object.keys(s.matchLabels).length > 0) out.matchLabels = { ...s.matchLabels };
  if (s.matchExpressions && s.matchExpressions.length > 0) out.matchExpressions = [...s.matchExpressions];
  return out;
}

export interface ForeignMeta {
  readonly name: string;
  /** Null for cluster-scoped documents. */
  readonly namespace: string | null;
}

export function readMeta(
  c: Conversion,
  doc: Record<string, unknown>,
  namespaced: boolean,
  defaultNamespace: string,
): ForeignMeta | undefined {
  const meta = readRecord(c, doc['metadata'], 'metadata');
  if (!meta) return undefined;
  const name = readString(c, meta['name'], 'metadata.name');
  const ns = readOptionalString(c, meta['namespace'], 'metadata.namespace');
  if (name === undefined) return undefined;
  if (!namespaced && ns !== undefined) {
    c.warn('metadata.namespace', 'ignored: this kind is cluster-scoped');
  }
  return { name, namespace: namespaced ? (ns ?? defaultNamespace) : null };
}

/** "cilium.io/v2 CiliumNetworkPolicy shop/allow-api" (+ " specs[1]" when one of several). */
export function sourceText(apiVersion: string, kind: string, meta: ForeignMeta, part = ''): string {
  const ref = meta.namespace === null ? meta.name : `${meta.namespace}/${meta.name}`;
  return `${apiVersion} ${kind} ${ref}${part === '' ? '' : ` ${part}`}`;
}

/** Predictable names: the foreign name, or name-1, name-2... when one document yields several. */
export function memberName(base: string, position: number, total: number): string {
  return total === 1 ? base : `${base}-${position}`;
}

export interface NativeSpecParts {
  readonly podSelector: LabelSelector;
  /** ClusterEgressPolicy only; undefined selects every namespace. */
  readonly namespaceSelector?: LabelSelector | undefined;
  readonly rules: RuleInput[];
  readonly flags: PatternFlags;
}

export function nativeDocument(args: {
  kind: PolicyKind;
  name: string;
  namespace: string | null;
  source: string;
  parts: NativeSpecParts;
}): NativeDocument {
  const { parts } = args;
  const spec: Record<string, unknown> = { podSelector: parts.podSelector };
  if (args.kind === 'ClusterEgressPolicy' && parts.namespaceSelector !== undefined) {
    spec['namespaceSelector'] = parts.namespaceSelector;
  }
  spec['mode'] = 'Enforce';
  if (parts.flags.publicSuffix) spec['allowPublicSuffixWildcards'] = true;
  if (parts.flags.partial) spec['allowPartialLabelWildcards'] = true;
  spec['egress'] = parts.rules;
  return {
    apiVersion: API_VERSION,
    kind: args.kind,
    metadata: {
      name: args.name,
      ...(args.kind === 'EgressPolicy' && args.namespace !== null ? { namespace: args.namespace } : {}),
      annotations: { [SOURCE_ANNOTATION]: args.source },
    },
    spec: spec as NativeDocument['spec'],
  };
}

/** The pattern options a converted policy needs; set as the importer admits its patterns. */
export class PatternFlags {
  partial = false;
  publicSuffix = false;
}

const ATTEMPTS: ReadonlyArray<PatternOptions> = [
  {},
  { allowPartialLabelWildcards: true },
  { allowPublicSuffixWildcards: true },
  { allowPartialLabelWildcards: true, allowPublicSuffixWildcards: true },
];

/**
 * Check a native name or pattern the importer produced, with the fewest options that make it
 * valid; records the options in `flags` and warns when the public-suffix guard had to be
 * lifted (no foreign format has that guard). Returns false (with an error) when no option helps.
 */
export function admitPattern(
  c: Conversion,
  text: string,
  path: string,
  flags: PatternFlags,
  dialect: string,
): boolean {
  let last = '';
  for (const options of ATTEMPTS) {
    const parsed = parsePattern(text, options);
    if (parsed instanceof Error) {
      last = parsed.message;
      continue;
    }
    if (options.allowPartialLabelWildcards) flags.partial = true;
    if (options.allowPublicSuffixWildcards) {
      flags.publicSuffix = true;
      c.warn(
        path,
        `${JSON.stringify(text)} has a public suffix (or nothing) as its fixed part; ` +
          `allowPublicSuffixWildcards is set so the converted policy keeps ${dialect}'s meaning`,
      );
    }
    return true;
  }
  c.error(path, last);
  return false;
}

/** An inclusive port range of one protocol, as importers collect them. */
export interface PortSpan {
  readonly protocol: Protocol;
  readonly from: number;
  readonly to: number;
}

export const EVERY_PORT: readonly PortSpan[] = [
  { protocol: 'TCP', from: 1, to: 65535 },
  { protocol: 'UDP', from: 1, to: 65535 },
];

/**
 * Native `ports` for a set of spans: merged and sorted per protocol, or undefined when the spans
 * cover every port of TCP and UDP (native: an empty list). Callers never pass an empty list:
 * "no usable port" must drop the rule, never widen it to every port.
 */
export function nativePorts(spans: readonly PortSpan[]): RuleInput['ports'] {
  const out: NonNullable<RuleInput['ports']> = [];
  let full = 0;
  for (const protocol of ['TCP', 'UDP'] as const) {
    const merged = mergeSpans(spans.filter((s) => s.protocol === protocol));
    const first = merged[0];
    if (merged.length === 1 && first && first.from <= 1 && first.to === 65535) full++;
    for (const s of merged) {
      const from = Math.max(1, s.from);
      out.push(s.to === from ? { port: from, protocol } : { port: from, endPort: s.to, protocol });
    }
  }
  return full === 2 ? undefined : out;
}

function mergeSpans(spans: readonly PortSpan[]): PortSpan[] {
  const sorted = [...spans].sort((a, b) => a.from - b.from || a.to - b.to);
  const out: PortSpan[] = [];
  for (const s of sorted) {
    const last = out[out.length - 1];
    if (last && s.from <= last.to + 1) out[out.length - 1] = { ...last, to: Math.max(last.to, s.to) };
    else out.push(s);
  }
  return out;
}

/**
 * A CIDR (or a bare address) in a foreign document. Several formats accept host bits
 * (10.1.2.3/8); their meaning is the masked network, kept with a warning.
 */
export function readCidr(c: Conversion, v: unknown, path: string): Cidr | undefined {
  const text = readString(c, v, path);
  if (text === undefined) return undefined;
  const parsed = parseCidr(text.trim());
  if (typeof parsed !== 'string') return parsed;
  const masked = maskCidr(text.trim());
  if (masked) {
    c.warn(path, `${JSON.stringify(text)} has host bits set; read as ${masked.text}`);
    return masked;
  }
  c.error(path, parsed);
  return undefined;
}

function maskCidr(text: string): Cidr | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const address = canonicalIp(text.slice(0, slash));
  const prefixText = text.slice(slash + 1);
  if (!address || !/^[0-9]{1,3}$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  const bytes = ipToBytes(address);
  if (prefix > bytes.length * 8) return undefined;
  for (let i = 0; i < bytes.length; i++) {
    const bits = Math.max(0, Math.min(8, prefix - i * 8));
    bytes[i] = (bytes[i] ?? 0) & (0xff << (8 - bits)) & 0xff;
  }
  const network = ipFamily(address) === 4 ? bytes.join('.') : bytesToIpv6(bytes);
  const out = parseCidr(`${network}/${prefix}`);
  return typeof out === 'string' ? undefined : out;
}

function bytesToIpv6(bytes: number[]): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  return canonicalIp(groups.join(':')) ?? groups.join(':');
}

/** The last address of a CIDR. */
export function lastAddress(cidr: Cidr): string {
  const bytes = ipToBytes(cidr.address);
  for (let i = 0; i < bytes.length; i++) {
    const hostBits = Math.max(0, Math.min(8, bytes.length * 8 - cidr.prefix - (bytes.length - 1 - i) * 8));
    bytes[i] = (bytes[i] ?? 0) | ((1 << hostBits) - 1);
  }
  return cidr.family === 4 ? bytes.join('.') : bytesToIpv6(bytes);
}

/**
 * True when a whole CIDR lies in one class of addresses namegate never learns from DNS answers
 * (private, loopback, link-local...): denying it changes nothing for name-based rules.
 */
export function neverLearned(cidr: Cidr): boolean {
  const first = classifyAddress(cidr.address);
  return first !== 'public' && first === classifyAddress(lastAddress(cidr));
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  return new CidrSet([a]).has(b.address) || new CidrSet([b]).has(a.address);
}

/** Every address of both families (Cilium's `world`, NPEP's 0.0.0.0/0 + ::/0). */
export const EVERY_ADDRESS: readonly string[] = ['0.0.0.0/0', '::/0'];

export function coversEverything(cidrs: readonly Cidr[]): boolean {
  return (
    cidrs.some((c) => c.family === 4 && c.prefix === 0) && cidrs.some((c) => c.family === 6 && c.prefix === 0)
  );
}
