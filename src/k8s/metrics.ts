/**
 * Prometheus metrics of the Kubernetes components (reflectors, identity provider, policy source,
 * controller). Labels are low-cardinality: the resource name, a reason or a result, never an
 * object name.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { METRIC_PREFIX } from '../observe/metrics.ts';

const P = `${METRIC_PREFIX}_k8s`;

export interface K8sMetrics {
  readonly watchRestarts: Counter<'resource' | 'reason'>;
  readonly relists: Counter<'resource'>;
  readonly lastEvent: Gauge<'resource'>;
  readonly objects: Gauge<'resource'>;
  readonly synced: Gauge<'resource'>;
  readonly identities: Gauge;
  readonly hostNetworkPods: Gauge;
  readonly policies: Gauge<'state'>;
  readonly leader: Gauge;
  readonly statusWrites: Counter<'result'>;
}

const cache = new WeakMap<Registry, K8sMetrics>();

/** The metrics registered on `registry`; calling it again with the same registry returns the same set. */
export function k8sMetrics(registry: Registry): K8sMetrics {
  const known = cache.get(registry);
  if (known) return known;
  const registers = [registry];
  const m: K8sMetrics = {
    watchRestarts: new Counter({
      name: `${P}_watch_restarts_total`,
      help: 'Watches restarted, by reason: closed (server ended it), gone (410, relist), error, stall (watchdog), absent (resource not served).',
      labelNames: ['resource', 'reason'],
      registers,
    }),
    relists: new Counter({
      name: `${P}_relists_total`,
      help: 'Full lists of a resource.',
      labelNames: ['resource'],
      registers,
    }),
    lastEvent: new Gauge({
      name: `${P}_last_event_timestamp_seconds`,
      help: 'Wall time of the last event or bookmark seen on a watch.',
      labelNames: ['resource'],
      registers,
    }),
    objects: new Gauge({
      name: `${P}_objects`,
      help: 'Objects held by a reflector.',
      labelNames: ['resource'],
      registers,
    }),
    synced: new Gauge({
      name: `${P}_synced`,
      help: '1 once a reflector has completed its first full list.',
      labelNames: ['resource'],
      registers,
    }),
    identities: new Gauge({
      name: `${P}_identities`,
      help: 'Pod IPs of this node with a known identity.',
      registers,
    }),
    hostNetworkPods: new Gauge({
      name: `${P}_host_network_pods`,
      help: 'Live host-network pods of this node: they share the node address, so namegate does not govern them (L3-09).',
      registers,
    }),
    policies: new Gauge({
      name: `${P}_policies`,
      help: 'Policy objects read from the API, by state (accepted, rejected_last_good_kept, rejected_fail_closed, rejected_no_subject).',
      labelNames: ['state'],
      registers,
    }),
    leader: new Gauge({
      name: `${P}_controller_leader`,
      help: '1 while this controller holds the Lease.',
      registers,
    }),
    statusWrites: new Counter({
      name: `${P}_status_writes_total`,
      help: 'Policy status writes by the controller, by result (ok, conflict, error).',
      labelNames: ['result'],
      registers,
    }),
  };
  cache.set(registry, m);
  return m;
}
