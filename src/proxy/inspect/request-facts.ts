/**
 * One decrypted request, HTTP/1.1 head or HTTP/2 header list, turned into the facts the policy
 * judges (HttpRequestFacts), after the checks that belong to the edge:
 *   - the authority (Host, or :authority; both must agree when both are sent) must be the SNI
 *     the connection was allowed for, on the connection's port: anything else is domain
 *     fronting (`domain_fronting`) or `host_port_mismatch`;
 *   - the path must have one canonical reading (src/core/http-path.ts);
 *   - CONNECT inside an inspected connection is refused (`nested_connect`), and so is an
 *     upgrade to anything but websocket (`upgrade_not_allowed`).
 * Pure: headers in, facts or a reason out.
 */
import { canonicalPath } from '../../core/http-path.ts';
import { type CanonicalName, NameError } from '../../core/names.ts';
import type { HttpRequestFacts } from '../../policy/http-rule.ts';
import { type Authority, parseAuthority, type RequestHead } from '../http-head.ts';

export interface ConnectionName {
  /** The name the connection was allowed for: the SNI (or, on plain HTTP, the first Host). */
  readonly sni: CanonicalName;
  readonly port: number;
  /** The port an authority without one means: 443 inside TLS, 80 on plain HTTP. */
  readonly defaultPort?: number;
}

export type FactsResult =
  | { readonly ok: true; readonly facts: HttpRequestFacts; readonly rawPath: string }
  | {
      readonly ok: false;
      readonly reason: string;
      readonly method: string | null;
      readonly rawPath: string | null;
    };

function authorityReason(a: Authority, c: ConnectionName): string | null {
  if (a.host !== c.sni) return 'domain_fronting';
  if ((a.port ?? c.defaultPort ?? 443) !== c.port) return 'host_port_mismatch';
  return null;
}

function facts(
  c: ConnectionName,
  method: string,
  target: string,
  fields: ReadonlyArray<readonly [string, string]>,
  upgrade: string | null,
): FactsResult {
  if (method === 'CONNECT') return { ok: false, reason: 'nested_connect', method, rawPath: target };
  let websocket = false;
  if (upgrade !== null) {
    if (upgrade.trim().toLowerCase() !== 'websocket')
      return { ok: false, reason: 'upgrade_not_allowed', method, rawPath: target };
    websocket = true;
  }
  const p = canonicalPath(target);
  if ('reason' in p) return { ok: false, reason: p.reason, method, rawPath: target };
  return {
    ok: true,
    facts: { method, host: c.sni, path: p.path, headers: fields, websocket },
    rawPath: target,
  };
}

/** An HTTP/1.1 request head (already strict: one Host, framing checked by parseRequestHead). */
export function factsFromHead(head: RequestHead, c: ConnectionName): FactsResult {
  const why = authorityReason(head.host, c);
  if (why) return { ok: false, reason: why, method: head.method, rawPath: head.target };
  // absolute-form: parseRequestHead checked that its authority equals Host; match its path.
  let target = head.target;
  if (head.targetAuthority !== null && head.method !== 'CONNECT') {
    const slash = target.indexOf('/', target.indexOf('//') + 2);
    target = slash < 0 ? '/' : target.slice(slash);
  }
  return facts(c, head.method, target, head.fields, head.upgrade);
}

/** An HTTP/2 request: the header list as received (rawHeaders: name, value, name, value, ...). */
export function factsFromH2(raw: readonly string[], c: ConnectionName): FactsResult {
  let method: string | null = null;
  let path: string | null = null;
  let authority: string | null = null;
  let protocol: string | null = null;
  const hosts: string[] = [];
  const fields: Array<readonly [string, string]> = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    const value = raw[i + 1] as string;
    if (name === ':method') method = value;
    else if (name === ':path') path = value;
    else if (name === ':authority') authority = value;
    else if (name === ':protocol') protocol = value;
    else if (name === 'host') hosts.push(value);
    else if (!name.startsWith(':')) fields.push([name, value.trim()]);
  }
  if (method === null) return { ok: false, reason: 'malformed', method: null, rawPath: path };
  if (method === 'CONNECT')
    return {
      ok: false,
      reason: protocol === null ? 'nested_connect' : 'upgrade_not_allowed',
      method,
      rawPath: path,
    };
  if (path === null) return { ok: false, reason: 'malformed', method, rawPath: null };
  if (hosts.length > 1) return { ok: false, reason: 'bad_host', method, rawPath: path };
  const text = authority ?? hosts[0] ?? null;
  if (text === null) return { ok: false, reason: 'bad_host', method, rawPath: path };
  const a = parseAuthority(text);
  if (a instanceof NameError) return { ok: false, reason: 'name_invalid', method, rawPath: path };
  if (typeof a === 'string') return { ok: false, reason: 'bad_host', method, rawPath: path };
  if (hosts.length === 1 && authority !== null) {
    const h = parseAuthority(hosts[0] as string);
    if (h instanceof NameError) return { ok: false, reason: 'name_invalid', method, rawPath: path };
    if (typeof h === 'string' || h.host !== a.host || (h.port ?? 443) !== (a.port ?? 443))
      return { ok: false, reason: 'domain_fronting', method, rawPath: path };
  }
  const why = authorityReason(a, c);
  if (why) return { ok: false, reason: why, method, rawPath: path };
  return facts(c, method, path, fields, null);
}
