/**
 * Reading `nft -j list ...` output: the table's sets and chains (definitions), and set elements
 * normalized so that they compare with the elements the driver generates. nft prints an
 * interval either as a range or, when it aligns, as a prefix; both become an address range here.
 * The kernel is trusted but the parser is still bounded and never throws anything but a
 * NamegateError.
 */

import { ErrorCode, NamegateError } from '../core/errors.ts';
import { canonicalIp, ipFamily } from '../core/ip.ts';
import { type AddrRange, addressRange, prefixRange } from './ip-range.ts';

/** nft JSON output larger than this is refused (a 1M-element set is ~100 MB). */
export const MAX_JSON_BYTES = 512 * 1024 * 1024;

export interface KernelSet {
  readonly name: string;
  readonly type: readonly string[];
  readonly flags: readonly string[];
  readonly size: number | null;
  readonly counter: boolean;
  /** Raw `elem` entries; empty when listed terse. */
  readonly elements: readonly unknown[];
}

export interface KernelChain {
  readonly name: string;
  /** null for a regular chain; fields as nft prints them. */
  readonly base: { type: string; hook: string; priority: number; policy: string } | null;
}

export interface KernelTable {
  readonly sets: ReadonlyMap<string, KernelSet>;
  readonly chains: ReadonlyMap<string, KernelChain>;
}

export type Part =
  | { readonly kind: 'addr'; readonly range: AddrRange }
  | { readonly kind: 'proto'; readonly proto: 'tcp' | 'udp' | number }
  | { readonly kind: 'port'; readonly from: number; readonly to: number };

export interface KernelElement {
  readonly parts: readonly Part[];
  /** Seconds, as nft prints them (whole seconds). */
  readonly timeoutS: number | null;
  readonly expiresS: number | null;
  readonly packets: number | null;
  readonly bytes: number | null;
  /** The element's comment (drop counters carry their owning source). */
  readonly comment: string | null;
}

function bad(message: string): never {
  throw new NamegateError(ErrorCode.DatapathCommit, `unexpected nft JSON: ${message}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseRoot(text: string): unknown[] {
  if (text.length > MAX_JSON_BYTES) bad(`output of ${text.length} bytes is larger than ${MAX_JSON_BYTES}`);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    bad(err instanceof Error ? err.message : String(err));
  }
  if (!isObject(doc) || !Array.isArray(doc['nftables'])) bad('no "nftables" array');
  return doc['nftables'] as unknown[];
}

function strings(v: unknown, what: string): string[] {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  if (v === undefined) return [];
  return bad(`${what} is not a string or list of strings`);
}

function toSet(o: Record<string, unknown>): KernelSet {
  const name = o['name'];
  if (typeof name !== 'string') bad('set without a name');
  const stmts = Array.isArray(o['stmt']) ? (o['stmt'] as unknown[]) : [];
  const size = o['size'];
  return {
    name,
    type: strings(o['type'], `set ${name} type`),
    flags: strings(o['flags'], `set ${name} flags`).sort(),
    size: typeof size === 'number' ? size : null,
    counter: stmts.some((s) => isObject(s) && 'counter' in s),
    elements: Array.isArray(o['elem']) ? (o['elem'] as unknown[]) : [],
  };
}

function toChain(o: Record<string, unknown>): KernelChain {
  const name = o['name'];
  if (typeof name !== 'string') bad('chain without a name');
  const hook = o['hook'];
  if (typeof hook !== 'string') return { name, base: null };
  const prio = o['prio'];
  return {
    name,
    base: {
      type: String(o['type'] ?? ''),
      hook,
      priority: typeof prio === 'number' ? prio : Number.NaN,
      policy: String(o['policy'] ?? 'accept'),
    },
  };
}

/** `nft -j [-t] list table inet T`. */
export function parseTable(text: string): KernelTable {
  const sets = new Map<string, KernelSet>();
  const chains = new Map<string, KernelChain>();
  for (const item of parseRoot(text)) {
    if (!isObject(item)) continue;
    if (isObject(item['set'])) {
      const s = toSet(item['set']);
      sets.set(s.name, s);
    } else if (isObject(item['chain'])) {
      const c = toChain(item['chain']);
      chains.set(c.name, c);
    }
  }
  return { sets, chains };
}

/** A named counter object: `nft -j list counter inet T NAME`. */
export interface KernelCounter {
  readonly name: string;
  readonly packets: number;
  readonly bytes: number;
}

export function parseCounter(text: string): KernelCounter {
  for (const item of parseRoot(text)) {
    if (!isObject(item) || !isObject(item['counter'])) continue;
    const c = item['counter'];
    const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0);
    if (typeof c['name'] !== 'string') bad('counter without a name');
    return { name: c['name'], packets: n(c['packets']), bytes: n(c['bytes']) };
  }
  return bad('no counter in output');
}

/** `nft -j list set inet T NAME`. */
export function parseSet(text: string): KernelSet {
  for (const item of parseRoot(text)) {
    if (isObject(item) && isObject(item['set'])) return toSet(item['set']);
  }
  return bad('no set in output');
}

function addrPart(v: unknown): Part {
  if (typeof v === 'string') {
    const ip = canonicalIp(v);
    if (ip === null) bad(`${JSON.stringify(v)} is not an address`);
    return { kind: 'addr', range: addressRange(ip) };
  }
  if (isObject(v) && isObject(v['prefix'])) {
    const p = v['prefix'];
    const r =
      typeof p['addr'] === 'string' && typeof p['len'] === 'number' ? prefixRange(p['addr'], p['len']) : null;
    if (r === null) bad(`bad prefix ${JSON.stringify(p)}`);
    return { kind: 'addr', range: r };
  }
  if (isObject(v) && Array.isArray(v['range']) && v['range'].length === 2) {
    const [a, b] = v['range'] as unknown[];
    const ia = typeof a === 'string' ? canonicalIp(a) : null;
    const ib = typeof b === 'string' ? canonicalIp(b) : null;
    if (ia === null || ib === null || ipFamily(ia) !== ipFamily(ib))
      bad(`bad address range ${JSON.stringify(v)}`);
    return {
      kind: 'addr',
      range: { family: ipFamily(ia), start: addressRange(ia).start, end: addressRange(ib).start },
    };
  }
  return bad(`bad address ${JSON.stringify(v)}`);
}

function portNumber(v: unknown): number {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 65535) return v;
  return bad(`bad port ${JSON.stringify(v)}`);
}

function portPart(v: unknown): Part {
  if (typeof v === 'number') {
    const p = portNumber(v);
    return { kind: 'port', from: p, to: p };
  }
  if (isObject(v) && Array.isArray(v['range']) && v['range'].length === 2) {
    return { kind: 'port', from: portNumber(v['range'][0]), to: portNumber(v['range'][1]) };
  }
  return bad(`bad port ${JSON.stringify(v)}`);
}

function protoPart(v: unknown): Part {
  if (v === 'tcp' || v === 6) return { kind: 'proto', proto: 'tcp' };
  if (v === 'udp' || v === 17) return { kind: 'proto', proto: 'udp' };
  if (typeof v === 'number') return { kind: 'proto', proto: v };
  return bad(`bad protocol ${JSON.stringify(v)}`);
}

function part(type: string, v: unknown): Part {
  switch (type) {
    case 'ipv4_addr':
    case 'ipv6_addr':
      return addrPart(v);
    case 'inet_service':
      return portPart(v);
    case 'inet_proto':
      return protoPart(v);
    default:
      return bad(`unsupported set type ${type}`);
  }
}

/** One `elem` entry of a set of the given type. */
export function parseElement(type: readonly string[], raw: unknown): KernelElement {
  let val: unknown = raw;
  let meta: Record<string, unknown> = {};
  if (isObject(raw) && isObject(raw['elem'])) {
    meta = raw['elem'];
    val = meta['val'];
  }
  let values: unknown[];
  if (type.length > 1) {
    if (!isObject(val) || !Array.isArray(val['concat']) || val['concat'].length !== type.length)
      bad(`element ${JSON.stringify(raw)} does not have ${type.length} parts`);
    values = val['concat'] as unknown[];
  } else {
    values = [val];
  }
  const counter = isObject(meta['counter']) ? meta['counter'] : null;
  const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  return {
    parts: values.map((v, i) => part(type[i] ?? '', v)),
    timeoutS: num(meta['timeout']),
    expiresS: num(meta['expires']),
    packets: counter ? num(counter['packets']) : null,
    bytes: counter ? num(counter['bytes']) : null,
    comment: typeof meta['comment'] === 'string' && meta['comment'].length <= 256 ? meta['comment'] : null,
  };
}
