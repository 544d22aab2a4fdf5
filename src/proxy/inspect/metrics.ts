/**
 * Metrics of TLS inspection (namegate_proxy_*; low-cardinality labels, never names or paths):
 *   requests_total{verdict,reason}          every judged request, by decision
 *   leaf_certificates_total{result}         hit (cached context) | minted
 *   upstream_tls_errors_total{kind}         cert (verification failed) | connect | timeout | protocol
 *   inspection_ca_reloads_total{result}     rotated | refused (the old CA stays)
 *   inspected_connections_total{protocol}   h1 | h2 | failed (never reached a protocol)
 */
import { Counter, type Registry } from 'prom-client';

export interface InspectMetrics {
  readonly requests: Counter<'verdict' | 'reason'>;
  readonly leaves: Counter<'result'>;
  readonly upstreamTls: Counter<'kind'>;
  readonly caReloads: Counter<'result'>;
  readonly connections: Counter<'protocol'>;
}

const byRegistry = new WeakMap<Registry, InspectMetrics>();

export function inspectMetrics(registry: Registry): InspectMetrics {
  const known = byRegistry.get(registry);
  if (known) return known;
  const m: InspectMetrics = {
    requests: new Counter({
      name: 'namegate_proxy_requests_total',
      help: 'Requests judged inside inspected TLS connections, by verdict and reason.',
      labelNames: ['verdict', 'reason'],
      registers: [registry],
    }),
    leaves: new Counter({
      name: 'namegate_proxy_leaf_certificates_total',
      help: 'Leaf certificates served to inspected clients: from the cache, or minted.',
      labelNames: ['result'],
      registers: [registry],
    }),
    upstreamTls: new Counter({
      name: 'namegate_proxy_upstream_tls_errors_total',
      help: "Failures of the proxy's own TLS connection to the destination.",
      labelNames: ['kind'],
      registers: [registry],
    }),
    caReloads: new Counter({
      name: 'namegate_proxy_inspection_ca_reloads_total',
      help: 'Changes of the inspection CA files: rotated (in use) or refused (the old CA stays).',
      labelNames: ['result'],
      registers: [registry],
    }),
    connections: new Counter({
      name: 'namegate_proxy_inspected_connections_total',
      help: 'Inspected connections by the protocol both sides speak.',
      labelNames: ['protocol'],
      registers: [registry],
    }),
  };
  byRegistry.set(registry, m);
  return m;
}
