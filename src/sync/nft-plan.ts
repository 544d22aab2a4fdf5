/**
 * The nftables state of a Linux gateway from policies, source groups and synced addresses
 * (pure): the agent's static state (governed sources and their modes, toCIDRs, the known
 * ungoverned sources; src/agent/static-state.ts) plus one CIDR allow per synced address, per
 * governed source of its family, per port range of the rule that names it. The datapath writes
 * it into the same sets as the agent's, by difference (Datapath.reconcile).
 */

import { type Cidr, parseCidr } from '../core/ip.ts';
import type { CidrElement, StaticState } from '../datapath/datapath.ts';
import { hostAddress, staticState } from '../enforce/static-state.ts';
import type { CompiledPolicies } from '../policy/compile.ts';
import type { Identity } from '../policy/model.ts';
import { type AddressesOf, groupGrants } from './grants.ts';
import { hostCidr } from './ports.ts';

export function planNftState(
  set: CompiledPolicies,
  entries: readonly (readonly [string, Identity])[],
  addressesOf: AddressesOf,
): StaticState {
  const base = staticState(set, entries);
  const extra = new Map<string, CidrElement>();
  for (const [entry, identity] of entries) {
    const view = groupGrants(set, identity, addressesOf);
    if (view.mode === null) continue;
    const source = hostAddress(entry);
    const v6 = source.includes(':');
    for (const g of view.grants) {
      for (const ip of g.addresses) {
        if (ip.includes(':') !== v6) continue;
        for (const p of g.ports) {
          const key = `${source}|${ip}|${p.protocol}|${p.from}-${p.to}`;
          if (extra.has(key)) continue;
          extra.set(key, {
            source,
            cidr: parseCidr(hostCidr(ip)) as Cidr,
            except: [],
            protocol: p.protocol,
            portFrom: p.from,
            portTo: p.to,
          });
        }
      }
    }
  }
  return { ...base, cidrs: [...base.cidrs, ...extra.values()] };
}
