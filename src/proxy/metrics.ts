/**
 * Metrics of the SNI/Host proxy and the CONNECT proxy. Labels are low-cardinality (proxy kind,
 * verdict, reason code, direction); never a name or an address.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export type ProxyKind = 'sni' | 'connect';

export interface ProxyMetrics {
  readonly connections: Counter<'proxy' | 'verdict' | 'reason'>;
  readonly decision: Histogram<'proxy'>;
  readonly bytes: Counter<'proxy' | 'direction'>;
  readonly upstreamErrors: Counter<'proxy' | 'kind'>;
  readonly originalDst: Counter<'method' | 'result'>;
  readonly ech: Counter<'verdict'>;
  /** Count a decided connection (children cached: the label set is small and fixed). */
  count(proxy: ProxyKind, verdict: string, reason: string): void;
  /** Point the active-connections gauge at a live count. */
  watch(proxy: ProxyKind, active: () => number): void;
}

const BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** One set of metrics per registry: both proxies share it. */
const byRegistry = new WeakMap<Registry, ProxyMetrics>();

export function proxyMetrics(registry: Registry): ProxyMetrics {
  const existing = byRegistry.get(registry);
  if (existing) return existing;
  const registers = [registry];
  const watched = new Map<ProxyKind, () => number>();
  new Gauge({
    name: 'namegate_proxy_active_connections',
    help: 'Open client connections, by proxy.',
    labelNames: ['proxy'] as const,
    registers,
    collect() {
      for (const [proxy, f] of watched) this.set({ proxy }, f());
    },
  });
  const connections = new Counter({
    name: 'namegate_proxy_connections_total',
    help: 'Connections by proxy, verdict (allow, deny, audit) and reason code.',
    labelNames: ['proxy', 'verdict', 'reason'] as const,
    registers,
  });
  const decision = new Histogram({
    name: 'namegate_proxy_decision_seconds',
    help: 'Time from accepting a connection to its verdict (peek included).',
    labelNames: ['proxy'] as const,
    buckets: BUCKETS,
    registers,
  });
  const bytes = new Counter({
    name: 'namegate_proxy_bytes_total',
    help: 'Bytes relayed, by direction (up: client to server).',
    labelNames: ['proxy', 'direction'] as const,
    registers,
  });
  const upstreamErrors = new Counter({
    name: 'namegate_proxy_upstream_errors_total',
    help: 'Upstream connections that failed (connect, timeout, refused, resolve).',
    labelNames: ['proxy', 'kind'] as const,
    registers,
  });
  const originalDst = new Counter({
    name: 'namegate_proxy_original_dst_total',
    help: 'Original-destination lookups by method (addon, conntrack) and result (ok, failed).',
    labelNames: ['method', 'result'] as const,
    registers,
  });
  const ech = new Counter({
    name: 'namegate_proxy_ech_hellos_total',
    help: 'ClientHellos carrying an encrypted_client_hello extension (decided on the outer name), by verdict.',
    labelNames: ['verdict'] as const,
    registers,
  });
  const children = new Map<string, { inc(): void }>();
  const m: ProxyMetrics = {
    connections,
    decision,
    bytes,
    upstreamErrors,
    originalDst,
    ech,
    count(proxy, verdict, reason) {
      const key = `${proxy}|${verdict}|${reason}`;
      let c = children.get(key);
      if (!c) {
        c = connections.labels(proxy, verdict, reason);
        children.set(key, c);
      }
      c.inc();
    },
    watch(proxy, active) {
      watched.set(proxy, active);
    },
  };
  byRegistry.set(registry, m);
  return m;
}
