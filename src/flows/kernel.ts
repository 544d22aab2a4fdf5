/**
 * Kernel drops as flow events: each NFLOG packet (datapath/nflog-wire.ts) becomes a FlowEvent
 * with the source's identity, the 5-tuple, the rule that logged it (the prefix: Enforce drop,
 * Audit would-be drop, unknown source, spoofed source) and, for governed sources, why: the
 * explanation of explain.ts with the name the address was learned for.
 */

import type { CanonicalName } from '../core/names.ts';
import type { NflogPacket } from '../datapath/nflog-wire.ts';
import { packetTuple } from '../datapath/nflog-wire.ts';
import {
  LOG_PREFIX_AUDIT,
  LOG_PREFIX_DROP,
  LOG_PREFIX_SPOOF,
  LOG_PREFIX_UNKNOWN,
} from '../datapath/nft-ruleset.ts';
import type { CompiledPolicies } from '../policy/compile.ts';
import { decide, grantsFor } from '../policy/decide.ts';
import { formatPorts } from '../policy/explain.ts';
import { type Identity, policyRefText } from '../policy/model.ts';
import { emptyEvent, type FlowEvent, type SourceInfo } from './event.ts';
import { DropReason, explainDrop, type NameGrant } from './explain.ts';
import type { AddressHistoryView } from './history.ts';

export interface KernelEventsOptions {
  /** Who has an address now, and the addresses of the same pod (dual stack). */
  identity(ip: string): { identity: Identity; info: SourceInfo; siblings: readonly string[] } | undefined;
  readonly history: AddressHistoryView;
  addressClass(ip: string): string;
  /** The policies in force. */
  policies(): CompiledPolicies;
  /** Wall clock (ms). */
  now(): number;
}

/** What policy grants `identity` for `name` on (proto, port), for explainDrop. */
export function grantFor(
  set: CompiledPolicies,
  identity: Identity,
  name: string,
  proto: string,
  port: number | null,
): NameGrant {
  const protocol = proto === 'udp' ? 'UDP' : 'TCP';
  const d = decide(set, identity, name as CanonicalName, protocol, port ?? 0);
  const policy = d.policy ? policyRefText(d.policy) : null;
  if (d.verdict === 'allow') return { result: 'allow', ports: '', policy, rule: d.rule };
  const grants = grantsFor(set, identity, name as CanonicalName);
  if (grants.length === 0) return { result: 'name', ports: '', policy, rule: d.rule };
  return { result: 'port', ports: formatPorts(grants.flatMap((g) => g.ports)), policy, rule: d.rule };
}

const PREFIXES: ReadonlyArray<readonly [string, 'drop' | 'audit', DropReason | null]> = [
  [LOG_PREFIX_DROP, 'drop', null],
  [LOG_PREFIX_AUDIT, 'audit', null],
  [LOG_PREFIX_UNKNOWN, 'drop', DropReason.UnknownSource],
  [LOG_PREFIX_SPOOF, 'drop', DropReason.Spoofed],
];

export class KernelEvents {
  readonly #o: KernelEventsOptions;
  /** Packets whose prefix was not ours or whose headers did not parse. */
  unreadable = 0;

  constructor(options: KernelEventsOptions) {
    this.#o = options;
  }

  event(p: NflogPacket): FlowEvent | null {
    const kind = PREFIXES.find(([prefix]) => p.prefix === prefix || p.prefix.trimEnd() === prefix.trimEnd());
    const t = packetTuple(p.payload);
    if (!kind || !t) {
      this.unreadable++;
      return null;
    }
    const now = this.#o.now();
    const at = p.timestampMs ?? now;
    const who = this.#o.identity(t.src);
    const base: FlowEvent = {
      ...emptyEvent(new Date(at).toISOString(), 'kernel', t.src),
      ...(who ? who.info : {}),
      verdict: kind[1],
      sport: t.sport,
      dst: t.dst,
      dport: t.dport,
      proto: t.proto,
    };
    if (kind[2] !== null) return { ...base, reason: kind[2] };
    const sources = who ? [t.src, ...who.siblings.filter((s) => s !== t.src)] : [t.src];
    const set = this.#o.policies();
    const x = explainDrop(
      { sources, dst: t.dst, proto: t.proto, dport: t.dport, now },
      {
        history: this.#o.history,
        addressClass: (ip) => this.#o.addressClass(ip),
        grant: (name, proto, port) => (who ? grantFor(set, who.identity, name, proto, port) : null),
      },
    );
    const learnedBy = x.detail.learnedBy?.map((ip) => this.#o.identity(ip)?.info.identity ?? ip);
    return {
      ...base,
      reason: x.reason,
      name: x.name,
      policy: x.policy,
      rule: x.rule,
      detail: learnedBy ? { ...x.detail, learnedBy } : x.detail,
    };
  }
}
