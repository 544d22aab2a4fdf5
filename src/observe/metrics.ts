/**
 * The Prometheus registry. Each component declares its metrics in its own metrics.ts against
 * the registry it is given; nothing uses prom-client's global registry, so tests can build
 * as many independent components as they like.
 */
import { collectDefaultMetrics, Registry } from 'prom-client';

export const METRIC_PREFIX = 'namegate';

export function createRegistry(options: { defaultMetrics?: boolean } = {}): Registry {
  const registry = new Registry();
  if (options.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: `${METRIC_PREFIX}_` });
  return registry;
}
