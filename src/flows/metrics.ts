/**
 * Metrics of flows and of the per-policy verdicts.
 *
 *   namegate_policy_decisions_total{policy,verdict}   every DNS and proxy decision that names a
 *        policy (allowed by its rule, or closest to it), and kernel events of governed sources;
 *        `policy` is "namespace/name" or "name": bounded by the policies in force (beyond 1,000
 *        distinct values the rest count as policy="other")
 *   namegate_flows_kernel_events_total{verdict,reason}  kernel drops read from NFLOG, by reason
 *   namegate_flows_nflog_lost_total      NFLOG messages the kernel could not deliver to us
 *   namegate_flows_followers             clients following the flow API now
 *   namegate_flows_lost_total            lines dropped for followers that read too slowly
 *   namegate_flows_history_bytes         bytes of flow log lines kept in memory
 *
 * countPolicy() is on the decision path: a Map lookup and an addition; the sums are folded into
 * prom-client when scraped.
 */
import { Counter, Gauge, type Registry } from 'prom-client';

const MAX_POLICIES = 1000;

export interface FlowMetricSources {
  followers(): number;
  lostLines(): number;
  historyBytes(): number;
  nflogLost(): number;
}

export class FlowMetrics {
  readonly #policy = new Map<string, { policy: string; verdict: string; n: number }>();
  /** verdict -> policy -> its series, so counting allocates nothing for a pair seen before. */
  readonly #byVerdict = new Map<string, Map<string, { policy: string; verdict: string; n: number }>>();
  readonly kernelEvents: Counter<'verdict' | 'reason'>;
  #sources: FlowMetricSources | null = null;

  constructor(registry: Registry) {
    const registers = [registry];
    const policy = this.#policy;
    new Counter({
      name: 'namegate_policy_decisions_total',
      help: 'Decisions that name a policy (DNS, proxy, kernel), by policy and verdict (allow, deny, audit, drop).',
      labelNames: ['policy', 'verdict'] as const,
      registers,
      collect() {
        for (const s of policy.values()) {
          if (s.n === 0) continue;
          this.inc({ policy: s.policy, verdict: s.verdict }, s.n);
          s.n = 0;
        }
      },
    });
    this.kernelEvents = new Counter({
      name: 'namegate_flows_kernel_events_total',
      help: 'Kernel drops of governed traffic read from NFLOG (rate limited per source), by verdict and reason.',
      labelNames: ['verdict', 'reason'] as const,
      registers,
    });
    const self = this;
    const gauge = (name: string, help: string, read: (s: FlowMetricSources) => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(self.#sources ? read(self.#sources) : 0);
        },
      });
    // Totals kept by their owners are exported as counters through a collect hook.
    const counter = (name: string, help: string, read: (s: FlowMetricSources) => number) => {
      let exported = 0;
      return new Counter({
        name,
        help,
        registers,
        collect() {
          const now = self.#sources ? read(self.#sources) : 0;
          if (now > exported) this.inc(now - exported);
          exported = Math.max(exported, now);
        },
      });
    };
    gauge('namegate_flows_followers', 'Clients following the flow API now.', (s) => s.followers());
    gauge('namegate_flows_history_bytes', 'Bytes of flow log lines kept in memory for the flow API.', (s) =>
      s.historyBytes(),
    );
    counter('namegate_flows_lost_total', 'Flow lines dropped for followers that read too slowly.', (s) =>
      s.lostLines(),
    );
    counter(
      'namegate_flows_nflog_lost_total',
      'NFLOG messages the kernel could not deliver (receive buffer full).',
      (s) => s.nflogLost(),
    );
  }

  watch(sources: FlowMetricSources): void {
    this.#sources = sources;
  }

  /** One decision that names a policy (a lookup per verdict and policy, no allocation once seen). */
  countPolicy(policy: string, verdict: string): void {
    let byPolicy = this.#byVerdict.get(verdict);
    if (!byPolicy) {
      byPolicy = new Map();
      this.#byVerdict.set(verdict, byPolicy);
    }
    let s = byPolicy.get(policy);
    if (!s) {
      const label = this.#policy.size >= MAX_POLICIES ? 'other' : policy;
      const key = `${verdict} ${label}`;
      s = this.#policy.get(key) ?? { policy: label, verdict, n: 0 };
      this.#policy.set(key, s);
      byPolicy.set(policy, s);
    }
    s.n++;
  }
}
