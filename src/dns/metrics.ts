/**
 * Metrics of the DNS proxy. Labels are low-cardinality: verdict, reason, transport, kind;
 * never a name or an address.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

const LATENCY_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
];

export interface DnsMetrics {
  readonly queries: Counter<'verdict' | 'reason' | 'transport'>;
  readonly duration: Histogram<'transport'>;
  readonly upstreamDuration: Histogram<'transport'>;
  readonly upstreamErrors: Counter<'kind'>;
  readonly commitWait: Histogram;
  readonly commitBatches: Counter<'result'>;
  readonly holdTimeouts: Counter;
  readonly commitFailures: Counter;
  readonly drops: Counter<'reason'>;
  readonly learned: Counter<'change'>;
  readonly notLearned: Counter<'reason'>;
  /** Observe one successful upstream attempt (label children are cached). */
  observeUpstream(transport: string, seconds: number): void;
  /** Count a finished query and observe its duration (label children are cached). */
  countQuery(verdict: string, reason: string, transport: string, seconds: number): void;
  /** Point the gauges at live values (call once the proxy exists). */
  watch(values: { pending(): number; tcpConnections(): number }): void;
}

export function createDnsMetrics(registry: Registry): DnsMetrics {
  let values: { pending(): number; tcpConnections(): number } | null = null;
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
  const queries = new Counter({
    name: 'namegate_dns_queries_total',
    help: 'Client queries by verdict (allow, deny, audit, forward, refuse, error) and reason.',
    labelNames: ['verdict', 'reason', 'transport'] as const,
    registers,
  });
  const duration = new Histogram({
    name: 'namegate_dns_query_duration_seconds',
    help: 'Time from receiving a query to sending its reply.',
    labelNames: ['transport'] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  });
  // prom-client hashes label objects on every call; the set of label values is small and
  // fixed, so each child is looked up once and reused.
  const upstreamDuration = new Histogram({
    name: 'namegate_dns_upstream_duration_seconds',
    help: 'Time an upstream took to answer (per successful attempt).',
    labelNames: ['transport'] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const upstreamChildren = new Map<string, { observe(v: number): void }>();
  const queryChildren = new Map<string, { inc(): void }>();
  const durationChildren = new Map<string, { observe(v: number): void }>();
  return {
    countQuery(verdict, reason, transport, seconds) {
      const key = `${verdict}|${reason}|${transport}`;
      let q = queryChildren.get(key);
      if (!q) {
        q = queries.labels(verdict, reason, transport);
        queryChildren.set(key, q);
      }
      q.inc();
      let h = durationChildren.get(transport);
      if (!h) {
        h = duration.labels(transport);
        durationChildren.set(transport, h);
      }
      h.observe(seconds);
    },
    observeUpstream(transport, seconds) {
      let h = upstreamChildren.get(transport);
      if (!h) {
        h = upstreamDuration.labels(transport);
        upstreamChildren.set(transport, h);
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
    commitWait: new Histogram({
      name: 'namegate_dns_commit_wait_seconds',
      help: 'Time answers waited for the datapath to commit their elements.',
      buckets: LATENCY_BUCKETS,
      registers,
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
    learned: new Counter({
      name: 'namegate_dns_learned_total',
      help: 'Addresses learned from answers (new or refreshed).',
      labelNames: ['change'] as const,
      registers,
    }),
    notLearned: new Counter({
      name: 'namegate_dns_not_learned_total',
      help: 'Answer addresses not learned, by reason (denied_range, family, cap, store).',
      labelNames: ['reason'] as const,
      registers,
    }),
    watch(v) {
      values = v;
    },
  };
}
