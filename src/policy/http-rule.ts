/**
 * HTTP rules of an inspected rule (`verify: Inspect`): which requests inside the TLS connection
 * may pass. Parsing (from the document's `http` list) and the pure matcher live here; the
 * inspecting proxy asks decideRequest (decide-request.ts), which asks matchHttpRules.
 *
 * One HTTP rule matches a request when every part it sets matches:
 *   methods  the request method is one of them (case-sensitive, as RFC 9110 says; written
 *            upper-case in policies)
 *   path     exact, prefix, or a regular expression over the whole canonical path
 *            (src/core/http-path.ts; the query is never part of it)
 *   headers  each matcher holds for at least one field of that name: present, exact value, or
 *            a regular expression over the whole value
 *   hosts    the request's host is one of these names/patterns (each inside the rule's toFQDNs)
 *   websocket  an Upgrade: websocket request matches only a rule that says `websocket: true`
 * A rule that sets nothing matches every request (except upgrades). Regular expressions run on
 * RE2 (the npm `re2` binding): linear time in the input, no backtracking, so no policy author
 * can write an expression that stalls the proxy on a crafted path (NAME-12's class).
 */
import RE2 from 're2';
import { canonicalPath } from '../core/http-path.ts';
import type { CanonicalName } from '../core/names.ts';
import {
  type FqdnPattern,
  type PatternOptions,
  parsePattern,
  patternMatches,
  patternText,
} from './pattern.ts';

export type PathMatcher =
  | { readonly kind: 'exact'; readonly value: string }
  | { readonly kind: 'prefix'; readonly value: string }
  | { readonly kind: 'regex'; readonly value: string; readonly re: RE2 };

export type HeaderMatcher =
  | { readonly name: string; readonly kind: 'present' }
  | { readonly name: string; readonly kind: 'exact'; readonly value: string }
  | { readonly name: string; readonly kind: 'regex'; readonly value: string; readonly re: RE2 };

export interface HttpHost {
  readonly text: string;
  readonly pattern: FqdnPattern;
}

export interface HttpRule {
  /** null: any method. */
  readonly methods: readonly string[] | null;
  /** null: any path. */
  readonly path: PathMatcher | null;
  readonly headers: readonly HeaderMatcher[];
  /** null: any name of the enclosing rule. */
  readonly hosts: readonly HttpHost[] | null;
  readonly websocket: boolean;
}

/** The document's form (native schema `http` entries). */
export interface HttpRuleInput {
  readonly methods?: readonly string[] | undefined;
  readonly path?:
    | {
        readonly exact?: string | undefined;
        readonly prefix?: string | undefined;
        readonly regex?: string | undefined;
      }
    | undefined;
  readonly headers?:
    | ReadonlyArray<{
        readonly name: string;
        readonly value?: string | undefined;
        readonly regex?: string | undefined;
      }>
    | undefined;
  readonly hosts?: readonly string[] | undefined;
  readonly websocket?: boolean | undefined;
}

/** What a request shows the matcher; built once per request by the proxy or the CLI. */
export interface HttpRequestFacts {
  readonly method: string;
  readonly host: CanonicalName;
  /** Canonical path (canonicalPath), without the query. */
  readonly path: string;
  /** Field names lower-case, values trimmed, in order; repeated names repeat. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /** An Upgrade: websocket request. */
  readonly websocket: boolean;
}

/** Why no HTTP rule matched: the furthest any rule got, in this order. */
export const HttpReason = {
  Allowed: 'http_rule',
  HostNotAllowed: 'http_host_not_allowed',
  PathNotAllowed: 'path_not_allowed',
  MethodNotAllowed: 'method_not_allowed',
  HeaderNotAllowed: 'header_not_allowed',
  WebsocketNotAllowed: 'websocket_not_allowed',
} as const;
export type HttpReason = (typeof HttpReason)[keyof typeof HttpReason];

const STAGES: readonly HttpReason[] = [
  HttpReason.HostNotAllowed,
  HttpReason.PathNotAllowed,
  HttpReason.MethodNotAllowed,
  HttpReason.HeaderNotAllowed,
  HttpReason.WebsocketNotAllowed,
];

export type HttpMatch =
  | { readonly matched: true; readonly index: number }
  | { readonly matched: false; readonly reason: HttpReason };

/** How far one rule gets: 5 when it matches, else the stage that failed. */
function stageOf(rule: HttpRule, r: HttpRequestFacts): number {
  if (rule.hosts !== null && !rule.hosts.some((h) => patternMatches(h.pattern, r.host))) return 0;
  if (rule.path !== null && !pathMatches(rule.path, r.path)) return 1;
  if (rule.methods !== null && !rule.methods.includes(r.method)) return 2;
  for (const h of rule.headers) if (!headerMatches(h, r.headers)) return 3;
  if (r.websocket && !rule.websocket) return 4;
  return 5;
}

/** The first HTTP rule that matches, or the reason none did. */
export function matchHttpRules(rules: readonly HttpRule[], r: HttpRequestFacts): HttpMatch {
  let furthest = 0;
  for (let i = 0; i < rules.length; i++) {
    const stage = stageOf(rules[i] as HttpRule, r);
    if (stage === 5) return { matched: true, index: i };
    if (stage > furthest) furthest = stage;
  }
  return { matched: false, reason: STAGES[furthest] as HttpReason };
}

export function pathMatches(m: PathMatcher, path: string): boolean {
  switch (m.kind) {
    case 'exact':
      return path === m.value;
    case 'prefix':
      return path.startsWith(m.value);
    case 'regex':
      return m.re.test(path);
  }
}

function headerMatches(m: HeaderMatcher, fields: ReadonlyArray<readonly [string, string]>): boolean {
  for (const [name, value] of fields) {
    if (name !== m.name) continue;
    if (m.kind === 'present') return true;
    if (m.kind === 'exact' ? value === m.value : m.re.test(value)) return true;
  }
  return false;
}

const MAX_REGEX_CHARS = 1024;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * A regular expression that must match a whole value, on RE2. Anchored here so that `/a` never
 * means "contains /a" (the Envoy and Cilium meaning: a full match).
 */
export function fullMatchRegex(source: string): RE2 | string {
  if (source.length === 0) return 'an empty regular expression';
  if (source.length > MAX_REGEX_CHARS)
    return `a regular expression longer than ${MAX_REGEX_CHARS} characters`;
  try {
    return new RE2(`^(?:${source})$`);
  } catch (err) {
    return `not an RE2 regular expression: ${err instanceof Error ? err.message : String(err)}`;
  }
}

/** One problem with an HTTP rule, at a path below it ("methods[0]"). */
export interface HttpRuleProblem {
  readonly path: string;
  readonly message: string;
}

/** Parse and check one HTTP rule of the document; problems name the field. */
export function parseHttpRule(
  input: HttpRuleInput,
  options: PatternOptions,
): { rule: HttpRule; problems: [] } | { rule: null; problems: HttpRuleProblem[] } {
  const problems: HttpRuleProblem[] = [];
  let methods: string[] | null = null;
  if (input.methods !== undefined) {
    if (input.methods.length === 0)
      problems.push({
        path: 'methods',
        message: 'an empty list matches nothing; leave it out for any method',
      });
    methods = [];
    input.methods.forEach((m, i) => {
      if (!TOKEN.test(m) || m.length > 32)
        problems.push({ path: `methods[${i}]`, message: `${JSON.stringify(m)} is not an HTTP method` });
      else if (m !== m.toUpperCase())
        problems.push({
          path: `methods[${i}]`,
          message: `write methods upper-case (${m.toUpperCase()}): they are case-sensitive`,
        });
      else if (!methods!.includes(m)) methods!.push(m);
    });
  }
  let path: PathMatcher | null = null;
  if (input.path !== undefined) {
    const set = (['exact', 'prefix', 'regex'] as const).filter((k) => input.path?.[k] !== undefined);
    if (set.length !== 1) problems.push({ path: 'path', message: 'exactly one of exact, prefix or regex' });
    else {
      const kind = set[0]!;
      const value = input.path[kind]!;
      if (kind === 'regex') {
        const re = fullMatchRegex(value);
        if (typeof re === 'string') problems.push({ path: 'path.regex', message: re });
        else path = { kind, value, re };
      } else if (!value.startsWith('/'))
        problems.push({ path: `path.${kind}`, message: 'a path starts with /' });
      else {
        const canon = canonicalRulePath(value);
        if (canon === null)
          problems.push({
            path: `path.${kind}`,
            message: `${JSON.stringify(value)} is not a canonical path (no dot segments, %2F, backslash, query or fragment)`,
          });
        else path = { kind, value: canon };
      }
    }
  }
  const headers: HeaderMatcher[] = [];
  (input.headers ?? []).forEach((h, i) => {
    const name = h.name.toLowerCase();
    if (!TOKEN.test(h.name))
      problems.push({ path: `headers[${i}].name`, message: `${JSON.stringify(h.name)} is not a field name` });
    else if (name === 'host' || name.startsWith(':'))
      problems.push({
        path: `headers[${i}].name`,
        message: 'the host is matched with hosts, not as a header',
      });
    else if (h.value !== undefined && h.regex !== undefined)
      problems.push({ path: `headers[${i}]`, message: 'at most one of value or regex' });
    else if (h.regex !== undefined) {
      const re = fullMatchRegex(h.regex);
      if (typeof re === 'string') problems.push({ path: `headers[${i}].regex`, message: re });
      else headers.push({ name, kind: 'regex', value: h.regex, re });
    } else if (h.value !== undefined) headers.push({ name, kind: 'exact', value: h.value.trim() });
    else headers.push({ name, kind: 'present' });
  });
  let hosts: HttpHost[] | null = null;
  if (input.hosts !== undefined) {
    hosts = [];
    if (input.hosts.length === 0)
      problems.push({
        path: 'hosts',
        message: "an empty list matches nothing; leave it out for all of the rule's names",
      });
    input.hosts.forEach((text, i) => {
      const p = parsePattern(text, options);
      if (p instanceof Error) problems.push({ path: `hosts[${i}]`, message: p.message });
      else hosts!.push({ text: patternText(p), pattern: p });
    });
  }
  if (problems.length > 0) return { rule: null, problems };
  return { rule: { methods, path, headers, hosts, websocket: input.websocket ?? false }, problems: [] };
}

/** A path as a rule writes it, in the canonical form requests are matched in; null if it has none. */
function canonicalRulePath(value: string): string | null {
  const c = canonicalPath(value);
  return 'reason' in c || c.query !== null ? null : c.path;
}

/**
 * Is every name `inner` matches also matched by `outer`? Exact for names and the native
 * wildcards; label globs count only when written identically (a conservative answer: a host
 * list that cannot be proven inside the rule is refused, never widened).
 */
export function patternWithin(inner: FqdnPattern, outer: FqdnPattern): boolean {
  if (inner.kind === 'exact') return patternMatches(outer, inner.name);
  const under = (s: string, t: string) => t === '' || s === t || s.endsWith(`.${t}`);
  switch (outer.kind) {
    case 'exact':
      return false;
    case 'one-label':
      return inner.kind === 'one-label' && inner.suffix === outer.suffix;
    case 'any-depth':
      return (inner.kind === 'one-label' || inner.kind === 'any-depth') && under(inner.suffix, outer.suffix);
    case 'label-glob':
      return patternText(inner) === patternText(outer);
  }
}
