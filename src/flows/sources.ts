/**
 * What is known about each source address (identity, namespace, pod or group, labels,
 * workload), so that DNS and proxy lines, which carry only the address and the identity key,
 * can be filtered by label and grouped by workload long after they were written.
 *
 * The agent writes one `source` line to the flow log whenever a source appears or changes:
 *   {"level":"info","time":"...","component":"agent","event":"source","src":"10.10.3.2",
 *    "identity":"pod:web/web-7d4b9-x2x1z","namespace":"web","pod":"web-7d4b9-x2x1z",
 *    "labels":{"app":"web","pod-template-hash":"7d4b9"},"workload":{"kind":"Deployment","name":"web"},"msg":"source"}
 * and every reader (the agent's own flow API, `namegate observe`, `namegate recommend`) keeps a
 * SourceBook fed from those lines. Bounded: at most `max` addresses, oldest forgotten first.
 */
import { type FlowEvent, identityParts, type SourceInfo, type Workload, withSource } from './event.ts';

const MAX_TEXT = 512;
const MAX_LABELS = 64;

export function sourceLine(time: string, src: string, info: SourceInfo): string {
  return `${JSON.stringify({ level: 'info', time, component: 'agent', event: 'source', src, ...info, msg: 'source' })}\n`;
}

/** A `source` line's content, or null when the line is something else. */
export function readSourceLine(o: unknown): { src: string; info: SourceInfo } | null {
  if (typeof o !== 'object' || o === null) return null;
  const r = o as Record<string, unknown>;
  if (r['event'] !== 'source' || typeof r['src'] !== 'string' || r['src'].length > 64) return null;
  const str = (v: unknown) => (typeof v === 'string' && v.length <= MAX_TEXT ? v : null);
  const identity = str(r['identity']);
  const parts = identityParts(identity);
  let labels: Record<string, string> | null = null;
  if (typeof r['labels'] === 'object' && r['labels'] !== null) {
    labels = {};
    for (const [k, v] of Object.entries(r['labels']).slice(0, MAX_LABELS)) {
      const s = str(v);
      if (s !== null && k.length <= MAX_TEXT) labels[k] = s;
    }
  }
  let workload: Workload | null = null;
  const w = r['workload'];
  if (typeof w === 'object' && w !== null) {
    const kind = str((w as Record<string, unknown>)['kind']);
    const name = str((w as Record<string, unknown>)['name']);
    if (kind !== null && name !== null) workload = { kind, name };
  }
  return {
    src: r['src'],
    info: {
      identity,
      namespace: str(r['namespace']) ?? parts.namespace,
      pod: str(r['pod']) ?? parts.pod,
      labels,
      workload,
    },
  };
}

export class SourceBook {
  readonly #max: number;
  readonly #byIp = new Map<string, SourceInfo>();
  /** The same infos by identity key: a gateway's source group holds whole prefixes, not addresses. */
  readonly #byIdentity = new Map<string, SourceInfo>();

  constructor(max = 100_000) {
    this.#max = max;
  }

  get size(): number {
    return this.#byIp.size;
  }

  /** What is known about `src`: an address, or a prefix ("10.10.0.0/16") of a source group. */
  set(src: string, info: SourceInfo): void {
    this.#byIp.delete(src);
    this.#byIp.set(src, info);
    if (info.identity !== null) {
      this.#byIdentity.delete(info.identity);
      this.#byIdentity.set(info.identity, info);
    }
    for (const m of [this.#byIp, this.#byIdentity]) {
      if (m.size <= this.#max) continue;
      const oldest = m.keys().next();
      if (!oldest.done) m.delete(oldest.value);
    }
  }

  get(src: string): SourceInfo | undefined {
    return this.#byIp.get(src) ?? this.#byIp.get(`${src}/${src.includes(':') ? 128 : 32}`);
  }

  /** Remember a `source` line; true when the line was one. */
  note(o: unknown): boolean {
    const s = readSourceLine(o);
    if (s === null) return false;
    this.set(s.src, s.info);
    return true;
  }

  /** The event with what is known about its source filled in (when the identity agrees). */
  enrich(e: FlowEvent): FlowEvent {
    const info =
      (e.identity !== null ? this.#byIdentity.get(e.identity) : undefined) ?? this.#byIp.get(e.src);
    if (!info) return e;
    if (e.identity !== null && info.identity !== null && e.identity !== info.identity) return e;
    return withSource(e, info);
  }

  entries(): IterableIterator<[string, SourceInfo]> {
    return this.#byIp.entries();
  }
}
