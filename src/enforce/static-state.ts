/**
 * The part of the kernel's state that follows from policy and identity alone: which sources are
 * governed (and in which mode), their toCIDRs allows and their SNI-verified ports, and which
 * known sources no policy selects (`ungoverned`: carved out of a governed prefix around them,
 * and untouched where the datapath governs unknown addresses of its source CIDRs). Pure: the
 * agent calls it after every policy or identity change and hands the result to
 * Datapath.reconcile, which applies the difference.
 */
import type { CidrElement, SourceEntry, StaticState, VerifyElement } from '../datapath/datapath.ts';
import type { CompiledPolicies } from '../policy/compile.ts';
import type { Identity } from '../policy/model.ts';

export function staticState(
  set: CompiledPolicies,
  entries: Iterable<readonly [string, Identity]>,
): StaticState {
  const sources: SourceEntry[] = [];
  const cidrs: CidrElement[] = [];
  const verify: VerifyElement[] = [];
  const ungoverned: string[] = [];
  for (const [entry, identity] of entries) {
    const ip = hostAddress(entry);
    const selection = set.selection(identity);
    if (selection.mode === null) {
      // Known but ungoverned: a nested prefix must not inherit the mode of a governed one
      // around it (the datapath resolves prefixes by longest match).
      ungoverned.push(ip);
      continue;
    }
    sources.push({ ip, mode: selection.mode });
    const family = ip.includes(':') ? 6 : 4;
    for (const p of selection.policies) {
      for (const rule of set.policies[p]?.rules ?? []) {
        for (const c of rule.cidrs) {
          if (c.cidr.family !== family) continue;
          for (const port of rule.ports) {
            cidrs.push({
              source: ip,
              cidr: c.cidr,
              except: c.except,
              protocol: port.protocol,
              portFrom: port.from,
              portTo: port.to,
            });
          }
        }
        if (rule.verify === 'SNI') {
          for (const port of rule.ports) {
            if (port.protocol === 'TCP')
              verify.push({ source: ip, protocol: 'TCP', portFrom: port.from, portTo: port.to });
          }
        }
      }
    }
  }
  return {
    sources: dedupe(sources, (s) => s.ip),
    cidrs: dedupe(cidrs, cidrKey),
    verify: dedupe(verify, verifyKey),
    ungoverned: dedupe(ungoverned, (ip) => ip),
  };
}

function cidrKey(c: CidrElement): string {
  return `${c.source}|${c.cidr.text}|${c.except.map((e) => e.text).join(',')}|${c.protocol}|${c.portFrom}-${c.portTo}`;
}

function verifyKey(v: VerifyElement): string {
  return `${v.source}|${v.portFrom}-${v.portTo}`;
}

function dedupe<T>(items: T[], key: (t: T) => string): T[] {
  const seen = new Map<string, T>();
  for (const item of items) if (!seen.has(key(item))) seen.set(key(item), item);
  return [...seen.values()];
}

/** A host route ("10.0.0.5/32", "2001:db8::5/128") is its address; wider CIDRs stay CIDRs. */
export function hostAddress(entry: string): string {
  const slash = entry.indexOf('/');
  if (slash < 0) return entry;
  const prefix = entry.slice(slash + 1);
  return prefix === (entry.includes(':') ? '128' : '32') ? entry.slice(0, slash) : entry;
}
