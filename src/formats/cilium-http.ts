/**
 * Cilium `toPorts[].rules.http` -> native HTTP rules of a `verify: Inspect` rule. Field by field:
 *   method         Cilium: an extended POSIX regex over the method. Kept when it is one method
 *                  or an alternation of methods ("GET", "GET|HEAD", "^(GET|HEAD)$"); any other
 *                  expression is an error (a method list cannot say it, and guessing could widen).
 *   path           Cilium: an extended POSIX regex, which Envoy runs as RE2 against the whole path.
 *                  Kept as `path.regex` (RE2, whole path): the same meaning. RE2 refuses what it
 *                  cannot run in linear time (backreferences); such a path is an error.
 *   host           Cilium: a regex over the Host. Kept when it names one host ("api\.github\.com"
 *                  or the plain name); anything else is an error.
 *   headers        "Name: value" (exact) or "Name" (present) -> headers.
 *   headerMatches  {name, value} -> an exact header; `secret` (namegate reads no Secrets for
 *                  policies) and `mismatch` (namegate never rewrites requests) are errors.
 * An empty http rule ({}) allows every request, as in Cilium.
 */
import {
  absent,
  type Conversion,
  child,
  readList,
  readRecord,
  readString,
  warnUnknown,
} from './foreign-common.ts';
import type { RuleInput } from './native-schema.ts';

type HttpInput = NonNullable<RuleInput['http']>[number];

const TOKEN = /^[A-Z][A-Z0-9_-]{0,31}$/;

export function convertHttpRules(c: Conversion, value: unknown, path: string): HttpInput[] | undefined {
  const list = readList(c, value, path);
  if (!list) return undefined;
  const before = c.errors.length;
  const out: HttpInput[] = [];
  list.forEach((v, i) => {
    const at = child(path, i);
    const r = readRecord(c, v, at);
    if (!r) return;
    warnUnknown(c, r, at, ['method', 'path', 'host', 'headers', 'headerMatches']);
    const rule: HttpInput = {};
    if (!absent(r['method'])) {
      const methods = methodList(readString(c, r['method'], child(at, 'method')));
      if (methods === null)
        c.error(child(at, 'method'), 'only a method or an alternation of methods (GET|HEAD) can be kept');
      else if (methods.length > 0) rule.methods = methods;
    }
    if (!absent(r['path'])) {
      const p = readString(c, r['path'], child(at, 'path'));
      if (p !== undefined && p !== '') rule.path = { regex: p.replace(/^\^/, '').replace(/\$$/, '') };
    }
    if (!absent(r['host'])) {
      const h = readString(c, r['host'], child(at, 'host'));
      const name = h === undefined ? null : literalHost(h);
      if (name === null)
        c.error(child(at, 'host'), 'only a single host name can be kept (hosts are names, not patterns)');
      else rule.hosts = [name];
    }
    const headers: NonNullable<HttpInput['headers']> = [];
    (readList(c, r['headers'], child(at, 'headers')) ?? []).forEach((h, k) => {
      const text = readString(c, h, child(child(at, 'headers'), k));
      if (text === undefined) return;
      const colon = text.indexOf(':');
      if (colon < 0) headers.push({ name: text.trim() });
      else headers.push({ name: text.slice(0, colon).trim(), value: text.slice(colon + 1).trim() });
    });
    for (const [k, h] of (readList(c, r['headerMatches'], child(at, 'headerMatches')) ?? []).entries()) {
      const hat = child(child(at, 'headerMatches'), k);
      const m = readRecord(c, h, hat);
      if (!m) continue;
      warnUnknown(c, m, hat, ['name', 'value', 'secret', 'mismatch']);
      if (!absent(m['secret'])) {
        c.error(child(hat, 'secret'), 'not converted: namegate reads no Secrets for policy values');
        continue;
      }
      if (!absent(m['mismatch'])) {
        c.error(
          child(hat, 'mismatch'),
          'not converted: namegate never rewrites requests (a mismatch denies)',
        );
        continue;
      }
      const name = readString(c, m['name'], child(hat, 'name'));
      if (name === undefined) continue;
      const value = absent(m['value']) ? undefined : readString(c, m['value'], child(hat, 'value'));
      headers.push(value === undefined ? { name } : { name, value });
    }
    if (headers.length > 0) rule.headers = headers;
    out.push(rule);
  });
  return c.errors.length > before ? undefined : out;
}

/** "GET", "GET|HEAD", "^(GET|HEAD)$" -> the methods; [] for ".*"-like "any"; null otherwise. */
function methodList(text: string | undefined): string[] | null {
  if (text === undefined) return null;
  const t = text.trim();
  if (t === '' || t === '.*' || t === '^.*$') return [];
  const bare = t
    .replace(/^\^/, '')
    .replace(/\$$/, '')
    .replace(/^\((.*)\)$/, '$1');
  const parts = bare.split('|').map((p) => p.trim());
  return parts.every((p) => TOKEN.test(p)) ? [...new Set(parts)] : null;
}

/**
 * "api\.github\.com", "^api\.github\.com$" or "api.github.com" -> the name; null for anything
 * else. An unescaped dot matches any character in Cilium, so taking it as a dot only narrows.
 */
function literalHost(text: string): string | null {
  const name = text.trim().replace(/^\^/, '').replace(/\$$/, '').replace(/\\\./g, '.');
  return /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/i.test(name)
    ? name.toLowerCase()
    : null;
}
