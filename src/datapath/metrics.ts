/**
 * Prometheus metrics of the datapath (namegate_datapath_*), against the registry given.
 * Per-source drop counters are read from the kernel's set counters when scraped (cached for a
 * few seconds); at most `maxSourceLabels` sources get their own label, by drop count, and the
 * rest are summed into source="other", so the label set stays bounded.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** The drop counter of one owned range (a source may own several, around nested sources). */
export interface DropCount {
  /** The owning source (address or CIDR, as reconciled). */
  readonly source: string;
  /** The range counted: "a" or "a-b". */
  readonly range: string;
  readonly mode: 'Enforce' | 'Audit';
  readonly packets: number;
}

/** Packets of the source CIDRs dropped because namegate does not know the sender. */
export interface SourceDrops {
  /** No identity holds the source address (unknown, not yet synced, or claimed by a workload). */
  readonly unknown: number;
  /** The source failed the reverse-path check (another workload's address). */
  readonly spoofed: number;
  /** UDP to the DNS proxy over the source's kernel rate limit (config.dnsGuard). */
  readonly dnsFlood: number;
}

export interface DatapathMetricsOptions {
  readonly maxSourceLabels?: number;
  /** Reads the kernel counters; set by the driver. */
  readDrops?: () => Promise<readonly DropCount[]>;
  readSourceDrops?: () => Promise<SourceDrops>;
}

const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5];

export class DatapathMetrics {
  readonly commitSeconds: Histogram<'op'>;
  readonly transactionSeconds: Histogram<'executor'>;
  readonly batchElements: Histogram;
  readonly commitErrors: Counter<'op'>;
  readonly queueElements: Gauge;
  readonly queueRejections: Counter;
  readonly elements: Gauge<'set'>;
  readonly timeoutsClamped: Counter<'reason'>;
  readonly conntrackDeleted: Counter<'reason'>;
  readonly conntrackErrors: Counter;
  readonly inUseReads: Counter<'result'>;
  readonly reconciles: Counter<'result'>;
  readonly droppedPackets: Counter<'source' | 'mode'>;
  readonly unknownSourceDrops: Counter<'reason'>;
  readonly dnsFloodDrops: Counter;
  readonly executor: Gauge<'kind'>;
  readDrops: (() => Promise<readonly DropCount[]>) | undefined;
  readSourceDrops: (() => Promise<SourceDrops>) | undefined;

  constructor(registry: Registry, options: DatapathMetricsOptions = {}) {
    const maxSources = options.maxSourceLabels ?? 100;
    this.readDrops = options.readDrops;
    this.readSourceDrops = options.readSourceDrops;
    const registers = [registry];
    this.commitSeconds = new Histogram({
      name: 'namegate_datapath_commit_seconds',
      help: 'Time from a learn/forget call to the kernel commit of its elements',
      labelNames: ['op'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.transactionSeconds = new Histogram({
      name: 'namegate_datapath_transaction_seconds',
      help: 'Time one nft transaction took to run',
      labelNames: ['executor'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.batchElements = new Histogram({
      name: 'namegate_datapath_batch_elements',
      help: 'Elements (learn and forget) carried by one transaction',
      buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500],
      registers,
    });
    this.commitErrors = new Counter({
      name: 'namegate_datapath_commit_errors_total',
      help: 'Calls whose transaction failed (the caller got NG_DATAPATH_COMMIT)',
      labelNames: ['op'],
      registers,
    });
    this.queueElements = new Gauge({
      name: 'namegate_datapath_queue_elements',
      help: 'Elements waiting for a transaction',
      registers,
    });
    this.queueRejections = new Counter({
      name: 'namegate_datapath_queue_rejections_total',
      help: 'Calls rejected with NG_LIMIT_EXCEEDED because the queue was full',
      registers,
    });
    this.elements = new Gauge({
      name: 'namegate_datapath_elements',
      help: 'Elements per set (learned sets: as the driver tracks them; static sets: after reconcile)',
      labelNames: ['set'],
      registers,
    });
    this.timeoutsClamped = new Counter({
      name: 'namegate_datapath_timeouts_clamped_total',
      help: 'Element timeouts raised to the minimum (never 0) or lowered to the maximum',
      labelNames: ['reason'],
      registers,
    });
    this.conntrackDeleted = new Counter({
      name: 'namegate_datapath_conntrack_deleted_total',
      help: 'Conntrack entries deleted (revoked elements, newly governed sources DNS)',
      labelNames: ['reason'],
      registers,
    });
    this.conntrackErrors = new Counter({
      name: 'namegate_datapath_conntrack_errors_total',
      help: 'conntrack commands that failed',
      registers,
    });
    this.inUseReads = new Counter({
      name: 'namegate_datapath_in_use_reads_total',
      help: 'Conntrack listings read before an eviction (what is in use is never evicted), by result (ok; error: every address of the source counted as in use)',
      labelNames: ['result'],
      registers,
    });
    this.reconciles = new Counter({
      name: 'namegate_datapath_reconciles_total',
      help: 'Reconcile transactions by result',
      labelNames: ['result'],
      registers,
    });
    this.executor = new Gauge({
      name: 'namegate_datapath_executor',
      help: 'How transactions reach the kernel (1 for the kind in use): addon or spawn',
      labelNames: ['kind'],
      registers,
    });
    let cache: { at: number; rows: readonly DropCount[] } | null = null;
    let sourceCache: { at: number; drops: SourceDrops } | null = null;
    const self = this;
    /** The named kernel counters, read at most every 5 s for both metrics below. */
    const sourceDrops = async (): Promise<SourceDrops | null> => {
      if (!self.readSourceDrops) return null;
      const now = Date.now();
      if (sourceCache === null || now - sourceCache.at > 5_000) {
        try {
          sourceCache = { at: now, drops: await self.readSourceDrops() };
        } catch {
          return null;
        }
      }
      return sourceCache.drops;
    };
    this.unknownSourceDrops = new Counter({
      name: 'namegate_datapath_unknown_source_drops_total',
      help:
        'Packets from the source CIDRs dropped because namegate does not know the sender: ' +
        'reason="unknown" (no identity holds the address), reason="spoofed" (failed the reverse-path check)',
      labelNames: ['reason'],
      registers,
      async collect() {
        const drops = await sourceDrops();
        if (drops === null) return;
        this.reset();
        this.inc({ reason: 'unknown' }, drops.unknown);
        this.inc({ reason: 'spoofed' }, drops.spoofed);
      },
    });
    this.dnsFloodDrops = new Counter({
      name: 'namegate_datapath_dns_flood_drops_total',
      help: 'UDP packets to the DNS proxy dropped in the kernel: their source was over its rate limit',
      registers,
      async collect() {
        const drops = await sourceDrops();
        if (drops === null) return;
        this.reset();
        this.inc(drops.dnsFlood);
      },
    });
    this.droppedPackets = new Counter({
      name: 'namegate_datapath_dropped_packets_total',
      help: 'Packets of governed sources dropped (Enforce) or that would be (Audit), from kernel counters',
      labelNames: ['source', 'mode'],
      registers,
      async collect() {
        if (!self.readDrops) return;
        const now = Date.now();
        if (cache === null || now - cache.at > 5_000) {
          try {
            cache = { at: now, rows: await self.readDrops() };
          } catch {
            return;
          }
        }
        this.reset();
        // Per source and mode: the ranges a source owns are summed.
        const sums = new Map<string, { source: string; mode: string; packets: number }>();
        for (const r of cache.rows) {
          const k = `${r.mode} ${r.source}`;
          const s = sums.get(k) ?? { source: r.source, mode: r.mode, packets: 0 };
          s.packets += r.packets;
          sums.set(k, s);
        }
        const sorted = [...sums.values()].sort((a, b) => b.packets - a.packets);
        for (const [i, r] of sorted.entries()) {
          const source = i < maxSources ? r.source : 'other';
          this.inc({ source, mode: r.mode }, r.packets);
        }
      },
    });
  }
}
