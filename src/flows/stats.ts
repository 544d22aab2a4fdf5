/**
 * The dashboard's numbers, aggregated in the agent as decisions happen (so the page shows the
 * same figures at 10 or 30,000 decisions a second): totals, per-second series of the last
 * minutes, the top denied names, the top sources, and per source its names.
 *
 * count() is on the decision path: a few array and Map updates, no allocation for a name or
 * source seen before. Every map is bounded; when one is full the smallest half is dropped
 * (top-N stays right for anything that matters, small counts may restart).
 */
import type { FlowType, FlowVerdict } from './event.ts';
import type { SourceBook } from './sources.ts';

export const SERIES_SECONDS = 300;
const MAX_NAMES = 20_000;
const MAX_SOURCES = 20_000;
const NAMES_PER_SOURCE = 256;

/** Series kept per second. */
const ALLOWED = 0;
const DENIED = 1;
const AUDIT = 2;
const DROPS = 3;
const SERIES = 4;

interface SourceCounts {
  total: number;
  denied: number;
  names: Map<string, NameCounts>;
}

interface NameCounts {
  total: number;
  denied: number;
}

export interface StatsSnapshot {
  readonly time: string;
  readonly totals: {
    readonly queries: number;
    readonly queriesDenied: number;
    readonly queriesAudit: number;
    readonly drops: number;
    readonly auditDrops: number;
    readonly proxyDenied: number;
    readonly governed: number;
  };
  /** Per second, oldest first, ending at `time`. */
  readonly series: {
    readonly start: number;
    readonly allowed: number[];
    readonly denied: number[];
    readonly audit: number[];
    readonly drops: number[];
  };
  readonly topDenied: Array<{ name: string; count: number }>;
  readonly topSources: Array<{ src: string; who: string; total: number; denied: number }>;
  /** With a source: its names, most used first. */
  readonly source?: {
    src: string;
    who: string;
    names: Array<{ name: string; total: number; denied: number }>;
  };
}

function prune<V>(m: Map<string, V>, weight: (v: V) => number): void {
  const sorted = [...m.entries()].sort((a, b) => weight(a[1]) - weight(b[1]));
  for (const [k] of sorted.slice(0, Math.floor(sorted.length / 2))) m.delete(k);
}

function top<V>(m: Map<string, V>, weight: (v: V) => number, n: number): Array<[string, V]> {
  return [...m.entries()].sort((a, b) => weight(b[1]) - weight(a[1])).slice(0, n);
}

export class FlowStats {
  readonly #now: () => number;
  readonly #series = new Float64Array(SERIES_SECONDS * SERIES);
  /** The second (epoch s) that slot `#slotSecond % SERIES_SECONDS` holds. */
  #slotSecond = 0;
  readonly #denied = new Map<string, number>();
  readonly #sources = new Map<string, SourceCounts>();
  queries = 0;
  queriesDenied = 0;
  queriesAudit = 0;
  drops = 0;
  auditDrops = 0;
  proxyDenied = 0;

  constructor(now: () => number = Date.now) {
    this.#now = now;
    this.#slotSecond = Math.floor(now() / 1000);
  }

  /** The slot of this second, clearing the slots of seconds that passed without events. */
  #slot(): number {
    const second = Math.floor(this.#now() / 1000);
    if (second !== this.#slotSecond) {
      const gap = Math.min(SERIES_SECONDS, Math.max(0, second - this.#slotSecond));
      for (let s = 1; s <= gap; s++) {
        const at = ((this.#slotSecond + s) % SERIES_SECONDS) * SERIES;
        this.#series.fill(0, at, at + SERIES);
      }
      if (second > this.#slotSecond) this.#slotSecond = second;
    }
    return (this.#slotSecond % SERIES_SECONDS) * SERIES;
  }

  count(type: FlowType, verdict: FlowVerdict, src: string, name: string | null, n = 1): void {
    const slot = this.#slot();
    const bad = verdict !== 'allow';
    if (type === 'dns') {
      if (verdict === 'drop') {
        this.drops += n;
        this.#series[slot + DROPS] = (this.#series[slot + DROPS] as number) + n;
      } else {
        this.queries += n;
        const k = verdict === 'allow' ? ALLOWED : verdict === 'audit' ? AUDIT : DENIED;
        this.#series[slot + k] = (this.#series[slot + k] as number) + n;
        if (verdict === 'deny' || verdict === 'error') this.queriesDenied += n;
        if (verdict === 'audit') this.queriesAudit += n;
      }
    } else if (type === 'kernel') {
      const k = verdict === 'audit' ? AUDIT : DROPS;
      this.#series[slot + k] = (this.#series[slot + k] as number) + n;
      if (verdict === 'audit') this.auditDrops += n;
      else this.drops += n;
    } else {
      const k = verdict === 'allow' ? ALLOWED : verdict === 'audit' ? AUDIT : DENIED;
      this.#series[slot + k] = (this.#series[slot + k] as number) + n;
      if (verdict === 'deny') this.proxyDenied += n;
    }
    if (bad && name !== null) {
      this.#denied.set(name, (this.#denied.get(name) ?? 0) + n);
      if (this.#denied.size > MAX_NAMES) prune(this.#denied, (v) => v);
    }
    let s = this.#sources.get(src);
    if (!s) {
      s = { total: 0, denied: 0, names: new Map() };
      this.#sources.set(src, s);
      if (this.#sources.size > MAX_SOURCES) prune(this.#sources, (v) => v.total);
    }
    s.total += n;
    if (bad) s.denied += n;
    if (name !== null) {
      let c = s.names.get(name);
      if (!c) {
        c = { total: 0, denied: 0 };
        s.names.set(name, c);
        if (s.names.size > NAMES_PER_SOURCE) prune(s.names, (v) => v.total);
      }
      c.total += n;
      if (bad) c.denied += n;
    }
  }

  snapshot(options: {
    governed: number;
    sources?: SourceBook;
    source?: string;
    seconds?: number;
    top?: number;
  }): StatsSnapshot {
    this.#slot(); // clears the seconds that passed without events
    const seconds = Math.min(SERIES_SECONDS, options.seconds ?? SERIES_SECONDS);
    const n = options.top ?? 10;
    const series = {
      start: this.#slotSecond - seconds + 1,
      allowed: [] as number[],
      denied: [] as number[],
      audit: [] as number[],
      drops: [] as number[],
    };
    for (let s = series.start; s <= this.#slotSecond; s++) {
      const at = (((s % SERIES_SECONDS) + SERIES_SECONDS) % SERIES_SECONDS) * SERIES;
      series.allowed.push(this.#series[at + ALLOWED] as number);
      series.denied.push(this.#series[at + DENIED] as number);
      series.audit.push(this.#series[at + AUDIT] as number);
      series.drops.push(this.#series[at + DROPS] as number);
    }
    const who = (src: string) => {
      const info = options.sources?.get(src);
      return info?.namespace && info.pod ? `${info.namespace}/${info.pod}` : (info?.pod ?? src);
    };
    const snap: StatsSnapshot = {
      time: new Date(this.#now()).toISOString(),
      totals: {
        queries: this.queries,
        queriesDenied: this.queriesDenied,
        queriesAudit: this.queriesAudit,
        drops: this.drops,
        auditDrops: this.auditDrops,
        proxyDenied: this.proxyDenied,
        governed: options.governed,
      },
      series,
      topDenied: top(this.#denied, (v) => v, n).map(([name, count]) => ({ name, count })),
      topSources: top(this.#sources, (v) => v.total, n).map(([src, v]) => ({
        src,
        who: who(src),
        total: v.total,
        denied: v.denied,
      })),
    };
    const src = options.source;
    const s = src !== undefined ? this.#sources.get(src) : undefined;
    if (src === undefined || !s) return snap;
    return {
      ...snap,
      source: {
        src,
        who: who(src),
        names: top(s.names, (v) => v.total, 50).map(([name, v]) => ({
          name,
          total: v.total,
          denied: v.denied,
        })),
      },
    };
  }
}
