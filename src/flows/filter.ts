/**
 * Flow filters: what `namegate observe` flags, the flow API's query parameters and the dashboard's
 * filter box all compile to. Values of one kind are alternatives (--verdict deny --verdict drop:
 * either), kinds are combined (--namespace ci --verdict deny: both), as in `hubble observe`.
 *
 *   pod        "ns/name" prefix ("ci/" = the namespace, "ci/runner-" = those pods; a gateway
 *              source group is "<namespace>/<group>")
 *   namespace  exact
 *   label      a selector: "app=web", "app!=web", "app", "!app", comma = and
 *   verdict    allow, deny, audit, drop, error
 *   name       a policy pattern: api.example.com, *.example.com, **.example.com
 *   ip         the destination address, or a CIDR it is in
 *   port       the destination port
 *   protocol   tcp, udp, icmp, ... (and dns, tls, http: the application protocol)
 *   type       dns, proxy, kernel
 * Every list is bounded, and a bad value is an NG_USAGE_INVALID error naming the flag.
 */
import { ErrorCode, NamegateError } from '../core/errors.ts';
import { CidrSet, parseCidr } from '../core/ip.ts';
import type { CanonicalName } from '../core/names.ts';
import { type FqdnPattern, parsePattern, patternMatches } from '../policy/pattern.ts';
import { compileSelector, type LabelSelectorRequirement, labelKeyProblem } from '../policy/selector.ts';
import { FLOW_TYPES, FLOW_VERDICTS, type FlowEvent, type FlowType, type FlowVerdict } from './event.ts';

export interface FlowFilterSpec {
  readonly pod?: readonly string[];
  readonly namespace?: readonly string[];
  readonly label?: readonly string[];
  readonly verdict?: readonly string[];
  readonly name?: readonly string[];
  readonly ip?: readonly string[];
  readonly port?: readonly (string | number)[];
  readonly protocol?: readonly string[];
  readonly type?: readonly string[];
}

export const FILTER_KEYS = [
  'pod',
  'namespace',
  'label',
  'verdict',
  'name',
  'ip',
  'port',
  'protocol',
  'type',
] as const;
export type FilterKey = (typeof FILTER_KEYS)[number];

/** Values per kind; a filter is for people, not a way to send the agent a large list. */
export const MAX_FILTER_VALUES = 32;
const MAX_VALUE_CHARS = 256;

export type FlowPredicate = (e: FlowEvent) => boolean;

const acceptAll: FlowPredicate = () => true;

function usage(flag: string, message: string): NamegateError {
  return new NamegateError(ErrorCode.UsageInvalid, `--${flag}: ${message}`);
}

function values(spec: FlowFilterSpec, key: FilterKey): string[] {
  const list = (spec[key] ?? []).map(String);
  if (list.length > MAX_FILTER_VALUES) throw usage(key, `at most ${MAX_FILTER_VALUES} values`);
  for (const v of list) if (v.length > MAX_VALUE_CHARS) throw usage(key, 'value too long');
  return list;
}

/** "k=v,k!=v,k,!k" as selector requirements. */
export function parseLabelFilter(text: string): LabelSelectorRequirement[] {
  const out: LabelSelectorRequirement[] = [];
  for (const raw of text.split(',')) {
    const term = raw.trim();
    if (term === '') continue;
    let req: LabelSelectorRequirement;
    const ne = term.indexOf('!=');
    const eq = term.indexOf('=');
    if (ne > 0) req = { key: term.slice(0, ne), operator: 'NotIn', values: [term.slice(ne + 2)] };
    else if (eq > 0)
      req = { key: term.slice(0, eq), operator: 'In', values: [term.slice(eq + 1).replace(/^=/, '')] };
    else if (term.startsWith('!')) req = { key: term.slice(1), operator: 'DoesNotExist' };
    else req = { key: term, operator: 'Exists' };
    const problem = labelKeyProblem(req.key.trim());
    if (problem) throw usage('label', problem);
    out.push({ ...req, key: req.key.trim() });
  }
  if (out.length === 0) throw usage('label', `${JSON.stringify(text)} has no label`);
  return out;
}

function anyOf<T>(items: readonly T[], test: (item: T) => boolean): boolean {
  for (const i of items) if (test(i)) return true;
  return false;
}

/** Compile a spec to a predicate; throws NG_USAGE_INVALID on a bad value. */
export function compileFilter(spec: FlowFilterSpec): FlowPredicate {
  const checks: FlowPredicate[] = [];

  const pods = values(spec, 'pod');
  if (pods.length > 0)
    checks.push((e) => {
      const who =
        e.namespace !== null && e.pod !== null ? `${e.namespace}/${e.pod}` : (e.pod ?? e.identity ?? '');
      return anyOf(pods, (p) => who.startsWith(p));
    });

  const namespaces = values(spec, 'namespace');
  if (namespaces.length > 0) checks.push((e) => e.namespace !== null && namespaces.includes(e.namespace));

  const selectors = values(spec, 'label').map((l) =>
    compileSelector({ matchExpressions: parseLabelFilter(l) }),
  );
  if (selectors.length > 0) checks.push((e) => anyOf(selectors, (s) => s(e.labels ?? {})));

  const verdicts = values(spec, 'verdict').map((v) => v.toLowerCase());
  for (const v of verdicts)
    if (!(FLOW_VERDICTS as readonly string[]).includes(v))
      throw usage('verdict', `${v} is not one of ${FLOW_VERDICTS.join(', ')}`);
  if (verdicts.length > 0) {
    const set = new Set(verdicts as FlowVerdict[]);
    checks.push((e) => set.has(e.verdict));
  }

  const patterns: FqdnPattern[] = values(spec, 'name').map((n) => {
    const p = parsePattern(n.toLowerCase(), { allowPublicSuffixWildcards: true });
    if (p instanceof Error) throw usage('name', p.message);
    return p;
  });
  if (patterns.length > 0)
    checks.push((e) => e.name !== null && anyOf(patterns, (p) => patternMatches(p, e.name as CanonicalName)));

  const cidrs = values(spec, 'ip').map((text) => {
    const c = parseCidr(text);
    if (typeof c === 'string') throw usage('ip', c);
    return c;
  });
  if (cidrs.length > 0) {
    const set = new CidrSet(cidrs);
    checks.push((e) => (e.dst !== null && set.has(e.dst)) || anyOf(e.ips, (ip) => set.has(ip)));
  }

  const ports = values(spec, 'port').map((p) => {
    const n = Number(p);
    if (!Number.isInteger(n) || n < 0 || n > 65535) throw usage('port', `${p} is not a port`);
    return n;
  });
  if (ports.length > 0) checks.push((e) => e.dport !== null && ports.includes(e.dport));

  const protocols = values(spec, 'protocol').map((p) => p.toLowerCase());
  if (protocols.length > 0)
    checks.push(
      (e) =>
        (e.proto !== null && protocols.includes(e.proto)) ||
        (e.l7 !== null && protocols.includes(e.l7)) ||
        (e.type === 'dns' && protocols.includes('dns')),
    );

  const types = values(spec, 'type').map((t) => t.toLowerCase());
  for (const t of types)
    if (!(FLOW_TYPES as readonly string[]).includes(t))
      throw usage('type', `${t} is not one of ${FLOW_TYPES.join(', ')}`);
  if (types.length > 0) {
    const set = new Set(types as FlowType[]);
    checks.push((e) => set.has(e.type));
  }

  if (checks.length === 0) return acceptAll;
  return (e) => {
    for (const c of checks) if (!c(e)) return false;
    return true;
  };
}

/** Whether a spec filters anything (an empty one lets the agent skip work). */
export function isEmptyFilter(spec: FlowFilterSpec): boolean {
  return FILTER_KEYS.every((k) => (spec[k] ?? []).length === 0);
}

/** A spec as URL query parameters (repeated keys), for the flow API. */
export function filterToQuery(spec: FlowFilterSpec, into = new URLSearchParams()): URLSearchParams {
  for (const k of FILTER_KEYS) for (const v of spec[k] ?? []) into.append(k, String(v));
  return into;
}

/** Query parameters as a spec (unknown keys are ignored; compileFilter checks the values). */
export function filterFromQuery(q: URLSearchParams): FlowFilterSpec {
  const spec: Record<string, string[]> = {};
  for (const k of FILTER_KEYS) {
    const all = q.getAll(k);
    if (all.length > 0) spec[k] = all;
  }
  return spec;
}
