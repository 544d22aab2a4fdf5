/**
 * Metrics of the DNS proxy. Labels are low-cardinality: verdict, reason, transport, kind;
 * never a name or an address.
 *
 * The metrics touched by every query are cheap on the hot path: a counter's increments are
 * plain additions to a number kept per label set, added to the prom-client counter when it is
 * scraped (its collect hook); the latency histograms are LocalHistograms, a bucket count and a
 * sum per label set in a typed array, registered with the same registry and exported in
 * prom-client's format. prom-client's own inc()/observe() hash their label object on every
 * call, which cost about as much as all of the proxy's parsing.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { FoldedCounts, LocalHistogram, type LocalSeries } from '../observe/local-metrics.ts';

const LATENCY_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
];

export interface DnsMetrics {
  readonly queries: Counter<'verdict' | 'reason' | 'transport'>;
  readonly duration: LocalHistogram;
  readonly upstreamDuration: LocalHistogram;
  readonly upstreamErrors: Counter<'kind'>;
  readonly commitWait: LocalHistogram;
  readonly commitBatches: Counter<'result'>;
  readonly holdTimeouts: Counter;
  readonly commitFailures: Counter;
  readonly drops: Counter<'reason'>;
  readonly learned: Counter<'change'>;
  readonly notLearned: Counter<'reason'>;
  /** Held queries of unknown sources, by how the hold ended (src/dns/unknown-hold.ts). */
  readonly unknownHolds: Counter<'result'>;
  /** Observe one successful upstream attempt (label children are cached). */
  observeUpstream(transport: string, seconds: number): void;
  /** Count a finished query and observe its duration (label children are cached). */
  countQuery(verdict: string, reason: string, transport: string, seconds: number): void;
  /** Count one learned address by change (new, refreshed). */
  countLearned(change: string): void;
  /** Point the gauges at live values (call once the proxy exists). */
  watch(values: WatchedValues): void;
}

interface WatchedValues {
  pending(): number;
  tcpConnections(): number;
  unknownHeld?(): number;
}

export function createDnsMetrics(registry: Registry): DnsMetrics {
  let values: WatchedValues | null = null;
  const registers = [registry];
  new Gauge({
    name: 'namegate_dns_pending',
    help: 'Queries waiting for an upstream reply.',
    registers,
    collect() {
      this.set(values?.pending() ?? 0);
    },
  });
  new Gauge({
    name: 'namegate_dns_tcp_connections',
    help: 'Open client TCP connections.',
    registers,
    collect() {
      this.set(values?.tcpConnections() ?? 0);
    },
  });
  new Gauge({
    name: 'namegate_dns_unknown_held',
    help: 'Queries of unknown sources inside the source CIDRs held until the source is known.',
    registers,
    collect() {
      this.set(values?.unknownHeld?.() ?? 0);
    },
  });
  const queryCounts = new FoldedCounts();
  const queries = new Counter({
    name: 'namegate_dns_queries_total',
    help: 'Client queries by verdict (allow, deny, audit, forward, refuse, error) and reason.',
    labelNames: ['verdict', 'reason', 'transport'] as const,
    registers,
    collect() {
      queryCounts.fold(this);
    },
  });
  const learnedCounts = new FoldedCounts();
  const learned = new Counter({
    name: 'namegate_dns_learned_total',
    help: 'Addresses learned from answers (new or refreshed).',
    labelNames: ['change'] as const,
    registers,
    collect() {
      learnedCounts.fold(this);
    },
  });
  const duration = new LocalHistogram(registry, {
    name: 'namegate_dns_query_duration_seconds',
    help: 'Time from receiving a query to sending its reply.',
    labelNames: ['transport'],
    buckets: LATENCY_BUCKETS,
  });
  const upstreamDuration = new LocalHistogram(registry, {
    name: 'namegate_dns_upstream_duration_seconds',
    help: 'Time an upstream took to answer (per successful attempt).',
    labelNames: ['transport'],
    buckets: LATENCY_BUCKETS,
  });
  // The set of label values is small and fixed: each series is looked up once and reused.
  const querySeries = new Map<string, Map<string, Map<string, { n: number }>>>();
  const learnedSeries = new Map<string, { n: number }>();
  const durationSeries = new Map<string, LocalSeries>();
  const upstreamSeries = new Map<string, LocalSeries>();
  return {
    countQuery(verdict, reason, transport, seconds) {
      let q = querySeries.get(verdict)?.get(reason)?.get(transport);
      if (!q) {
        q = queryCounts.series({ verdict, reason, transport });
        let byReason = querySeries.get(verdict);
        if (!byReason) {
          byReason = new Map();
          querySeries.set(verdict, byReason);
        }
        let byTransport = byReason.get(reason);
        if (!byTransport) {
          byTransport = new Map();
          byReason.set(reason, byTransport);
        }
        byTransport.set(transport, q);
      }
      q.n++;
      let h = durationSeries.get(transport);
      if (!h) {
        h = duration.series(transport);
        durationSeries.set(transport, h);
      }
      h.observe(seconds);
    },
    countLearned(change) {
      let c = learnedSeries.get(change);
      if (!c) {
        c = learnedCounts.series({ change });
        learnedSeries.set(change, c);
      }
      c.n++;
    },
    observeUpstream(transport, seconds) {
      let h = upstreamSeries.get(transport);
      if (!h) {
        h = upstreamDuration.series(transport);
        upstreamSeries.set(transport, h);
      }
      h.observe(seconds);
    },
    queries,
    duration,
    upstreamDuration,
    upstreamErrors: new Counter({
      name: 'namegate_dns_upstream_errors_total',
      help: 'Upstream attempts that failed (timeout, network, tcp) and replies ignored (mismatch).',
      labelNames: ['kind'] as const,
      registers,
    }),
    commitWait: new LocalHistogram(registry, {
      name: 'namegate_dns_commit_wait_seconds',
      help: 'Time answers waited for the datapath to commit their elements.',
      labelNames: [],
      buckets: LATENCY_BUCKETS,
    }),
    commitBatches: new Counter({
      name: 'namegate_dns_commit_batches_total',
      help: 'Datapath learn() batches by result (ok, error).',
      labelNames: ['result'] as const,
      registers,
    }),
    holdTimeouts: new Counter({
      name: 'namegate_dns_hold_timeouts_total',
      help: 'Answers released before the datapath confirmed their elements (bounded hold expired).',
      registers,
    }),
    commitFailures: new Counter({
      name: 'namegate_dns_commit_failures_total',
      help: 'Answers withheld (SERVFAIL) because the datapath could not commit their elements.',
      registers,
    }),
    drops: new Counter({
      name: 'namegate_dns_drops_total',
      help: 'Messages dropped without a reply, by reason.',
      labelNames: ['reason'] as const,
      registers,
    }),
    learned,
    notLearned: new Counter({
      name: 'namegate_dns_not_learned_total',
      help: 'Answer addresses not learned, by reason (denied_range, family, cap, store; revoked_in_flight: a policy or identity change removed the entry before its commit finished, so the element left the kernel again; view_changed, per answer: the change came while the upstream answered and the answer is no longer learned).',
      labelNames: ['reason'] as const,
      registers,
    }),
    unknownHolds: new Counter({
      name: 'namegate_dns_unknown_holds_total',
      help: 'Held queries of unknown sources by how the hold ended (identified, timeout, full, stopped, gone).',
      labelNames: ['result'] as const,
      registers,
    }),
    watch(v) {
      values = v;
    },
  };
}
