/**
 * Validate namegate.dev/v1alpha1 documents and turn them into Policy values. Every problem
 * carries the field path it is about, e.g.
 *   spec.egress[2].toFQDNs[0].pattern: "*example.com": a wildcard must be a whole label
 */
import type { z } from 'zod';
import { type Cidr, CidrSet, parseCidr } from '../core/ip.ts';
import {
  ALL_PORTS,
  API_VERSION,
  type CidrRule,
  type FqdnRule,
  type Policy,
  type PolicyKind,
  type PortRange,
  type Rule,
} from '../policy/model.ts';
import { type PatternOptions, parsePattern, patternText } from '../policy/pattern.ts';
import { type LabelSelector, validateSelector } from '../policy/selector.ts';
import {
  type ClusterEgressPolicySpecInput,
  ClusterEgressPolicySpecSchema,
  type EgressPolicySpecInput,
  EgressPolicySpecSchema,
  MetadataSchema,
  type RuleSchema,
} from './native-schema.ts';

export interface Problem {
  readonly path: string;
  readonly message: string;
}

export interface NativeResult {
  readonly policy: Policy | null;
  readonly errors: readonly Problem[];
  readonly warnings: readonly Problem[];
}

/** A native document as importers produce it and `convert` prints it. */
export interface NativeDocument {
  apiVersion: typeof API_VERSION;
  kind: PolicyKind;
  metadata: { name: string; namespace?: string; annotations?: Record<string, string> };
  spec: EgressPolicySpecInput | ClusterEgressPolicySpecInput;
}

export const NATIVE_KINDS: readonly PolicyKind[] = ['EgressPolicy', 'ClusterEgressPolicy'];

/** Limits that keep one document from costing unbounded memory or time to compile. */
export const LIMITS = {
  rulesPerPolicy: 1000,
  fqdnsPerRule: 10_000,
  cidrsPerRule: 10_000,
  portsPerRule: 1000,
} as const;

const TOP_LEVEL_FIELDS = new Set(['apiVersion', 'kind', 'metadata', 'spec', 'status']);
const DNS1123_SUBDOMAIN = /^[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?$/;
const DNS1123_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out;
}

export function validateNative(doc: unknown, defaultNamespace = 'default'): NativeResult {
  const errors: Problem[] = [];
  const warnings: Problem[] = [];
  const fail = (): NativeResult => ({ policy: null, errors, warnings });

  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    errors.push({ path: '', message: 'a policy document must be a mapping' });
    return fail();
  }
  const d = doc as Record<string, unknown>;
  // A misspelt top-level field ("sepc") would otherwise leave an empty spec: a policy that
  // silently denies everything to its pods.
  for (const key of Object.keys(d)) {
    if (!TOP_LEVEL_FIELDS.has(key))
      errors.push({ path: key, message: `unknown field ${JSON.stringify(key)}` });
  }
  if (d['apiVersion'] !== API_VERSION) {
    errors.push({ path: 'apiVersion', message: `expected ${JSON.stringify(API_VERSION)}` });
  }
  const kind = d['kind'];
  if (kind !== 'EgressPolicy' && kind !== 'ClusterEgressPolicy') {
    errors.push({ path: 'kind', message: 'expected EgressPolicy or ClusterEgressPolicy' });
    return fail();
  }
  const meta = MetadataSchema.safeParse(d['metadata']);
  if (!meta.success) {
    pushZodIssues(errors, meta.error, ['metadata']);
    return fail();
  }
  const name = meta.data.name;
  if (!DNS1123_SUBDOMAIN.test(name)) {
    errors.push({ path: 'metadata.name', message: `${JSON.stringify(name)} is not a valid Kubernetes name` });
  }
  let namespace: string | null = null;
  if (kind === 'EgressPolicy') {
    namespace = meta.data.namespace ?? defaultNamespace;
    if (!DNS1123_LABEL.test(namespace)) {
      errors.push({
        path: 'metadata.namespace',
        message: `${JSON.stringify(namespace)} is not a valid namespace`,
      });
    }
  } else if (meta.data.namespace !== undefined) {
    warnings.push({ path: 'metadata.namespace', message: 'ignored: ClusterEgressPolicy is cluster-scoped' });
  }

  const schema = kind === 'EgressPolicy' ? EgressPolicySpecSchema : ClusterEgressPolicySpecSchema;
  const parsed = schema.safeParse(d['spec'] ?? {});
  if (!parsed.success) {
    pushZodIssues(errors, parsed.error, ['spec']);
    return fail();
  }
  const spec = parsed.data;
  const options: PatternOptions = {
    allowPublicSuffixWildcards: spec.allowPublicSuffixWildcards ?? false,
    allowPartialLabelWildcards: spec.allowPartialLabelWildcards ?? false,
  };
  const podSelector: LabelSelector = spec.podSelector ?? {};
  for (const [path, message] of validateSelector(podSelector, 'spec.podSelector'))
    errors.push({ path, message });
  let namespaceSelector: LabelSelector | null = null;
  if ('namespaceSelector' in spec && spec.namespaceSelector) {
    namespaceSelector = spec.namespaceSelector;
    for (const [path, message] of validateSelector(namespaceSelector, 'spec.namespaceSelector')) {
      errors.push({ path, message });
    }
  }

  const egress = spec.egress ?? [];
  if (egress.length > LIMITS.rulesPerPolicy) {
    errors.push({ path: 'spec.egress', message: `at most ${LIMITS.rulesPerPolicy} rules per policy` });
    return fail();
  }
  if (egress.length === 0) {
    warnings.push({ path: 'spec.egress', message: 'no rules: the selected sources may reach nothing' });
  }
  const rules = egress.map((r, i) => compileRule(r, `spec.egress[${i}]`, options, errors, warnings));
  if (errors.length > 0) return fail();

  const policy: Policy = {
    ref: { kind, namespace, name },
    mode: spec.mode,
    namespace,
    podSelector,
    namespaceSelector: kind === 'ClusterEgressPolicy' ? (namespaceSelector ?? {}) : null,
    rules,
    options,
    generation: meta.data.generation,
  };
  return { policy, errors, warnings };
}

/** Where a rule's problems go: errors make the document invalid, warnings only inform. */
interface Problems {
  readonly errors: Problem[];
  readonly warnings: Problem[];
}

function compileRule(
  r: z.output<typeof RuleSchema>,
  at: string,
  options: PatternOptions,
  errors: Problem[],
  warnings: Problem[],
): Rule {
  const p: Problems = { errors, warnings };
  const toFQDNs = r.toFQDNs ?? [];
  const toCIDRs = r.toCIDRs ?? [];
  const ports = r.ports ?? [];
  // Over a limit: skip this rule's entries (not later rules: their problems are reported too).
  if (!withinRuleLimits(p, at, toFQDNs.length, toCIDRs.length, ports.length)) {
    return { fqdns: [], cidrs: [], ports: ALL_PORTS, verify: 'None' };
  }
  if (toFQDNs.length === 0 && toCIDRs.length === 0) {
    errors.push({
      path: at,
      message: 'a rule needs toFQDNs or toCIDRs (there is no "any destination" rule)',
    });
  }
  const fqdns = toFQDNs.flatMap((f, j) => compileFqdn(p, f, `${at}.toFQDNs[${j}]`, options) ?? []);
  const cidrs = toCIDRs.flatMap((c, j) => compileCidr(p, c, `${at}.toCIDRs[${j}]`) ?? []);
  const ranges = ports.flatMap((port, j) => compilePort(p, port, `${at}.ports[${j}]`) ?? []);
  if (r.verify === 'SNI') checkVerify(p, at, ranges, toFQDNs.length);
  return { fqdns, cidrs, ports: ranges.length > 0 ? ranges : ALL_PORTS, verify: r.verify };
}

function withinRuleLimits(p: Problems, at: string, fqdns: number, cidrs: number, ports: number): boolean {
  const before = p.errors.length;
  if (fqdns > LIMITS.fqdnsPerRule) {
    p.errors.push({ path: `${at}.toFQDNs`, message: `at most ${LIMITS.fqdnsPerRule} entries per rule` });
  }
  if (cidrs > LIMITS.cidrsPerRule) {
    p.errors.push({ path: `${at}.toCIDRs`, message: `at most ${LIMITS.cidrsPerRule} entries per rule` });
  }
  if (ports > LIMITS.portsPerRule) {
    p.errors.push({ path: `${at}.ports`, message: `at most ${LIMITS.portsPerRule} entries per rule` });
  }
  return p.errors.length === before;
}

/** A toFQDNs entry: exactly one of name (no wildcards) or pattern, stored canonical. */
function compileFqdn(
  p: Problems,
  f: { name?: string | undefined; pattern?: string | undefined },
  path: string,
  options: PatternOptions,
): FqdnRule | null {
  if ((f.name === undefined) === (f.pattern === undefined)) {
    p.errors.push({ path, message: 'set exactly one of name or pattern' });
    return null;
  }
  const field = f.name !== undefined ? 'name' : 'pattern';
  const text = (f.name ?? f.pattern) as string;
  if (field === 'name' && text.includes('*')) {
    p.errors.push({
      path: `${path}.name`,
      message: `${JSON.stringify(text)}: a name has no wildcards; use pattern`,
    });
    return null;
  }
  const pattern = parsePattern(text, options);
  if (pattern instanceof Error) {
    p.errors.push({ path: `${path}.${field}`, message: pattern.message });
    return null;
  }
  const canonical = patternText(pattern);
  if (canonical !== text && canonical !== text.replace(/\.$/, '')) {
    p.warnings.push({
      path: `${path}.${field}`,
      message: `${JSON.stringify(text)} is stored as ${JSON.stringify(canonical)}`,
    });
  }
  if (pattern.kind === 'label-glob') {
    p.warnings.push({
      path: `${path}.${field}`,
      message: `${JSON.stringify(text)} uses "*" inside a label (Cilium's meaning: any characters within that one label)`,
    });
  }
  return { text: canonical, pattern };
}

/** A toCIDRs entry: a CIDR and exceptions that lie inside it. */
function compileCidr(
  p: Problems,
  c: { cidr: string; except?: string[] | undefined },
  path: string,
): CidrRule | null {
  const cidr = parseCidr(c.cidr);
  if (typeof cidr === 'string') {
    p.errors.push({ path: `${path}.cidr`, message: cidr });
    return null;
  }
  const except: Cidr[] = [];
  (c.except ?? []).forEach((e, k) => {
    const ex = parseCidr(e);
    if (typeof ex === 'string') p.errors.push({ path: `${path}.except[${k}]`, message: ex });
    else if (ex.family !== cidr.family || ex.prefix < cidr.prefix || !new CidrSet([cidr]).has(ex.address)) {
      p.errors.push({ path: `${path}.except[${k}]`, message: `${ex.text} is not inside ${cidr.text}` });
    } else except.push(ex);
  });
  return { cidr, except };
}

/** A ports entry: port, or port..endPort. */
function compilePort(
  p: Problems,
  port: { protocol: PortRange['protocol']; port: number; endPort?: number | undefined },
  path: string,
): PortRange | null {
  const end = port.endPort ?? port.port;
  if (end < port.port) {
    p.errors.push({ path: `${path}.endPort`, message: `endPort ${end} is below port ${port.port}` });
    return null;
  }
  return { protocol: port.protocol, from: port.port, to: end };
}

/** verify: SNI checks names on TCP ports, so it needs both. */
function checkVerify(p: Problems, at: string, ranges: readonly PortRange[], fqdnCount: number): void {
  if (ranges.length === 0) {
    p.errors.push({
      path: `${at}.verify`,
      message: 'verify: SNI needs ports (the TCP ports whose connections are checked)',
    });
  } else if (ranges.some((r) => r.protocol !== 'TCP')) {
    p.errors.push({ path: `${at}.verify`, message: 'verify: SNI applies to TCP ports only' });
  }
  if (fqdnCount === 0) {
    p.errors.push({
      path: `${at}.verify`,
      message: 'verify: SNI needs toFQDNs (the names connections must present)',
    });
  }
}

function pushZodIssues(errors: Problem[], error: z.ZodError, prefix: PropertyKey[]): void {
  errors.push(...zodProblems(error, prefix));
}

/** zod issues as field-path problems, in words a person reads (shared with the config loader). */
export function zodProblems(error: z.ZodError, prefix: PropertyKey[] = []): Problem[] {
  return error.issues.map((issue) => {
    const path = formatPath([...prefix, ...issue.path]);
    let message = issue.message;
    if (issue.code === 'unrecognized_keys') {
      message = `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`;
    } else if (issue.code === 'invalid_type') {
      message = `expected ${issue.expected}`;
    } else if (issue.code === 'invalid_value' && 'values' in issue) {
      message = `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    } else if (issue.code === 'too_small') {
      message =
        issue.origin === 'array'
          ? `needs at least ${issue.minimum} item(s)`
          : issue.origin === 'string'
            ? `needs at least ${issue.minimum} character(s)`
            : `must be at least ${issue.minimum}`;
    } else if (issue.code === 'too_big') {
      message =
        issue.origin === 'array'
          ? `takes at most ${issue.maximum} item(s)`
          : issue.origin === 'string'
            ? `takes at most ${issue.maximum} character(s)`
            : `must be at most ${issue.maximum}`;
    }
    return { path, message };
  });
}
