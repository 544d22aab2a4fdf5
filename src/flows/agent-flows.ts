/**
 * The agent's flow machinery in one piece: the hub (history and followers), the dashboard's
 * statistics, the memory of learned names, the per-policy counters, the kernel events read
 * from NFLOG, the source lines, and the flow API that serves them. The agent builds one, hands
 * `dnsObserver` to the DNS proxy and `proxyObserver` to the proxies, and routes its HTTP
 * listener through `api.handle`.
 *
 * On the decision path (dnsObserver.record, proxyObserver.decision): a few counter and Map
 * updates and, for answers with addresses, the name memory; the lines themselves reach the hub
 * as the flow log writes them.
 */

import type { Registry } from 'prom-client';
import { errorMessage } from '../core/errors.ts';
import { classifyAddress } from '../core/ip.ts';
import { type NflogReader, openNflog } from '../datapath/nflog-reader.ts';
import type { FlowRecord } from '../dns/flow-log.ts';
import type { IdentityProvider } from '../identity/identity.ts';
import { F } from '../observe/fields.ts';
import type { LineSink } from '../observe/line-sink.ts';
import type { Logger } from '../observe/log.ts';
import type { CompiledPolicies } from '../policy/compile.ts';
import type { Identity } from '../policy/model.ts';
import type { DecisionRecord } from '../proxy/flow-log.ts';
import { FlowApi, type Proposal } from './api.ts';
import { DNS_VERDICTS, eventLine, type FlowEvent, type SourceInfo } from './event.ts';
import { AddressHistory } from './history.ts';
import { FlowHub } from './hub.ts';
import { KernelEvents } from './kernel.ts';
import { FlowMetrics } from './metrics.ts';
import type { FlowSettings } from './settings.ts';
import { SourceBook, sourceLine } from './sources.ts';
import { FlowStats } from './stats.ts';

/** Labels Kubernetes puts on a pod from its controller (a workload's name is read off them). */
function sourceInfo(identity: Identity): SourceInfo {
  const colon = identity.key.indexOf(':');
  const rest = identity.key.slice(colon + 1);
  const slash = rest.indexOf('/');
  return {
    identity: identity.key,
    namespace: identity.namespace,
    pod: slash >= 0 ? rest.slice(slash + 1) : rest,
    labels: identity.labels,
    workload: null,
  };
}

export interface DnsFlowObserver {
  /** Every line of the DNS flow log, whatever its mode. */
  readonly sink: LineSink;
  record(r: FlowRecord): void;
}

export interface ProxyFlowObserver {
  readonly sink: LineSink;
  decision(r: DecisionRecord): void;
}

export interface AgentFlowsOptions {
  readonly settings: FlowSettings;
  readonly identities: IdentityProvider;
  policies(): CompiledPolicies;
  /** The kernel element lifetime (ms) of an answer with this TTL (the store's TTL policy). */
  timeoutMs(ttlSeconds: number): number;
  readonly registry: Registry;
  /** The flow log file: kernel events and source lines are written there too (null: none). */
  readonly file: LineSink | null;
  /** Flow log files to read history from beyond memory. */
  readonly files: readonly string[];
  readonly log: Logger;
  /** Wall clock (ms). */
  now(): number;
  propose?(e: FlowEvent): Proposal;
  /** Read NFLOG in this network namespace (tests); default: the agent's own. */
  readonly netns?: string;
}

export class AgentFlows {
  readonly hub: FlowHub;
  readonly stats: FlowStats;
  readonly history: AddressHistory;
  readonly metrics: FlowMetrics;
  readonly api: FlowApi;
  readonly dnsObserver: DnsFlowObserver;
  readonly proxyObserver: ProxyFlowObserver;
  readonly #o: AgentFlowsOptions;
  readonly #kernel: KernelEvents;
  #reader: NflogReader | null = null;
  /** ip -> the source line last written for it (only changes are written again). */
  readonly #written = new Map<string, string>();
  #offIdentities: (() => void) | null = null;

  constructor(options: AgentFlowsOptions) {
    this.#o = options;
    const s = options.settings;
    this.hub = new FlowHub(new SourceBook(), {
      historyBytes: s.historyBytes,
      maxFollowers: s.maxFollowers,
      now: options.now,
    });
    this.stats = new FlowStats(options.now);
    this.history = new AddressHistory(s.nameMemory);
    this.metrics = new FlowMetrics(options.registry);
    this.api = new FlowApi({
      hub: this.hub,
      stats: this.stats,
      governed: () => this.#governed(),
      files: options.files,
      now: options.now,
      ...(options.propose ? { propose: options.propose } : {}),
    });
    this.#kernel = new KernelEvents({
      identity: (ip) => {
        const identity = options.identities.lookup(ip);
        if (!identity) return undefined;
        return { identity, info: sourceInfo(identity), siblings: options.identities.siblings?.(ip) ?? [ip] };
      },
      history: this.history,
      addressClass: classifyAddress,
      policies: options.policies,
      now: options.now,
    });
    const hub = this.hub;
    const stats = this.stats;
    const history = this.history;
    const metrics = this.metrics;
    this.dnsObserver = {
      sink: hub,
      record: (r) => {
        const verdict = DNS_VERDICTS[r.verdict] ?? 'error';
        stats.count('dns', verdict, r.src, r.qname);
        if (r.policy !== null) metrics.countPolicy(r.policy, verdict);
        if (r.qname !== null && r.ips.length > 0 && (verdict === 'allow' || verdict === 'audit')) {
          const now = options.now();
          history.learn(r.src, r.qname, r.ips, now, now + options.timeoutMs(r.ttl ?? 0), r.learned !== false);
        }
      },
    };
    this.proxyObserver = {
      sink: hub,
      decision: (r) => {
        stats.count('proxy', r.verdict, r.src, r.name);
        if (r.policy !== null) metrics.countPolicy(r.policy, r.verdict);
      },
    };
    this.metrics.watch({
      followers: () => hub.followers,
      lostLines: () => hub.lostLines,
      historyBytes: () => hub.historyBytes,
      nflogLost: () => this.#reader?.stats.lost ?? 0,
    });
  }

  /** Governed workloads (identities, not addresses: a dual-stack pod counts once). */
  #governed(): number {
    const set = this.#o.policies();
    const governed = new Set<string>();
    for (const [, identity] of this.#o.identities.entries())
      if (set.selection(identity).mode !== null) governed.add(identity.key);
    return governed.size;
  }

  /** Write source lines for every known identity now and whenever identities change. */
  followIdentities(): void {
    const write = () => {
      const time = new Date(this.#o.now()).toISOString();
      for (const [prefix, identity] of this.#o.identities.entries()) {
        // Source groups hold prefixes; a host prefix is just the address.
        const ip = prefix.replace(/\/(32|128)$/, '');
        const info = sourceInfo(identity);
        const key = JSON.stringify(info);
        if (this.#written.get(ip) === key) continue;
        this.#written.set(ip, key);
        this.hub.sources.set(ip, info);
        const line = sourceLine(time, ip, info);
        this.hub.write(line);
        this.#o.file?.write(line);
      }
    };
    write();
    this.#offIdentities = this.#o.identities.onChange(write);
  }

  /** Open the NFLOG reader (kernel events); a failure is logged, the agent goes on without them. */
  async startKernelEvents(): Promise<void> {
    const k = this.#o.settings.kernelEvents;
    if (k === null) return;
    try {
      const reader = await openNflog({
        group: k.group,
        method: k.method,
        ...(this.#o.netns !== undefined ? { netns: this.#o.netns } : {}),
        onPackets: (packets) => {
          for (const p of packets) {
            const e = this.#kernel.event(p);
            if (e !== null) this.kernelEvent(e);
          }
        },
      });
      this.#reader = reader;
      this.#o.log.info(
        { [F.event]: 'flows', method: reader.method, group: k.group, fallback: reader.fallbackReason },
        'reading kernel drops from NFLOG',
      );
    } catch (err) {
      this.#o.log.warn(
        { [F.event]: 'flows', [F.code]: 'NG_FLOW_EVENTS_UNAVAILABLE', [F.error]: errorMessage(err) },
        'kernel drops are counted but not shown as flow events',
      );
    }
  }

  /** One kernel event: to the file, the hub, the statistics and the counters. */
  kernelEvent(e: FlowEvent): void {
    const line = eventLine(e);
    this.#o.file?.write(line);
    this.hub.write(line);
    this.stats.count('kernel', e.verdict, e.src, e.name, e.count);
    this.metrics.kernelEvents.inc({ verdict: e.verdict, reason: e.reason });
    if (e.policy !== null) this.metrics.countPolicy(e.policy, e.verdict);
  }

  async stop(): Promise<void> {
    this.#offIdentities?.();
    await this.#reader?.close();
    this.#reader = null;
    this.hub.close();
  }
}
