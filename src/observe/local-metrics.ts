/**
 * Metrics cheap enough for a hot path, exported in prom-client's format through the same
 * registry. prom-client's own inc()/observe() hash their label object on every call; these keep
 * a plain number (FoldedCounts) or a typed array of bucket counts (LocalHistogram) per label set,
 * made once, and hand the totals to prom-client only when the registry is scraped.
 */
import type { Counter, Registry } from 'prom-client';

/** Counts per label set kept as plain numbers, added to a prom-client counter when it is scraped. */
export class FoldedCounts {
  readonly #series: Array<{ readonly labels: Record<string, string>; n: number }> = [];

  /** A new series with these labels; count by adding to its `n`. */
  series(labels: Record<string, string>): { n: number } {
    const s = { labels, n: 0 };
    this.#series.push(s);
    return s;
  }

  fold(counter: Counter<string>): void {
    for (const s of this.#series) {
      if (s.n === 0) continue;
      counter.inc(s.labels, s.n);
      s.n = 0;
    }
  }
}

/** One label set of a LocalHistogram. */
export class LocalSeries {
  /** Observations per bucket (not cumulative); the last slot is above the largest bound. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  readonly #bounds: readonly number[];

  constructor(bounds: readonly number[]) {
    this.#bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) return;
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += value;
    this.count++;
  }
}

interface LocalHistogramConfig {
  readonly name: string;
  readonly help: string;
  /** At most one label (all these histograms need). */
  readonly labelNames: readonly string[];
  readonly buckets: readonly number[];
}

type ExportValue = {
  labels: Record<string, string | number>;
  sharedLabels?: Record<string, string>;
  value: number;
  metricName: string;
};

/** What a registered histogram hands the registry. */
interface HistogramExport {
  name: string;
  help: string;
  type: 'histogram';
  values: ExportValue[];
  aggregator: 'sum';
}

/**
 * A histogram registered with a prom-client Registry, exported exactly as prom-client's
 * Histogram exports one (the same values, labels and order), but observed with a few typed-array
 * operations instead of hashing a label object per call.
 */
export class LocalHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #label: string | null;
  readonly #bounds: readonly number[];
  readonly #series = new Map<string, LocalSeries>();

  constructor(registry: Registry, config: LocalHistogramConfig) {
    if (config.labelNames.length > 1) throw new Error('LocalHistogram takes at most one label');
    this.name = config.name;
    this.help = config.help;
    this.#label = config.labelNames[0] ?? null;
    this.#bounds = [...config.buckets].sort((a, b) => a - b);
    // As prom-client does, a histogram without labels exports its (zero) series from the start.
    if (this.#label === null) this.series();
    registry.registerMetric(this as never);
  }

  /** The series of one label value (the only series when the histogram has no label). */
  series(value = ''): LocalSeries {
    let s = this.#series.get(value);
    if (!s) {
      s = new LocalSeries(this.#bounds);
      this.#series.set(value, s);
    }
    return s;
  }

  /** Observe without a label (histograms that have none). */
  observe(value: number): void {
    this.series().observe(value);
  }

  /** Zero every series in place (callers keep references to their series). */
  reset(): void {
    for (const s of this.#series.values()) {
      s.counts.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }

  /** What Registry.metrics() formats: bucket labels apart from the series' own labels. */
  async getForPromString(): Promise<HistogramExport> {
    const values: ExportValue[] = [];
    const bucket = `${this.name}_bucket`;
    for (const [value, s] of this.#series) {
      const shared: Record<string, string> = this.#label === null ? {} : { [this.#label]: value };
      let acc = 0;
      for (let i = 0; i < this.#bounds.length; i++) {
        acc += s.counts[i] as number;
        values.push({
          labels: { le: this.#bounds[i] as number },
          sharedLabels: shared,
          value: acc,
          metricName: bucket,
        });
      }
      values.push({ labels: { le: '+Inf' }, sharedLabels: shared, value: s.count, metricName: bucket });
      values.push({ labels: {}, sharedLabels: shared, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: {}, sharedLabels: shared, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: 'histogram', values, aggregator: 'sum' };
  }

  /** As prom-client's Histogram.get(): each value's labels include the series' labels. */
  async get(): Promise<HistogramExport> {
    const data = await this.getForPromString();
    data.values = data.values.map(({ sharedLabels, ...v }) => ({
      ...v,
      labels: { ...v.labels, ...sharedLabels },
    }));
    return data;
  }
}
