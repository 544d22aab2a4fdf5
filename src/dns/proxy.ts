/**
 * The DNS proxy assembled from its settings (src/dns/settings.ts): store (restored from its
 * checkpoint before the first query), upstream client, pipeline, sockets, and the timers that
 * collect expired entries and write checkpoints. The agent builds it here (`namegate dns` is the
 * agent with the datapath off); tests and the benchmark too.
 *
 * Startup order matters: the checkpoint is read and its entries are handed to the datapath
 * before any socket is open, so the first query already sees what survived the restart. A
 * restored entry whose source is no longer governed, or whose name no policy allows any more,
 * is dropped, and so are the kernel elements today's identities and policies no longer justify
 * (src/enforce/restore.ts), with their flows, before the first socket opens. A checkpoint that
 * cannot be read or committed leaves the store empty.
 */
import type { Registry } from 'prom-client';
import { type Clock, systemClock } from '../core/clock.ts';
import { ErrorCode, errorMessage, isNamegateError, NamegateError } from '../core/errors.ts';
import type { Datapath, ElementKey } from '../datapath/datapath.ts';
import { desiredLearned } from '../enforce/elements.ts';
import { checkpointPairs, planRestore } from '../enforce/restore.ts';
import type { IdentityProvider } from '../identity/identity.ts';
import { F } from '../observe/fields.ts';
import type { LineSink } from '../observe/line-sink.ts';
import type { Logger } from '../observe/log.ts';
import type { CurrentPolicies } from '../policy/source.ts';
import { readCheckpoint, restoreEntries, writeCheckpoint } from '../store/checkpoint.ts';
import { type InUse, type InUseSource, LearnedStore, type StoreEntry } from '../store/learned-store.ts';
import { createStoreMetrics, type StoreMetrics } from '../store/metrics.ts';
import type { StoreSettings } from '../store/settings.ts';
import { CommitBatcher } from './commit.ts';
import { FlowLog, type FlowLogObserver } from './flow-log.ts';
import { PendingLimiter, RateLimiter } from './limits.ts';
import { createDnsMetrics, type DnsMetrics } from './metrics.ts';
import { Pipeline } from './pipeline.ts';
import { RandomIds } from './random.ts';
import { DnsServer, type ListenAddress } from './server.ts';
import type { DnsSettings, UpstreamSettings } from './settings.ts';
import { UnknownHold } from './unknown-hold.ts';
import { UpstreamClient, type UpstreamObserver } from './upstream.ts';

export interface DnsProxyDeps {
  readonly settings: DnsSettings;
  readonly policies: CurrentPolicies;
  readonly identities: IdentityProvider;
  readonly datapath: Datapath;
  readonly registry: Registry;
  /** Operational log (startup, errors). */
  readonly log: Logger;
  /** Where flow lines go; null for none (settings.flowLog.mode still applies). */
  readonly flowLog: LineSink | null;
  /** Every record and line of the flow log, whatever its mode (the agent's flow hub). */
  readonly flowObserver?: FlowLogObserver | null;
  /** Lines are handed to flowLog in chunks of this many bytes (0: one write per line). */
  readonly flowLogBufferBytes?: number;
  readonly clock?: Clock;
  /** What is in use (never evicted); read ahead before an answer that has to make room. */
  readonly inUse?: InUseSource;
  /** Share the UDP port with other workers (SO_REUSEPORT). */
  readonly reusePort?: boolean;
  /** Use this store instead of building one (workers sharing a store in-process). */
  readonly store?: LearnedStore;
  /**
   * Resolves once the kernel holds the identities known at the call (the agent: a datapath sync
   * started after it): a query held for an unknown source is answered only then (unknown-hold.ts).
   */
  readonly settled?: () => Promise<unknown>;
  /**
   * Runs once the store is restored and before the sockets open: whatever must see every answer
   * (the agent's peer feed, REL-11) subscribes here.
   */
  readonly beforeListen?: (store: LearnedStore) => Promise<void>;
}

/** The store's expired entries are collected a slice per tick (see #startTimers). */
const GC_TICK_MS = 100;
/** A slice visits at least this many entries (a few hundred microseconds of work). */
const GC_SLICE_MIN = 2048;

/** Flow lines are written in chunks of about this size (or every 100 ms). */
const FLOW_LOG_BUFFER_BYTES = 32 * 1024;

/** The learned store of these settings; the DNS proxy's own unless the caller shares one. */
export function storeFrom(
  settings: StoreSettings,
  events: StoreMetrics['events'],
  inUse?: InUse,
): LearnedStore {
  return new LearnedStore({
    ttl: settings.ttl,
    limits: settings.limits,
    ...(inUse ? { inUse } : {}),
    events,
  });
}

/** An upstream client for the trusted upstreams (the DNS proxy's, the CONNECT proxy's). */
export function upstreamFrom(
  settings: UpstreamSettings,
  clock: Clock,
  observe?: UpstreamObserver,
): UpstreamClient {
  return new UpstreamClient({
    ...settings,
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
  readonly #unknownHold: UnknownHold;
  readonly #timers: NodeJS.Timeout[] = [];
  #checkpointing: Promise<void> | null = null;
  #stopped = false;

  private constructor(deps: DnsProxyDeps) {
    const { settings } = deps;
    this.#deps = deps;
    this.#clock = deps.clock ?? systemClock;
    this.metrics = createDnsMetrics(deps.registry);
    this.storeMetrics = createStoreMetrics(deps.registry);
    this.store = deps.store ?? storeFrom(settings.store, this.storeMetrics.events, deps.inUse?.inUse);
    this.storeMetrics.watch(this.store);
    const clock = this.#clock;
    const metrics = this.metrics;
    this.#upstream = upstreamFrom(settings.upstream, clock, {
      answered: (transport, ms) => metrics.observeUpstream(transport, ms / 1000),
      failed: (kind) => metrics.upstreamErrors.inc({ kind }),
    });
    this.#pending = new PendingLimiter(settings.pending.max, settings.pending.maxPerSource);
    const commits = new CommitBatcher(
      deps.datapath,
      () => clock.now(),
      (_ms, _n, ok) => metrics.commitBatches.inc({ result: ok ? 'ok' : 'error' }),
    );
    this.#flowLog = new FlowLog(
      deps.flowLog,
      settings.flowLog.mode,
      () => clock.wallNow(),
      deps.flowLogBufferBytes ?? FLOW_LOG_BUFFER_BYTES,
      deps.flowObserver ?? null,
    );
    this.#unknownHold = new UnknownHold({
      identities: deps.identities,
      settings: settings.unknownHold,
      ...(deps.settled ? { settled: deps.settled } : {}),
    });
    const pipeline = new Pipeline({
      settings: settings.pipeline,
      policies: deps.policies,
      identities: deps.identities,
      store: this.store,
      upstream: this.#upstream,
      commits,
      datapath: deps.datapath,
      clock,
      metrics,
      flowLog: this.#flowLog,
      rate: new RateLimiter(settings.rate.perSource, settings.rate.burst),
      pending: this.#pending,
      log: deps.log,
      unknownHold: this.#unknownHold,
      ...(deps.inUse ? { inUse: deps.inUse } : {}),
    });
    this.#server = new DnsServer(pipeline, settings.listen, settings.server, metrics, deps.log, {
      reusePort: deps.reusePort ?? false,
    });
    metrics.watch({
      pending: () => this.#pending.total,
      tcpConnections: () => this.#server.tcpConnections,
      unknownHeld: () => this.#unknownHold.held,
    });
  }

  /** Restore the checkpoint, commit it, then open the sockets and start the timers. */
  static async start(deps: DnsProxyDeps): Promise<DnsProxy> {
    const proxy = new DnsProxy(deps);
    try {
      if (!deps.store) await proxy.#restore();
      if (deps.beforeListen) await deps.beforeListen(proxy.store);
      await proxy.#server.start();
    } catch (err) {
      // A start that fails (a port taken, a kernel removal refused) leaves nothing open behind:
      // no upstream socket, no held query, no listener. No checkpoint is written: the file on
      // disk is the one the restore read.
      proxy.#stopped = true;
      proxy.#unknownHold.stop();
      proxy.#upstream.close();
      await proxy.#server.close();
      throw err;
    }
    proxy.#startTimers();
    return proxy;
  }

  addresses(): ListenAddress[] {
    return this.#server.addresses();
  }

  async #restore(): Promise<void> {
    const { settings, log, datapath, policies, identities } = this.#deps;
    const checkpoint = settings.store.checkpoint;
    const file = checkpoint?.path ?? null;
    let entries: readonly StoreEntry[] = [];
    if (checkpoint) {
      const read = await readCheckpoint(checkpoint.path, this.#clock, this.store, checkpoint.limits);
      if (read.ok) entries = read.entries;
      else if (read.missing) log.info({ file }, 'no checkpoint yet; starting with an empty store');
      else
        log.error({ file, [F.code]: read.error.code, [F.error]: read.error.message }, 'checkpoint ignored');
    }
    const now = this.#clock.now();
    const taken = restoreEntries(this.store, entries, now);
    // What survived, with the ports today's policies grant; entries they no longer justify
    // (source ungoverned, name or address no longer allowed) are dropped.
    const set = policies.current();
    const { elements: desired, stale } = desiredLearned(this.store, set, identities, now);
    for (const e of stale) this.store.forget(e.source, e.name, e.ip);
    // The kernel kept its elements while the agent was down: what the restored state no longer
    // justifies leaves it, flows included, before any socket opens (src/enforce/restore.ts).
    const actual = await datapath.listLearned();
    const plan = planRestore({
      actual,
      desired,
      checkpointed: checkpointPairs(entries, identities, now),
      policies: set,
      identities,
    });
    await this.#forgetRestored(plan.forget);
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
      {
        file,
        read: entries.length,
        restored: taken,
        kept: this.store.size,
        kernel: plan.counts,
        forgotten: plan.forget.length,
      },
      'checkpoint restored',
    );
  }

  /**
   * Remove what the restore does not justify. Elements that cannot be removed stop the start
   * (no DNS is served while they may still allow traffic); flows that could not be ended are
   * logged and the start goes on (the elements are gone, so no new connection passes).
   */
  async #forgetRestored(keys: readonly ElementKey[]): Promise<void> {
    if (keys.length === 0) return;
    const { datapath, log } = this.#deps;
    try {
      for (let i = 0; i < keys.length; i += 10_000) await datapath.forget(keys.slice(i, i + 10_000));
    } catch (err) {
      if (isNamegateError(err) && err.code === ErrorCode.CommandFailed) {
        log.error(
          { [F.event]: 'dns', [F.reason]: 'restore_flows_not_ended', [F.error]: errorMessage(err) },
          'restore: elements removed, but some of their flows were not ended',
        );
        return;
      }
      throw new NamegateError(
        ErrorCode.DatapathCommit,
        `restore: elements the restored state no longer justifies could not be removed: ${errorMessage(err)}`,
      );
    }
  }

  #startTimers(): void {
    const { store } = this.#deps.settings;
    // Expired entries are collected in slices (gcStep), never in one sweep: a pass over a large
    // store would block every query behind it. A pass starts every gcIntervalSeconds and goes on
    // a slice per tick until done; a slice is sized so a pass takes at most about the interval.
    const intervalMs = store.gcIntervalMs;
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
    if (store.checkpoint) {
      const t = setInterval(() => {
        this.checkpoint().catch(() => {});
      }, store.checkpoint.intervalMs);
      t.unref();
      this.#timers.push(t);
    }
  }

  /** Write the checkpoint now (one write at a time); errors are logged and counted. */
  async checkpoint(): Promise<void> {
    const checkpoint = this.#deps.settings.store.checkpoint;
    if (!checkpoint) return;
    const { path: file, limits } = checkpoint;
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
    this.#unknownHold.stop();
    await this.#server.close();
    this.#upstream.close();
    this.#flowLog.flush();
    if (this.#checkpointing) await this.#checkpointing;
    await this.checkpoint();
  }
}
