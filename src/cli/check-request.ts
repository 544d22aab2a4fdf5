/**
 * `namegate check --method --path [--header]`: the request inside an allowed connection, judged
 * as the inspecting proxy judges it (inspectionFor, then decideRequest), with the lines that
 * explain which HTTP rule decided.
 */
import { canonicalPath } from '../core/http-path.ts';
import type { Mode } from '../core/mode.ts';
import type { CanonicalName } from '../core/names.ts';
import type { CompiledPolicies } from '../policy/compile.ts';
import { decideRequest, type RequestDecision } from '../policy/decide-request.ts';
import { matchHttpRules } from '../policy/http-rule.ts';
import { inspectionFor } from '../policy/inspection.ts';
import type { Identity } from '../policy/model.ts';
import { usageError } from './output.ts';

export interface RequestCheck {
  readonly method: string;
  readonly path: string;
  readonly inspected: boolean;
  /** Null when the connection itself is denied (the request never happens). */
  readonly decision: RequestDecision | null;
  readonly lines: string[];
}

export function checkRequest(
  set: CompiledPolicies,
  identity: Identity,
  name: CanonicalName,
  port: number,
  opts: { method?: string; path?: string; header?: string[] },
  mode: Mode | null,
): RequestCheck {
  const method = opts.method ?? 'GET';
  if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,32}$/.test(method))
    throw usageError(`--method: ${JSON.stringify(method)} is not a method`);
  const target = opts.path ?? '/';
  const path = canonicalPath(target);
  if ('reason' in path)
    throw usageError(`--path: ${JSON.stringify(target)} is refused by the proxy (${path.reason})`);
  const headers = (opts.header ?? []).map((h): readonly [string, string] => {
    const colon = h.indexOf(':');
    if (colon <= 0) throw usageError(`--header: ${JSON.stringify(h)} is not name:value`);
    return [h.slice(0, colon).trim().toLowerCase(), h.slice(colon + 1).trim()];
  });
  if (mode === null)
    return {
      method,
      path: target,
      inspected: false,
      decision: null,
      lines: ['request: the connection is not allowed'],
    };
  const inspection = inspectionFor(set, identity, name, port);
  if (!inspection.inspect) {
    return {
      method,
      path: target,
      inspected: false,
      decision: null,
      lines: [
        'request: not inspected (a rule allows the name without verify: Inspect, or passes it through): every request passes',
      ],
    };
  }
  const facts = { method, host: name, path: path.path, headers, websocket: false };
  const lines: string[] = [`request: ${method} ${path.path} (inspected)`];
  for (const r of inspection.rules) {
    (r.http ?? []).forEach((_, i) => {
      const m = matchHttpRules([r.http![i]!], facts);
      lines.push(`  ${r.policy} spec.egress[${r.rule}].http[${i}]: ${m.matched ? 'matches' : m.reason}`);
    });
  }
  return {
    method,
    path: target,
    inspected: true,
    decision: decideRequest(inspection.rules, mode, facts),
    lines,
  };
}
