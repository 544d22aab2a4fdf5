/**
 * The DNS proxy assembled from the agent config: store (restored from its checkpoint before
 * the first query), upstream client, pipeline, sockets, and the timers that collect expired
 * entries and write checkpoints. `namegate dns` and the agent both build it here; tests and
 * the benchmark too.
 *
 * Startup order matters: the checkpoint is read and its entries are handed to the datapath
 * before any socket is open, so the first query already sees what survived the restart. A
 * restored entry whose source is no longer governed, or whose name no policy allows any more,
 * is dropped. A checkpoint that cannot be read or committed leaves the store empty.
 */
import type { Registry } from 'prom-client';
import { parseHostPort } from '../config/load.ts';
import type { AgentConfig } from '../config/schema.ts';
import { type Clock, systemClock } from '../core/clock.ts';
import { errorMessage } from '../core/errors.ts';
import type { Datapath } from '../datapath/datapath.ts';
import { desiredLearned } from '../enforce/elements.ts';
import type { IdentityProvider } from '../identity/identity.ts';
import { F } from '../observe/fields.ts';
import type { Logger } from '../observe/log.ts';
import {
  type CheckpointLimits,
  readCheckpoint,
  restoreEntries,
  writeCheckpoint,
} from '../store/checkpoint.ts';
import { type InUse, LearnedStore } from '../store/learned-store.ts';
import { createStoreMetrics, type StoreMetrics } from '../store/metrics.ts';
import { CommitBatcher } from './commit.ts';
import { FlowLog, type LineSink } from './flow-log.ts';
import { PendingLimiter, RateLimiter } from './limits.ts';
import { createDnsMetrics, type DnsMetrics } from './metrics.ts';
import { Pipeline, type PipelineSettings, type PolicyProvider } from './pipeline.ts';
import { RandomIds } from './random.ts';
import { unknownScopeFrom } from './route.ts';
import { DnsServer, type ListenAddress } from './server.ts';
import { UpstreamClient, type UpstreamObserver, type UpstreamServer } from './upstream.ts';
import { Rcode, RrType } from './wire.ts';

export interface DnsProxyDeps {
  readonly config: AgentConfig;
  readonly policies: PolicyProvider;
  readonly identities: IdentityProvider;
  readonly datapath: Datapath;
  readonly registry: Registry;
  /** Operational log (startup, errors). */
  readonly log: Logger;
  /** Where flow lines go; null for none (config flowLog.mode still applies). */
  readonly flowLog: LineSink | null;
  /** Lines are handed to flowLog in chunks of this many bytes (0: one write per line). */
  readonly flowLogBufferBytes?: number;
  readonly clock?: Clock;
  readonly inUse?: InUse;
  /** Share the UDP port with other workers (SO_REUSEPORT). */
  readonly reusePort?: boolean;
  /** Use this store instead of building one (workers sharing a store in-process). */
  readonly store?: LearnedStore;
}

/** The store's expired entries are collected a slice per tick (see #startTimers). */
const GC_TICK_MS = 100;
/** A slice visits at least this many entries (a few hundred microseconds of work). */
const GC_SLICE_MIN = 2048;

/** Flow lines are written in chunks of about this size (or every 100 ms). */
const FLOW_LOG_BUFFER_BYTES = 32 * 1024;

export function settingsFrom(config: AgentConfig): PipelineSettings {
  const dns = config.dns;
  return {
    passThroughZones: dns.passThroughZones,
    denyRcode: dns.denyResponse === 'NXDOMAIN' ? Rcode.NXDOMAIN : Rcode.REFUSED,
    unknownSources: dns.unknownSources,
    ...unknownScopeFrom(config.datapath.sourceCIDRs),
    maxCnameDepth: dns.limits.maxCnameDepth,
    maxAnswerRecords: dns.limits.maxAnswerRecords,
    maxQueryBytes: dns.limits.maxQueryBytes,
    refusedTypes: new Set(dns.refusedTypes.map((t) => RrType[t])),
    holdTimeoutMs: dns.holdTimeoutMs,
  };
}

function addressOf(text: string): ListenAddress {
  const hp = parseHostPort(text);
  if (typeof hp === 'string') throw new Error(hp);
  return hp;
}

export function storeFrom(config: AgentConfig, events: StoreMetrics['events'], inUse?: InUse): LearnedStore {
  return new LearnedStore({
    ttl: {
      minTtlSeconds: config.ttl.minTTL,
      maxTtlSeconds: config.ttl.maxTTL,
      graceSeconds: config.ttl.grace,
    },
    limits: {
      maxIpsPerName: config.store.maxIpsPerName,
      maxIpsPerSource: config.store.maxIpsPerSource,
      maxEntries: config.store.maxEntries,
    },
    ...(inUse ? { inUse } : {}),
    events,
  });
}

/** An upstream client for the trusted upstreams of the config (the DNS proxy's, the CONNECT proxy's). */
export function upstreamFrom(config: AgentConfig, clock: Clock, observe?: UpstreamObserver): UpstreamClient {
  return new UpstreamClient({
    servers: config.dns.upstreams.map((u) => addressOf(u) as UpstreamServer),
    timeoutMs: config.dns.timeoutMs,
    attempts: config.dns.attempts,
    socketsPerServer: config.dns.upstreamSockets,
    queriesPerSocket: config.dns.queriesPerSocket,
    tcpFallback: config.dns.tcpFallback,
    ids: new RandomIds(),
    now: () => clock.now(),
    ...(observe ? { observe } : {}),
  });
}

export class DnsProxy {
  readonly store: LearnedStore;
  readonly metrics: DnsMetrics;
  readonly storeMetrics: StoreMetrics;
  readonly #deps: DnsProxyDeps;
  readonly #clock: Clock;
  readonly #server: DnsServer;
  readonly #upstream: UpstreamClient;
  readonly #pending: PendingLimiter;
  readonly #flowLog: FlowLog;
  readonly #timers: NodeJS.Timeout[] = [];
  #checkpointing: Promise<void> | null = null;
  #stopped = false;

  private constructor(deps: DnsProxyDeps) {
    const { config } = deps;
    this.#deps = deps;
    this.#clock = deps.clock ?? systemClock;
    this.metrics = createDnsMetrics(deps.registry);
    this.storeMetrics = createStoreMetrics(deps.registry);
    this.store = deps.store ?? storeFrom(config, this.storeMetrics.events, deps.inUse);
    this.storeMetrics.watch(this.store);
    const clock = this.#clock;
    const metrics = this.metrics;
    this.#upstream = upstreamFrom(config, clock, {
      answered: (transport, ms) => metrics.observeUpstream(transport, ms / 1000),
      failed: (kind) => metrics.upstreamErrors.inc({ kind }),
    });
    this.#pending = new PendingLimiter(config.dns.limits.maxPending, config.dns.limits.maxPendingPerSource);
    const commits = new CommitBatcher(
      deps.datapath,
      () => clock.now(),
      (_ms, _n, ok) => metrics.commitBatches.inc({ result: ok ? 'ok' : 'error' }),
    );
    this.#flowLog = new FlowLog(
      deps.flowLog,
      config.dns.flowLog.mode,
      () => clock.wallNow(),
      deps.flowLogBufferBytes ?? FLOW_LOG_BUFFER_BYTES,
    );
    const pipeline = new Pipeline({
      settings: settingsFrom(config),
      policies: deps.policies,
      identities: deps.identities,
      store: this.store,
      upstream: this.#upstream,
      commits,
      datapath: deps.datapath,
      clock,
      metrics,
      flowLog: this.#flowLog,
      rate: new RateLimiter(config.dns.limits.ratePerSource, config.dns.limits.burstPerSource),
      pending: this.#pending,
      log: deps.log,
    });
    this.#server = new DnsServer(
      pipeline,
      config.dns.listen.map(addressOf),
      { ...config.dns.limits, recvBufferBytes: config.dns.recvBufferBytes },
      metrics,
      deps.log,
      { reusePort: deps.reusePort ?? false },
    );
    metrics.watch({ pending: () => this.#pending.total, tcpConnections: () => this.#server.tcpConnections });
  }

  /** Restore the checkpoint, commit it, then open the sockets and start the timers. */
  static async start(deps: DnsProxyDeps): Promise<DnsProxy> {
    const proxy = new DnsProxy(deps);
    if (!deps.store) await proxy.#restore();
    await proxy.#server.start();
    proxy.#startTimers();
    return proxy;
  }

  addresses(): ListenAddress[] {
    return this.#server.addresses();
  }

  #checkpointLimits(): CheckpointLimits | null {
    const c = this.#deps.config.store.checkpoint;
    return c ? { maxBytes: c.maxBytes, maxEntries: this.#deps.config.store.maxEntries } : null;
  }

  async #restore(): Promise<void> {
    const { config, log, datapath, policies, identities } = this.#deps;
    const file = config.store.checkpoint?.path;
    const limits = this.#checkpointLimits();
    if (!file || !limits) return;
    const read = await readCheckpoint(file, this.#clock, this.store, limits);
    if (!read.ok) {
      if (read.missing) log.info({ file }, 'no checkpoint yet; starting with an empty store');
      else
        log.error({ file, [F.code]: read.error.code, [F.error]: read.error.message }, 'checkpoint ignored');
      return;
    }
    const now = this.#clock.now();
    const taken = restoreEntries(this.store, read.entries, now);
    // Hand what survived to the datapath, with the ports today's policies grant; entries they
    // no longer justify (source ungoverned, name or address no longer allowed) are dropped.
    const { elements: desired, stale } = desiredLearned(this.store, policies.current(), identities, now);
    for (const e of stale) this.store.forget(e.source, e.name, e.ip);
    const elements = [...desired.values()];
    try {
      for (let i = 0; i < elements.length; i += 10_000) await datapath.learn(elements.slice(i, i + 10_000));
    } catch (err) {
      log.error({ [F.error]: errorMessage(err) }, 'restored entries could not be committed; starting empty');
      for (const e of [...this.store.entries()]) this.store.forget(e.source, e.name, e.ip);
      return;
    }
    this.storeMetrics.restored.set(this.store.size);
    log.info(
      { file, read: read.entries.length, restored: taken, kept: this.store.size },
      'checkpoint restored',
    );
  }

  #startTimers(): void {
    const { config } = this.#deps;
    // Expired entries are collected in slices (gcStep), never in one sweep: a pass over a large
    // store would block every query behind it. A pass starts every gcIntervalSeconds and goes on
    // a slice per tick until done; a slice is sized so a pass takes at most about the interval.
    const intervalMs = config.store.gcIntervalSeconds * 1000;
    let passStarted = Number.NEGATIVE_INFINITY;
    let inPass = false;
    const gc = setInterval(
      () => {
        const now = this.#clock.now();
        if (!inPass) {
          if (now - passStarted < intervalMs) return;
          inPass = true;
          passStarted = now;
        }
        const budget = Math.max(GC_SLICE_MIN, Math.ceil((this.store.size * GC_TICK_MS) / intervalMs));
        if (this.store.gcStep(now, budget).done) inPass = false;
      },
      Math.min(GC_TICK_MS, intervalMs),
    );
    gc.unref();
    this.#timers.push(gc);
    const c = config.store.checkpoint;
    if (c) {
      const t = setInterval(() => {
        this.checkpoint().catch(() => {});
      }, c.intervalSeconds * 1000);
      t.unref();
      this.#timers.push(t);
    }
  }

  /** Write the checkpoint now (one write at a time); errors are logged and counted. */
  async checkpoint(): Promise<void> {
    const file = this.#deps.config.store.checkpoint?.path;
    const limits = this.#checkpointLimits();
    if (!file || !limits) return;
    if (this.#checkpointing) return this.#checkpointing;
    this.#checkpointing = (async () => {
      try {
        const { entries, bytes } = await writeCheckpoint(file, this.store, this.#clock, limits);
        this.storeMetrics.checkpointWrites.inc({ result: 'ok' });
        this.#deps.log.debug({ file, entries, bytes }, 'checkpoint written');
      } catch (err) {
        this.storeMetrics.checkpointWrites.inc({ result: 'error' });
        this.#deps.log.error({ file, [F.error]: errorMessage(err) }, 'checkpoint not written');
      } finally {
        this.#checkpointing = null;
      }
    })();
    return this.#checkpointing;
  }

  /** Close the sockets, stop the timers and write a last checkpoint. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const t of this.#timers) clearInterval(t);
    await this.#server.close();
    this.#upstream.close();
    this.#flowLog.flush();
    if (this.#checkpointing) await this.#checkpointing;
    await this.checkpoint();
  }
}
