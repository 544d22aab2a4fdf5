/**
 * classifyAddress (src/core/ip.ts) with a bounded memo. Answers repeat the same addresses over
 * and over, and each uncached classification walks several BlockLists; the memo makes the
 * common case cheap. IPv4 addresses (as answers.ts writes them: dotted decimal, no leading
 * zeros) are memoized by number, a table of 256 class codes per /24, so a lookup neither hashes
 * nor compares a string; other text goes through a string memo. Both are cleared when full (no
 * eviction order to maintain). Every class still comes from classifyAddress itself.
 */
import { type AddressClass, classifyAddress } from './ip.ts';

const MAX_ENTRIES = 65_536;
const memo = new Map<string, AddressClass>();

/** At most this many /24 tables (256 bytes each). */
const MAX_V4_BLOCKS = 4096;
/** /24 prefix -> class code + 1 of each address in it (0: not classified yet). */
const v4memo = new Map<number, Uint8Array>();
const CLASSES: AddressClass[] = [];

export function addressClass(ip: string): AddressClass {
  const v4 = dottedQuad(ip);
  if (v4 >= 0) {
    const prefix = Math.floor(v4 / 256);
    let block = v4memo.get(prefix);
    if (block === undefined) {
      if (v4memo.size >= MAX_V4_BLOCKS) v4memo.clear();
      block = new Uint8Array(256);
      v4memo.set(prefix, block);
    }
    const code = block[v4 & 255] as number;
    if (code !== 0) return CLASSES[code - 1] as AddressClass;
    const cls = classifyAddress(ip);
    let i = CLASSES.indexOf(cls);
    if (i < 0) i = CLASSES.push(cls) - 1;
    block[v4 & 255] = i + 1;
    return cls;
  }
  let cls = memo.get(ip);
  if (cls === undefined) {
    cls = classifyAddress(ip);
    if (memo.size >= MAX_ENTRIES) memo.clear();
    memo.set(ip, cls);
  }
  return cls;
}

/** The address as a number when `ip` is plain dotted decimal (four 0-255, no leading zero); else -1. */
function dottedQuad(ip: string): number {
  const len = ip.length;
  if (len < 7 || len > 15) return -1;
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < len; i++) {
    const c = ip.charCodeAt(i);
    if (c === 0x2e) {
      if (digits === 0 || dots === 3) return -1;
      value = value * 256 + octet;
      octet = 0;
      digits = 0;
      dots++;
    } else if (c >= 0x30 && c <= 0x39) {
      if (digits > 0 && octet === 0) return -1;
      octet = octet * 10 + (c - 0x30);
      if (octet > 255) return -1;
      digits++;
    } else {
      return -1;
    }
  }
  if (dots !== 3 || digits === 0) return -1;
  return value * 256 + octet;
}
