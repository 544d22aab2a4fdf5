/**
 * Every Prometheus metric of `namegate sync`, declared here once. Labels are low-cardinality:
 * a result, a family, a target; never a name or an address (those are in the status and logs).
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { METRIC_PREFIX } from '../observe/metrics.ts';

const P = `${METRIC_PREFIX}_sync`;

export type TargetName = 'networkpolicy' | 'nftables' | 'aws' | 'gcp';

export interface SyncMetrics {
  /** result: ok | failed; family: 4 | 6. */
  readonly resolutions: Counter<'result' | 'family'>;
  readonly resolutionSeconds: Histogram;
  readonly names: Gauge;
  readonly failingNames: Gauge;
  readonly addresses: Gauge<'family'>;
  readonly unresolvablePatterns: Gauge;
  readonly capEvictions: Counter;
  readonly windowRemovals: Counter;
  /** result: ok | unchanged | error. */
  readonly writes: Counter<'target' | 'result'>;
  readonly writeSeconds: Histogram<'target'>;
  readonly lastWrite: Gauge<'target'>;
  readonly splitPolicies: Gauge;
}

export function createSyncMetrics(registry: Registry): SyncMetrics {
  const registers = [registry];
  return {
    resolutions: new Counter({
      name: `${P}_resolutions_total`,
      help: 'Resolutions of one name and family through the upstream, by result (ok, failed).',
      labelNames: ['result', 'family'],
      registers,
    }),
    resolutionSeconds: new Histogram({
      name: `${P}_resolution_duration_seconds`,
      help: 'Time to resolve one name (A and AAAA side by side).',
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10],
      registers,
    }),
    names: new Gauge({ name: `${P}_names`, help: 'Exact names the policies ask for.', registers }),
    failingNames: new Gauge({
      name: `${P}_failing_names`,
      help: 'Names whose last resolution failed (their last good addresses stay, bounded by the window).',
      registers,
    }),
    addresses: new Gauge({
      name: `${P}_addresses`,
      help: 'Addresses held in the union window over every name, by family.',
      labelNames: ['family'],
      registers,
    }),
    unresolvablePatterns: new Gauge({
      name: `${P}_unresolvable_patterns`,
      help: 'Wildcard patterns in the policies: they cannot be resolved and nothing is written for them.',
      registers,
    }),
    capEvictions: new Counter({
      name: `${P}_cap_evictions_total`,
      help: 'Addresses pushed out because a name reached sync.maxAddressesPerName.',
      registers,
    }),
    windowRemovals: new Counter({
      name: `${P}_window_removals_total`,
      help: 'Addresses that left because they were not seen for the whole window.',
      registers,
    }),
    writes: new Counter({
      name: `${P}_writes_total`,
      help: 'Passes of a target writer, by result: ok (something changed), unchanged (nothing to write), error.',
      labelNames: ['target', 'result'],
      registers,
    }),
    writeSeconds: new Histogram({
      name: `${P}_write_duration_seconds`,
      help: 'Time of one pass of a target writer.',
      labelNames: ['target'],
      buckets: [0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
      registers,
    }),
    lastWrite: new Gauge({
      name: `${P}_last_success_timestamp_seconds`,
      help: 'When a target writer last finished without error (Unix time).',
      labelNames: ['target'],
      registers,
    }),
    splitPolicies: new Gauge({
      name: `${P}_split_policies`,
      help: 'Policies written as more than one NetworkPolicy object (too many addresses for one).',
      registers,
    }),
  };
}
