/** The agent's own metrics: syncs with the kernel, governed sources, policy reloads, readiness. */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { METRIC_PREFIX } from '../observe/metrics.ts';

export interface AgentMetrics {
  readonly syncs: Counter<'result'>;
  readonly syncSeconds: Histogram;
  readonly governedSources: Gauge;
  readonly revocations: Counter<'result'>;
  readonly policyReloads: Counter<'result'>;
  readonly policies: Gauge;
  readonly ready: Gauge;
  /** The peer feed between two agents on one node (REL-11, peer-feed.ts). */
  readonly peerEntries: Gauge;
  readonly peerFeedConnections: Counter<'role'>;
  readonly peerFeedErrors: Counter<'reason'>;
}

export function createAgentMetrics(registry: Registry): AgentMetrics {
  const p = `${METRIC_PREFIX}_agent`;
  return {
    syncs: new Counter({
      name: `${p}_syncs_total`,
      help: 'Syncs of policy and identity into the kernel, by result (ok, error).',
      labelNames: ['result'],
      registers: [registry],
    }),
    syncSeconds: new Histogram({
      name: `${p}_sync_seconds`,
      help: 'Time of one sync of policy and identity into the kernel.',
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10],
      registers: [registry],
    }),
    governedSources: new Gauge({
      name: `${p}_governed_sources`,
      help: 'Source addresses at least one policy selects.',
      registers: [registry],
    }),
    revocations: new Counter({
      name: `${p}_revocations_total`,
      help: 'Revocations (learned elements removed and their flows ended, one step), by result (ok, error: some flows may remain).',
      labelNames: ['result'],
      registers: [registry],
    }),
    policyReloads: new Counter({
      name: `${p}_policy_reloads_total`,
      help: 'Policy reloads, by result (ok, rejected: the last good set stayed in force).',
      labelNames: ['result'],
      registers: [registry],
    }),
    policies: new Gauge({ name: `${p}_policies`, help: 'Policies in force.', registers: [registry] }),
    ready: new Gauge({
      name: `${p}_ready`,
      help: '1 once the first sync with the kernel is done.',
      registers: [registry],
    }),
    peerEntries: new Gauge({
      name: `${p}_peer_entries`,
      help: 'Entries learned from the other agent on this node (its DNS answers), checked by the SNI/Host proxy.',
      registers: [registry],
    }),
    peerFeedConnections: new Counter({
      name: `${p}_peer_feed_connections_total`,
      help: 'Peer feed connections, by role (served: a peer follows this agent; followed: this agent follows a peer).',
      labelNames: ['role'],
      registers: [registry],
    }),
    peerFeedErrors: new Counter({
      name: `${p}_peer_feed_errors_total`,
      help: 'Peer feed problems, by reason (a feed closed for a malformed, oversized or too fast line, a slow reader, a full peer view, ...).',
      labelNames: ['reason'],
      registers: [registry],
    }),
  };
}
