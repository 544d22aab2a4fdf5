/**
 * The one canonical form of an HTTP request path, made once at the edge (the inspecting proxy,
 * `namegate check --path`) so that policy path rules and the upstream server read the same
 * resource. Pure; bounded by the caller's head limits.
 *
 * Path rules are only as strong as the agreement between what we match and what the server
 * serves. So a path that two readers could resolve differently is refused, not interpreted:
 *   - dot segments (`/a/../b`, `/./`, also percent-encoded `%2e`): servers remove them, a prefix
 *     rule on the raw text would not (`/public/../admin` starts with `/public/`);
 *   - an encoded `/` or `\` (`%2F`, `%5C`) and a raw `\`: some servers split on them, some not;
 *   - an encoded NUL, a fragment, bytes outside RFC 3986.
 * Percent-encoded unreserved characters (`%61` for `a`) are decoded and the remaining escapes
 * upper-cased (RFC 3986 6.2.2), since every server treats those forms as the same path.
 * Empty segments (`//`) are kept as written: a rule that does not name them does not match them.
 */

export type PathReason =
  /** Not origin-form (`/...`), or a byte outside RFC 3986 pchar / query. */
  | 'bad_path'
  /** A `.` or `..` segment, raw or percent-encoded. */
  | 'dot_segment'
  /** `%2F`, `%5C`, `%00` or a raw backslash. */
  | 'ambiguous_path';

export interface CanonicalPath {
  /** The path, unreserved escapes decoded, other escapes upper-case. */
  readonly path: string;
  /** The query without `?`, as written; null when there is none. */
  readonly query: string | null;
}

// pchar (unreserved, sub-delims, ':' '@') plus '/' and '%' for escapes (checked below).
const PATH_BYTES = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$/;
const QUERY_BYTES = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*$/;
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

export function canonicalPath(target: string): CanonicalPath | { readonly reason: PathReason } {
  if (!target.startsWith('/')) return { reason: 'bad_path' };
  if (target.includes('#')) return { reason: 'bad_path' };
  if (target.includes('\\')) return { reason: 'ambiguous_path' };
  const q = target.indexOf('?');
  const rawPath = q < 0 ? target : target.slice(0, q);
  const query = q < 0 ? null : target.slice(q + 1);
  if (!PATH_BYTES.test(rawPath)) return { reason: 'bad_path' };
  if (query !== null && !QUERY_BYTES.test(query)) return { reason: 'bad_path' };
  let path = '';
  for (let i = 0; i < rawPath.length; i++) {
    const c = rawPath[i] as string;
    if (c !== '%') {
      path += c;
      continue;
    }
    const hex = rawPath.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return { reason: 'bad_path' };
    const byte = Number.parseInt(hex, 16);
    if (byte === 0x2f || byte === 0x5c || byte === 0) return { reason: 'ambiguous_path' };
    const ch = String.fromCharCode(byte);
    path += UNRESERVED.test(ch) ? ch : `%${hex.toUpperCase()}`;
    i += 2;
  }
  for (const segment of path.split('/')) {
    if (segment === '.' || segment === '..') return { reason: 'dot_segment' };
  }
  return { path, query };
}
