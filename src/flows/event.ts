/**
 * The flow event: one schema for every decision namegate makes, whichever part made it.
 *
 *   dns     the DNS proxy answered (or refused) a query
 *   proxy   the SNI/Host or CONNECT proxy let a connection through or closed it
 *   kernel  the datapath dropped a packet of a governed source (Enforce), or would have (Audit)
 *
 * Every event names the source (address, port, identity, namespace, pod or group, labels,
 * workload), the 5-tuple as far as it is known, the name (the query, the SNI/Host, or for a
 * kernel event the name the address was learned for, kept after its TTL ran out), the verdict,
 * and either the policy and rule that allowed it or the reason it was denied.
 *
 * The flow log files keep their own line shapes (src/dns/flow-log.ts, src/proxy/flow-log.ts);
 * `toFlowEvent` turns any of them, or a kernel line (already in this shape), into a FlowEvent,
 * so history read from files and events streamed live are the same values. Lines are untrusted
 * input here (a file anyone could have written): every string is clipped, every list bounded,
 * and a line that is not a decision gives null, never an exception.
 */

export const FLOW_TYPES = ['dns', 'proxy', 'kernel'] as const;
export type FlowType = (typeof FLOW_TYPES)[number];

/**
 * allow: let through. deny: refused by policy (DNS REFUSED, proxy closed). audit: would have been
 * denied, let through because the source is in Audit mode. drop: the kernel (or the DNS proxy's
 * rate limit) dropped packets. error: failed for a reason that is not policy (upstream failure).
 */
export const FLOW_VERDICTS = ['allow', 'deny', 'audit', 'drop', 'error'] as const;
export type FlowVerdict = (typeof FLOW_VERDICTS)[number];

export interface Workload {
  /** Deployment, StatefulSet, DaemonSet, Job, CronJob, Pod, or Group (a gateway source group). */
  readonly kind: string;
  readonly name: string;
}

/** Why the kernel dropped a packet, as far as the agent's memory of DNS answers tells. */
export interface DropDetail {
  /** When this source learned the name for the address (ISO time), if it did. */
  readonly learnedAt?: string | undefined;
  /** When that element expired (ISO time), if it did. */
  readonly expiredAt?: string | undefined;
  /** The ports the policy grants for the name, e.g. "TCP/443" (learned for another port). */
  readonly ports?: string | undefined;
  /** Other sources that learned the address (learned by another pod only); a few at most. */
  readonly learnedBy?: readonly string[] | undefined;
  /** The address class that keeps answers from being learned (denied range). */
  readonly addressClass?: string | undefined;
}

export interface FlowEvent {
  /** When the decision was made (ISO 8601, UTC). */
  readonly time: string;
  /** The agent (node) that made it; set when events of several agents are merged. */
  readonly node: string | null;
  readonly type: FlowType;
  readonly verdict: FlowVerdict;
  /** Stable reason code: fqdn_rule, no_matching_rule, never_resolved, expired, ... */
  readonly reason: string;
  /** The policy that allowed (or came closest), "namespace/name" or "name"; null when none. */
  readonly policy: string | null;
  /** Index of the rule in that policy's spec.egress. */
  readonly rule: number | null;
  readonly src: string;
  readonly sport: number | null;
  /** "pod:ns/name", "group:name"; null when the source is unknown. */
  readonly identity: string | null;
  readonly namespace: string | null;
  /** The pod's name, or the group's name for a gateway source group. */
  readonly pod: string | null;
  readonly labels: Readonly<Record<string, string>> | null;
  readonly workload: Workload | null;
  readonly dst: string | null;
  readonly dport: number | null;
  /** The transport: tcp, udp, icmp, ... */
  readonly proto: string | null;
  /** The name: the query, the SNI/Host/CONNECT authority, or the name the address was learned for. */
  readonly name: string | null;
  /** Proxies: tls, http or connect. */
  readonly l7: string | null;
  /** DNS: query type, response code, the answer's addresses and TTL. */
  readonly qtype: string | null;
  readonly rcode: string | null;
  readonly ips: readonly string[];
  readonly ttl: number | null;
  /** Kernel: what the agent knows about the destination (see DropDetail). */
  readonly detail: DropDetail | null;
  /** Messages or packets summarized by this one event (rate-limited drops); 1 otherwise. */
  readonly count: number;
}

/** What the agent knows about a source beyond its address (labels, workload). */
export interface SourceInfo {
  readonly identity: string | null;
  readonly namespace: string | null;
  readonly pod: string | null;
  readonly labels: Readonly<Record<string, string>> | null;
  readonly workload: Workload | null;
}

/** Longest string kept from an untrusted line (names are at most 253 octets). */
const MAX_TEXT = 512;
/** Most list entries kept (answer addresses, label pairs). */
const MAX_LIST = 64;

export function emptyEvent(time: string, type: FlowType, src: string): FlowEvent {
  return {
    time,
    node: null,
    type,
    verdict: 'allow',
    reason: '',
    policy: null,
    rule: null,
    src,
    sport: null,
    identity: null,
    namespace: null,
    pod: null,
    labels: null,
    workload: null,
    dst: null,
    dport: null,
    proto: null,
    name: null,
    l7: null,
    qtype: null,
    rcode: null,
    ips: [],
    ttl: null,
    detail: null,
    count: 1,
  };
}

/** Namespace and pod (or group) name from an identity key: "pod:ns/name", "group:name". */
export function identityParts(key: string | null): { namespace: string | null; pod: string | null } {
  if (key === null) return { namespace: null, pod: null };
  const colon = key.indexOf(':');
  const rest = colon >= 0 ? key.slice(colon + 1) : key;
  const slash = rest.indexOf('/');
  if (slash >= 0) return { namespace: rest.slice(0, slash), pod: rest.slice(slash + 1) };
  return { namespace: null, pod: rest };
}

function text(v: unknown): string | null {
  if (typeof v !== 'string') return null;
  return v.length > MAX_TEXT ? v.slice(0, MAX_TEXT) : v;
}

function int(v: unknown): number | null {
  return typeof v === 'number' && Number.isInteger(v) && Math.abs(v) <= Number.MAX_SAFE_INTEGER ? v : null;
}

function strings(v: unknown): string[] {
  if (!Array.isArray(v)) return [];
  const out: string[] = [];
  for (const x of v.slice(0, MAX_LIST)) {
    const s = text(x);
    if (s !== null) out.push(s);
  }
  return out;
}

function labelsOf(v: unknown): Record<string, string> | null {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return null;
  const out: Record<string, string> = {};
  let n = 0;
  for (const [k, val] of Object.entries(v)) {
    if (n++ >= MAX_LIST) break;
    const s = text(val);
    if (s !== null && k.length <= MAX_TEXT) out[k] = s;
  }
  return out;
}

function workloadOf(v: unknown): Workload | null {
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  const kind = text(o['kind']);
  const name = text(o['name']);
  return kind !== null && name !== null ? { kind, name } : null;
}

function detailOf(v: unknown): DropDetail | null {
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  const d: {
    learnedAt?: string;
    expiredAt?: string;
    ports?: string;
    learnedBy?: string[];
    addressClass?: string;
  } = {};
  const learnedAt = text(o['learnedAt']);
  if (learnedAt !== null) d.learnedAt = learnedAt;
  const expiredAt = text(o['expiredAt']);
  if (expiredAt !== null) d.expiredAt = expiredAt;
  const ports = text(o['ports']);
  if (ports !== null) d.ports = ports;
  if (Array.isArray(o['learnedBy'])) d.learnedBy = strings(o['learnedBy']).slice(0, 8);
  const cls = text(o['addressClass']);
  if (cls !== null) d.addressClass = cls;
  return d;
}

/** The DNS proxy's verdicts in FlowEvent terms (forward is a pass-through zone: allowed). */
export const DNS_VERDICTS: Readonly<Record<string, FlowVerdict>> = {
  allow: 'allow',
  forward: 'allow',
  deny: 'deny',
  refuse: 'deny',
  audit: 'audit',
  error: 'error',
  drop: 'drop',
};

function isVerdict(v: unknown): v is FlowVerdict {
  return typeof v === 'string' && (FLOW_VERDICTS as readonly string[]).includes(v);
}

/**
 * A parsed flow log line (DNS, proxy or kernel) as a FlowEvent; null for lines that are not
 * decisions (proxy close lines, agent logs, garbage).
 */
export function toFlowEvent(line: unknown): FlowEvent | null {
  if (typeof line !== 'object' || line === null || Array.isArray(line)) return null;
  const o = line as Record<string, unknown>;
  const time = text(o['time']);
  const src = text(o['src']);
  if (time === null || src === null) return null;
  const identity = text(o['identity']);
  const parts = identityParts(identity);
  const base = {
    ...emptyEvent(time, 'dns', src),
    node: text(o['node']),
    reason: text(o['reason']) ?? '',
    policy: text(o['policy']),
    rule: int(o['rule']),
    identity,
    namespace: text(o['namespace']) ?? parts.namespace,
    pod: text(o['pod']) ?? parts.pod,
    labels: labelsOf(o['labels']),
    workload: workloadOf(o['workload']),
  };
  const event = o['event'] ?? o['type'];
  if (event === 'dns') {
    const verdict = DNS_VERDICTS[String(o['verdict'])];
    if (!verdict) return null;
    const dropped = int(o['dropped']) ?? int(o['count']);
    return {
      ...base,
      type: 'dns',
      verdict,
      sport: int(o['sport']),
      dst: text(o['dst']),
      dport: int(o['dport']) ?? 53,
      proto: text(o['transport']) ?? text(o['proto']) ?? 'udp',
      name: text(o['qname']) ?? text(o['name']),
      qtype: text(o['qtype']),
      rcode: text(o['rcode']),
      ips: strings(o['ips']),
      ttl: int(o['ttl']),
      count: dropped !== null && dropped > 0 ? dropped : 1,
    };
  }
  if (event === 'proxy' || event === 'http') {
    const verdict = o['verdict'];
    if (!isVerdict(verdict)) return null;
    // Proxy lines say the application protocol in `proto`; a FlowEvent has it in `l7`.
    const proto = text(o['proto']);
    const l7 =
      text(o['l7']) ?? (proto !== null && proto !== 'tcp' ? proto : event === 'http' ? 'http' : null);
    return {
      ...base,
      type: 'proxy',
      verdict,
      sport: int(o['sport']),
      dst: text(o['dst']),
      dport: int(o['dport']),
      proto: 'tcp',
      l7,
      name: text(o['sni']) ?? text(o['host']) ?? text(o['authority']) ?? text(o['name']),
    };
  }
  if (event === 'kernel') {
    const verdict = o['verdict'];
    if (!isVerdict(verdict)) return null;
    const count = int(o['count']);
    return {
      ...base,
      type: 'kernel',
      verdict,
      sport: int(o['sport']),
      dst: text(o['dst']),
      dport: int(o['dport']),
      proto: text(o['proto']),
      name: text(o['name']),
      detail: detailOf(o['detail']),
      count: count !== null && count > 0 ? count : 1,
    };
  }
  return null;
}

/** A flow log line (text) as a FlowEvent; null when it is not JSON or not a decision. */
export function parseFlowLine(line: string): FlowEvent | null {
  if (line.length === 0 || line.length > 64 * 1024 || line.charCodeAt(0) !== 0x7b) return null;
  try {
    return toFlowEvent(JSON.parse(line));
  } catch {
    return null;
  }
}

/** Fill in what the agent knows about the source (labels, workload) where the line had none. */
export function withSource(e: FlowEvent, info: SourceInfo | null): FlowEvent {
  if (info === null) return e;
  return {
    ...e,
    identity: e.identity ?? info.identity,
    namespace: e.namespace ?? info.namespace,
    pod: e.pod ?? info.pod,
    labels: e.labels ?? info.labels,
    workload: e.workload ?? info.workload,
  };
}

/**
 * A FlowEvent as a flow log line: its own fields, with the log's level/component/event/msg
 * around them, so it sits among DNS and proxy lines and `toFlowEvent` reads it back unchanged.
 * Kernel events are written this way (they have no line format of their own), and so are
 * events re-served by `namegate dashboard`.
 */
export function eventLine(e: FlowEvent): string {
  const level = e.verdict === 'allow' ? 'info' : 'warn';
  const { type, time, ...rest } = e;
  const component = type === 'kernel' ? 'datapath' : type;
  return `${JSON.stringify({ level, time, component, event: type, ...rest, msg: type })}\n`;
}

/** Milliseconds since the epoch of an event's time; NaN when unreadable. */
export function eventMs(e: FlowEvent): number {
  return Date.parse(e.time);
}
