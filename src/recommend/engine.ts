/**
 * `namegate recommend`: from the flow events of Audit-mode (or ungoverned) workloads, the
 * minimal policies that would have allowed what they did. Pure and streaming: add() each event
 * (a million a few seconds), then result().
 *
 * What counts as observed: DNS answers (allow, audit) for names that exist (NXDOMAIN and the
 * pass-through zones are left out), proxy decisions (allow, audit), and kernel audit events
 * (a connection an Audit source made to an address it had resolved: the name it was learned for
 * and the port). Denials of Enforce sources are not evidence of need, so they are not used.
 *
 * Per workload (workload.ts): each name's count, first and last time, and the ports it was used
 * on. Names seen fewer than `minSeen` times, or only within the last `windowMs` of the record
 * (the stabilization window), are listed apart and left out of the policy; names are generalized
 * by names.ts; names with the same ports share a rule; a name no connection was seen for gets
 * `defaultPorts` (a DNS answer alone does not say which port will be used).
 */
import type { FlowEvent } from '../flows/event.ts';
import { generalize, type NamePattern } from './names.ts';
import { commonLabels, type WorkloadKey, workloadId, workloadOf } from './workload.ts';

export interface PortSpec {
  readonly protocol: 'TCP' | 'UDP';
  readonly port: number;
}

export interface RecommendOptions {
  /** Distinct names under one parent before they become a wildcard (default 3; 0 or 1: never). */
  readonly siblings?: number;
  /** Times a name must have been seen to be part of the policy (default 2). */
  readonly minSeen?: number;
  /** Names first seen within this long before the last event are "new", listed apart (default 0). */
  readonly windowMs?: number;
  /** Ports for names that were resolved but never seen connecting (default TCP/443). */
  readonly defaultPorts?: readonly PortSpec[];
}

export interface NameUse {
  readonly name: string;
  readonly count: number;
  readonly first: string;
  readonly last: string;
  readonly ports: readonly PortSpec[];
}

export interface RuleRecommendation {
  readonly patterns: readonly NamePattern[];
  readonly ports: readonly PortSpec[];
  /** True when no connection was seen for these names (the ports are the defaults). */
  readonly defaultPorts: boolean;
}

export interface WorkloadRecommendation {
  readonly workload: WorkloadKey;
  /** Labels every pod of the workload shares (varying ones left out). */
  readonly selector: Readonly<Record<string, string>>;
  readonly pods: readonly string[];
  readonly events: number;
  readonly first: string;
  readonly last: string;
  readonly rules: readonly RuleRecommendation[];
  /** Seen fewer than minSeen times: not in the policy. */
  readonly oneOff: readonly NameUse[];
  /** First seen inside the stabilization window: not in the policy yet. */
  readonly recent: readonly NameUse[];
  /** Addresses connected to that no name was ever learned for (hard-coded or DNS bypass). */
  readonly unnamed: ReadonlyArray<{ readonly address: string; readonly ports: readonly PortSpec[] }>;
}

interface NameState {
  count: number;
  first: number;
  last: number;
  ports: Set<string>;
}

interface WorkloadState {
  readonly key: WorkloadKey;
  readonly labelSets: Map<string, Readonly<Record<string, string>>>;
  readonly pods: Set<string>;
  readonly names: Map<string, NameState>;
  readonly unnamed: Map<string, Set<string>>;
  events: number;
  first: number;
  last: number;
}

const PASS_REASONS = new Set(['pass_through', 'unknown_source', 'name_invalid']);
const MAX_WORKLOADS = 100_000;
const MAX_NAMES_PER_WORKLOAD = 50_000;

function portKey(proto: string | null, port: number | null): string | null {
  if (port === null || port <= 0) return null;
  if (proto === 'tcp') return `TCP/${port}`;
  if (proto === 'udp') return `UDP/${port}`;
  return null;
}

function portSpec(key: string): PortSpec {
  const [protocol, port] = key.split('/');
  return { protocol: protocol === 'UDP' ? 'UDP' : 'TCP', port: Number(port) };
}

function byPort(a: PortSpec, b: PortSpec): number {
  return a.protocol.localeCompare(b.protocol) || a.port - b.port;
}

export class Recommender {
  readonly #workloads = new Map<string, WorkloadState>();
  /** identity (or source address) -> workload id; inference is done once per source. */
  readonly #sourceIds = new Map<string, string | null>();
  events = 0;
  used = 0;

  /** Is this event evidence of a flow the workload needs? */
  static counts(e: FlowEvent): boolean {
    if (e.verdict !== 'allow' && e.verdict !== 'audit') return false;
    if (PASS_REASONS.has(e.reason)) return false;
    if (e.type === 'dns') return e.name !== null && e.rcode !== 'NXDOMAIN';
    return true;
  }

  add(e: FlowEvent): void {
    this.events++;
    if (!Recommender.counts(e)) return;
    const sourceKey = `${e.identity ?? ''} ${e.src}`;
    let id = this.#sourceIds.get(sourceKey);
    if (id === undefined) {
      const key = workloadOf(e);
      id = key === null ? null : workloadId(key);
      if (this.#sourceIds.size > MAX_WORKLOADS * 4) this.#sourceIds.clear();
      this.#sourceIds.set(sourceKey, id);
      if (key !== null && id !== null && !this.#workloads.has(id) && this.#workloads.size < MAX_WORKLOADS) {
        this.#workloads.set(id, {
          key,
          labelSets: new Map(),
          pods: new Set(),
          names: new Map(),
          unnamed: new Map(),
          events: 0,
          first: Number.POSITIVE_INFINITY,
          last: Number.NEGATIVE_INFINITY,
        });
      }
    }
    if (id === null) return;
    const w = this.#workloads.get(id);
    if (!w) return;
    this.used++;
    const t = Date.parse(e.time);
    w.events++;
    if (t < w.first) w.first = t;
    if (t > w.last) w.last = t;
    if (e.pod !== null && !w.pods.has(e.pod) && w.pods.size < 10_000) {
      w.pods.add(e.pod);
      if (e.labels !== null) w.labelSets.set(e.pod, e.labels);
    }
    const port = e.type === 'dns' ? null : portKey(e.proto, e.dport);
    if (e.name === null) {
      if (e.dst !== null && port !== null && w.unnamed.size < 1000) {
        let ports = w.unnamed.get(e.dst);
        if (!ports) {
          ports = new Set();
          w.unnamed.set(e.dst, ports);
        }
        ports.add(port);
      }
      return;
    }
    const name = e.name.toLowerCase().replace(/\.$/, '');
    let n = w.names.get(name);
    if (!n) {
      if (w.names.size >= MAX_NAMES_PER_WORKLOAD) return;
      n = { count: 0, first: t, last: t, ports: new Set() };
      w.names.set(name, n);
    }
    n.count++;
    if (t < n.first) n.first = t;
    if (t > n.last) n.last = t;
    if (port !== null) n.ports.add(port);
  }

  result(options: RecommendOptions = {}): WorkloadRecommendation[] {
    const siblings = options.siblings ?? 3;
    const minSeen = options.minSeen ?? 2;
    const windowMs = options.windowMs ?? 0;
    const defaults = [...(options.defaultPorts ?? [{ protocol: 'TCP', port: 443 }])].sort(byPort);
    const out: WorkloadRecommendation[] = [];
    for (const w of this.#workloads.values()) {
      const use = (name: string, s: NameState): NameUse => ({
        name,
        count: s.count,
        first: new Date(s.first).toISOString(),
        last: new Date(s.last).toISOString(),
        ports: [...s.ports].map(portSpec).sort(byPort),
      });
      const stable = new Map<string, NameState>();
      const oneOff: NameUse[] = [];
      const recent: NameUse[] = [];
      for (const [name, s] of w.names) {
        if (s.count < minSeen) oneOff.push(use(name, s));
        else if (windowMs > 0 && s.first > w.last - windowMs) recent.push(use(name, s));
        else stable.set(name, s);
      }
      // Generalize first, then give each pattern the union of its names' ports.
      const patterns = generalize(stable.keys(), siblings);
      const rules = new Map<string, { patterns: NamePattern[]; ports: PortSpec[]; defaultPorts: boolean }>();
      for (const p of patterns) {
        const ports = new Set<string>();
        for (const n of p.names) for (const k of stable.get(n)?.ports ?? []) ports.add(k);
        const specs = ports.size > 0 ? [...ports].map(portSpec).sort(byPort) : defaults;
        const key = `${ports.size === 0 ? 'default ' : ''}${specs.map((s) => `${s.protocol}/${s.port}`).join(',')}`;
        let r = rules.get(key);
        if (!r) {
          r = { patterns: [], ports: specs, defaultPorts: ports.size === 0 };
          rules.set(key, r);
        }
        r.patterns.push(p);
      }
      const byName = (a: NameUse, b: NameUse) => a.name.localeCompare(b.name);
      out.push({
        workload: w.key,
        selector: commonLabels(w.labelSets.values()),
        pods: [...w.pods].sort(),
        events: w.events,
        first: new Date(w.first).toISOString(),
        last: new Date(w.last).toISOString(),
        rules: [...rules.values()].sort((a, b) => Number(a.defaultPorts) - Number(b.defaultPorts)),
        oneOff: oneOff.sort(byName),
        recent: recent.sort(byName),
        unnamed: [...w.unnamed]
          .map(([address, ports]) => ({ address, ports: [...ports].map(portSpec).sort(byPort) }))
          .sort((a, b) => a.address.localeCompare(b.address)),
      });
    }
    return out.sort((a, b) => workloadId(a.workload).localeCompare(workloadId(b.workload)));
  }
}
