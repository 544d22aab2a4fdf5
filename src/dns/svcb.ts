/**
 * SVCB/HTTPS records (RFC 9460, types 64 and 65): only what namegate needs, the address hints.
 *
 * Decision: the ipv4hint and ipv6hint of a ServiceMode record at the end of the queried name's
 * CNAME chain are learned like A/AAAA answers for that name. Clients (Safari, curl with HTTPS
 * RR support) may connect straight to a hint address without asking for A/AAAA; if the hints
 * were not learned that connection would be dropped, and stripping them would mean re-encoding
 * the upstream's answer. The upstream's statement "the service of this allowed name lives at
 * these addresses" carries the same trust as a CNAME. Hints pass the same checks as A/AAAA
 * (denied ranges, caps, TTL clamp). AliasMode records (priority 0) carry no usable hints
 * (RFC 9460 section 2.4.2: ignored) and their target is not followed.
 *
 * The rdata is read strictly: an uncompressed TargetName, SvcParamKeys strictly increasing,
 * every value inside the rdata, hint lengths a positive multiple of the address size. A
 * malformed record makes the whole reply malformed.
 */
import { ipv4Text, ipv6Text, type RrHead, WireError, WireReader } from './wire.ts';

const KEY_IPV4HINT = 4;
const KEY_IPV6HINT = 6;

export interface SvcbHints {
  readonly priority: number;
  readonly target: string;
  readonly ipv4: string[];
  readonly ipv6: string[];
}

export function readSvcbHints(buf: Uint8Array, rr: RrHead): SvcbHints {
  const r = new WireReader(buf, rr.rdStart, rr.rdEnd);
  const priority = r.u16();
  const target = r.name();
  if (r.compressed) throw new WireError('bad-rdata', 'SVCB TargetName must not be compressed');
  const ipv4: string[] = [];
  const ipv6: string[] = [];
  let lastKey = -1;
  while (r.pos < rr.rdEnd) {
    const key = r.u16();
    const len = r.u16();
    if (key <= lastKey) throw new WireError('bad-rdata', `SvcParamKey ${key} out of order`);
    lastKey = key;
    const at = r.pos;
    r.skip(len);
    if (key === KEY_IPV4HINT) {
      if (len === 0 || len % 4 !== 0) throw new WireError('bad-rdata', `ipv4hint of ${len} bytes`);
      for (let i = at; i < at + len; i += 4) ipv4.push(ipv4Text(buf, i));
    } else if (key === KEY_IPV6HINT) {
      if (len === 0 || len % 16 !== 0) throw new WireError('bad-rdata', `ipv6hint of ${len} bytes`);
      for (let i = at; i < at + len; i += 16) ipv6.push(ipv6Text(buf, i));
    }
  }
  if (priority === 0) return { priority, target, ipv4: [], ipv6: [] };
  return { priority, target, ipv4, ipv6 };
}
