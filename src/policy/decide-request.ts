/**
 * The decision for one request inside an inspected connection, as a plain value. The
 * connection was allowed first (decide: the name and port; the proxy: the learned address);
 * `rules` are every rule of the source's policies that allows that name and port, in decision
 * order (policy order, then rule order).
 *
 *   1. A rule without inspection (verify None or SNI) lets every request pass: allow rules
 *      add up, and that rule never asked for more (reason `fqdn_rule`).
 *   2. Otherwise the first HTTP rule, of the first inspected rule, that matches the request
 *      allows it (reason `http_rule`, naming the rule and the HTTP rule's index).
 *   3. Otherwise deny, naming the first rule and the furthest any HTTP rule got:
 *      `http_host_not_allowed`, `path_not_allowed`, `method_not_allowed`, `header_not_allowed`,
 *      `websocket_not_allowed` (http-rule.ts).
 * Audit sources get 'audit' where Enforce ones get 'deny'.
 */

import type { Mode } from '../core/mode.ts';
import { type HttpReason, type HttpRequestFacts, type HttpRule, matchHttpRules } from './http-rule.ts';

/** One rule that allows the connection's name and port. */
export interface GrantedRule {
  /** "namespace/name" of the policy. */
  readonly policy: string;
  readonly rule: number;
  /** null: the rule does not inspect (every request passes). */
  readonly http: readonly HttpRule[] | null;
}

export interface RequestDecision {
  readonly verdict: 'allow' | 'deny' | 'audit';
  /** no_matching_rule: the name lost every rule since the connection was allowed. */
  readonly reason: 'fqdn_rule' | 'no_matching_rule' | HttpReason;
  readonly policy: string | null;
  readonly rule: number | null;
  /** Index of the HTTP rule that allowed, within the rule's `http` list. */
  readonly httpRule: number | null;
}

const STAGE_ORDER: readonly string[] = [
  'http_host_not_allowed',
  'path_not_allowed',
  'method_not_allowed',
  'header_not_allowed',
  'websocket_not_allowed',
];

export function decideRequest(
  rules: readonly GrantedRule[],
  mode: Mode,
  facts: HttpRequestFacts,
): RequestDecision {
  const open = rules.find((r) => r.http === null);
  if (open)
    return { verdict: 'allow', reason: 'fqdn_rule', policy: open.policy, rule: open.rule, httpRule: null };
  let furthest: HttpReason | null = null;
  for (const r of rules) {
    const m = matchHttpRules(r.http ?? [], facts);
    if (m.matched)
      return { verdict: 'allow', reason: 'http_rule', policy: r.policy, rule: r.rule, httpRule: m.index };
    if (furthest === null || STAGE_ORDER.indexOf(m.reason) > STAGE_ORDER.indexOf(furthest))
      furthest = m.reason;
  }
  const first = rules[0];
  return {
    verdict: mode === 'Audit' ? 'audit' : 'deny',
    reason: furthest ?? 'path_not_allowed',
    policy: first?.policy ?? null,
    rule: first?.rule ?? null,
    httpRule: null,
  };
}
