/**
 * classifyAddress (src/core/ip.ts) with a bounded memo. Answers repeat the same addresses over
 * and over, and each uncached classification walks several BlockLists; the memo makes the
 * common case one Map lookup. It is cleared when full (no eviction order to maintain).
 */
import { type AddressClass, classifyAddress } from '../core/ip.ts';

const MAX_ENTRIES = 65_536;
const memo = new Map<string, AddressClass>();

export function addressClass(ip: string): AddressClass {
  let cls = memo.get(ip);
  if (cls === undefined) {
    cls = classifyAddress(ip);
    if (memo.size >= MAX_ENTRIES) memo.clear();
    memo.set(ip, cls);
  }
  return cls;
}
