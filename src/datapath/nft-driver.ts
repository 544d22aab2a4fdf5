/**
 * The nftables Datapath: table `inet <table>` (see nft-ruleset.ts), driven through a batching
 * writer (nft-writer.ts) and an executor (libnftables addon, or `nft -f -`).
 *
 * - reconcile(): one transaction from the kernel's table to the wanted one, by difference
 *   (nft-reconcile.ts); learned elements are never flushed, so a restarted agent leaves
 *   established and learned traffic flowing (REL-01, REL-04).
 * - learn()/forget(): queued, coalesced into transactions; learn() resolves once the kernel
 *   committed its elements and rejects with NG_DATAPATH_COMMIT otherwise (REL-07);
 *   forget() also deletes the conntrack entries of the ports it revoked.
 * - Timeouts are clamped into [minTimeoutMs, maxTimeoutMs] and counted: 0 never reaches nft.
 * - close() stops background work and leaves the kernel state in place.
 */
import { type Clock, systemClock } from '../core/clock.ts';
import { ErrorCode, errorMessage, NamegateError } from '../core/errors.ts';
import { CidrSet, canonicalIp, ipFamily, parseCidr } from '../core/ip.ts';
import { F } from '../observe/fields.ts';
import { type Logger, silentLogger } from '../observe/log.ts';
import { Conntrack, type ConntrackResult } from './conntrack.ts';
import type { AllowElement, Datapath, ElementKey, ForgetResult, StaticState } from './datapath.ts';
import { LearnedModel, type TimedRange } from './learned-model.ts';
import type { DatapathMetrics, DropCount, SourceDrops } from './metrics.ts';
import { type NftConfig, type NftConfigInput, resolveNftConfig } from './nft-config.ts';
import {
  addLearnedCommands,
  internalElements,
  kernelElementText,
  type LearnedRange,
  lifeText,
  PIPAPO_LARGE,
  removeLearnedCommands,
  StaticStateError,
  scopeElements,
  staticElements,
} from './nft-elements.ts';
import { type ExecutorChoice, type NftExecutor, openExecutor } from './nft-executor.ts';
import { parseElement } from './nft-json.ts';
import { commitError, type DatapathStatus, NftTableReader } from './nft-reader.ts';
import { planReconcile, type ReconcilePlan, type SetChange } from './nft-reconcile.ts';
import { FAMILIES, LEARNED_ROLES, setName } from './nft-ruleset.ts';
import { BatchWriter, type WriterItem } from './nft-writer.ts';
import { parseSource } from './source-ranges.ts';

export interface NftDatapathOptions {
  readonly config?: NftConfigInput;
  /** An executor, or which kind to open (default: addon, else spawn). */
  readonly executor?: NftExecutor | ExecutorChoice;
  readonly clock?: Clock;
  readonly logger?: Logger;
  readonly metrics?: DatapathMetrics;
  /** null: do not delete conntrack entries (tests of the nft side only). */
  readonly conntrack?: Conntrack | null;
  /** Queue bound in elements; past it learn/forget reject with NG_LIMIT_EXCEEDED. */
  readonly maxQueuedElements?: number;
  /** Elements per transaction at most (a single call is never split). */
  readonly maxBatchElements?: number;
  /** Delete UDP/TCP 53 conntrack entries of sources that become governed (K8S-05). */
  readonly flushDnsOnGovern?: boolean;
  /** How often expired entries leave the in-memory model. */
  readonly pruneIntervalMs?: number;
  /** When an idle writer starts a transaction (see WriterOptions.start); default `immediate`. */
  readonly writerStart?: 'now' | 'immediate';
  /**
   * Addon executor: run write transactions on the event-loop thread when the addon has
   * `runSync` (default true; see AddonExecutorOptions). Ignored for a given executor.
   */
  readonly syncWrites?: boolean;
}

type Op =
  | { readonly kind: 'learn'; readonly items: readonly TimedRange[]; readonly weight: number }
  | {
      readonly kind: 'forget';
      readonly ranges: readonly LearnedRange[];
      readonly weight: number;
      after?: Promise<ConntrackResult>;
    };

/** What a reconcile changed. */
export interface ReconcileSummary {
  readonly createdTable: boolean;
  readonly recreatedSets: readonly string[];
  readonly rebuiltSets: readonly string[];
  readonly removedUnknown: readonly string[];
  readonly elementChanges: readonly SetChange[];
  /** Prefixes that became governed (their DNS conntrack entries were flushed). */
  readonly newlyGoverned: readonly string[];
}

/** Moved to nft-reader.ts with the code that fills them; re-exported for callers. */
export type { DatapathStatus, SetStatus } from './nft-reader.ts';

/** Range (pipapo) removals per transaction at most; see #commit. */
export const RANGE_REMOVALS_PER_TXN = 128;
const SET_FULL = /Too many open files|No space left/;

export class NftDatapath implements Datapath {
  readonly config: NftConfig;
  readonly #exec: NftExecutor;
  readonly #reader: NftTableReader;
  readonly #ownsExecutor: boolean;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #metrics: DatapathMetrics | undefined;
  readonly #conntrack: Conntrack | null;
  readonly #flushDnsOnGovern: boolean;
  /** config.internalCidrs: revoking a grant there ends no flow (the internal rule allows it). */
  readonly #internal: CidrSet;
  readonly #model = new LearnedModel();
  readonly #writer: BatchWriter<Op & WriterItem>;
  #modelLoaded = false;
  #lastReconcile: ReconcileSummary | null = null;
  #pruneTimer: NodeJS.Timeout | null = null;
  #closed = false;

  private constructor(exec: NftExecutor, owns: boolean, options: NftDatapathOptions) {
    this.config = resolveNftConfig(options.config);
    this.#exec = exec;
    this.#reader = new NftTableReader(exec, this.config);
    this.#ownsExecutor = owns;
    this.#clock = options.clock ?? systemClock;
    this.#log = options.logger ?? silentLogger();
    this.#metrics = options.metrics;
    this.#conntrack = options.conntrack === undefined ? new Conntrack() : options.conntrack;
    this.#flushDnsOnGovern = options.flushDnsOnGovern ?? true;
    this.#internal = new CidrSet(
      this.config.internalCidrs.flatMap((t) => {
        const c = parseCidr(t);
        return typeof c === 'string' ? [] : [c];
      }),
    );
    const m = this.#metrics;
    this.#writer = new BatchWriter<Op & WriterItem>({
      maxQueued: options.maxQueuedElements ?? 100_000,
      maxBatch: options.maxBatchElements ?? 1_000,
      commit: (ops) => this.#commit(ops),
      shouldSplit: (err) => !SET_FULL.test(errorMessage(err)),
      onQueueChange: (n) => m?.queueElements.set(n),
      onReject: () => m?.queueRejections.inc(),
      start: options.writerStart ?? 'immediate',
    });
    if (m) {
      m.executor.set({ kind: exec.kind }, 1);
      m.readDrops = () => this.readDropCounters();
      m.readSourceDrops = () => this.readSourceDrops();
    }
    const every = options.pruneIntervalMs ?? 30_000;
    this.#pruneTimer = setInterval(() => {
      this.#model.prune(this.#clock.now());
      m?.elements.set({ set: 'allow' }, this.#model.size);
    }, every);
    this.#pruneTimer.unref();
  }

  /** A driver with its executor; it does not touch the kernel until the first call. */
  static async open(options: NftDatapathOptions = {}): Promise<NftDatapath> {
    const e = options.executor;
    if (e !== undefined && typeof e !== 'string') return new NftDatapath(e, false, options);
    const exec = await openExecutor(e ?? 'auto', options.logger, { syncWrites: options.syncWrites ?? true });
    return new NftDatapath(exec, true, options);
  }

  get executorKind(): 'addon' | 'spawn' {
    return this.#exec.kind;
  }

  // ---- reconcile -------------------------------------------------------------------------

  /** What the last successful reconcile changed (nothing, for a repeat with the same state). */
  get lastReconcile(): ReconcileSummary | null {
    return this.#lastReconcile;
  }

  async reconcile(state: StaticState): Promise<void> {
    let wanted: ReturnType<typeof staticElements>;
    try {
      wanted = staticElements(state);
      // The internal sets come from the config; the same diff applies them, so a changed list
      // adds and removes elements and never recreates a set.
      for (const [name, els] of internalElements(this.config.internalCidrs)) wanted.set(name, els);
      for (const [name, els] of scopeElements(this.config.sourceCidrs)) wanted.set(name, els);
    } catch (err) {
      if (err instanceof StaticStateError) {
        this.#metrics?.reconciles.inc({ result: 'invalid' });
        throw new NamegateError(ErrorCode.DatapathCommit, `reconcile: ${err.message}`);
      }
      throw err;
    }
    const started = this.#clock.now();
    let plan: ReconcilePlan;
    try {
      plan = await this.#writer.exclusive(() => this.#reconcileNow(wanted));
    } catch (err) {
      this.#metrics?.reconciles.inc({ result: 'error' });
      this.#log.error(
        { [F.event]: 'datapath', [F.reason]: 'reconcile-failed', [F.error]: errorMessage(err) },
        'reconcile failed',
      );
      throw err;
    }
    this.#metrics?.reconciles.inc({ result: 'ok' });
    this.#lastReconcile = {
      createdTable: plan.createdTable,
      recreatedSets: plan.recreatedSets,
      rebuiltSets: plan.rebuiltSets,
      removedUnknown: plan.removedUnknown,
      elementChanges: plan.elementChanges,
      newlyGoverned: plan.newlyGoverned,
    };
    this.#log.info(
      {
        [F.event]: 'datapath',
        [F.reason]: 'reconciled',
        [F.durationMs]: Math.round((this.#clock.now() - started) * 100) / 100,
        createdTable: plan.createdTable,
        recreatedSets: plan.recreatedSets,
        rebuiltSets: plan.rebuiltSets,
        removedUnknown: plan.removedUnknown,
        changes: plan.elementChanges,
        newlyGoverned: plan.newlyGoverned.length,
      },
      'datapath reconciled',
    );
    for (const [name, els] of wanted) {
      if ((name.startsWith('cidr') || name.startsWith('verify')) && els.size > PIPAPO_LARGE)
        this.#log.warn(
          { [F.event]: 'datapath', [F.reason]: 'large-interval-set', set: name, elements: els.size },
          'a concatenated interval set is large: every change to it costs kernel time in proportion',
        );
    }
    if (this.#flushDnsOnGovern && this.#conntrack && plan.newlyGoverned.length > 0) {
      await this.flushDnsConntrack(plan.newlyGoverned);
    }
  }

  async #reconcileNow(wanted: ReturnType<typeof staticElements>): Promise<ReconcilePlan> {
    const kernel = await this.#reader.readTable();
    const present = new Map<string, Set<string>>();
    if (kernel) {
      for (const name of wanted.keys()) {
        const k = kernel.sets.get(name);
        if (!k) continue;
        const full = await this.#reader.listSet(name);
        if (!full) continue;
        present.set(name, new Set(full.elements.map((e) => kernelElementText(parseElement(full.type, e)))));
      }
    }
    const plan = planReconcile(this.config, kernel, present, wanted);
    const started = this.#clock.now();
    const r = await this.#exec.run(plan.commands.join('\n'));
    this.#metrics?.transactionSeconds.observe(
      { executor: this.#exec.kind },
      (this.#clock.now() - started) / 1000,
    );
    if (!r.ok) throw commitError('reconcile transaction', r.err);
    for (const f of FAMILIES) {
      const gone = LEARNED_ROLES.map((r) => setName(r, f)).filter((n) => plan.recreatedSets.includes(n));
      if (gone.length > 0) {
        this.#model.clearFamily(f);
        this.#log.warn(
          { [F.event]: 'datapath', [F.reason]: 'learned-set-recreated', sets: gone },
          'a learned set definition changed: it was recreated and its elements are gone',
        );
      }
    }
    if (!this.#modelLoaded) await this.#loadModel();
    for (const [name, els] of wanted) this.#metrics?.elements.set({ set: name }, els.size);
    return plan;
  }

  // ---- learned elements ------------------------------------------------------------------

  /** Read what the kernel's learned sets hold into the model (after a restart). */
  async #loadModel(): Promise<void> {
    const elements = await this.#reader.readLearned();
    const now = this.#clock.now();
    this.#model.clear();
    // nft prints whole seconds (rounded down): the model then re-sends an element a little
    // early rather than believe it lives longer than it does.
    this.#model.load(
      elements.filter((e) => e.remainingMs !== null).map((e) => ({ ...e, remainingMs: e.remainingMs ?? 0 })),
      now,
    );
    // An element without a timeout would never expire: remove it (fail closed).
    const eternal = elements.filter((e) => e.remainingMs === null);
    if (eternal.length > 0) {
      const r = await this.#exec.run(
        removeLearnedCommands(
          this.config.table,
          eternal.map((e) => ({ kind: e.kind, e })),
        ).join('\n'),
      );
      this.#log.warn(
        { [F.event]: 'datapath', [F.reason]: 'eternal-elements-removed', count: eternal.length, ok: r.ok },
        'learned elements without a timeout were removed',
      );
    }
    this.#modelLoaded = true;
    this.#metrics?.elements.set({ set: 'allow' }, this.#model.size);
  }

  #validate(e: ElementKey): LearnedRange {
    const source = canonicalIp(e.source);
    const destination = canonicalIp(e.destination);
    if (source === null || destination === null)
      throw new NamegateError(
        ErrorCode.DatapathCommit,
        `element ${e.source} -> ${e.destination}: not IP addresses`,
      );
    if (ipFamily(source) !== ipFamily(destination))
      throw new NamegateError(
        ErrorCode.DatapathCommit,
        `element ${source} -> ${destination}: families differ`,
      );
    if (e.protocol !== 'TCP' && e.protocol !== 'UDP')
      throw new NamegateError(
        ErrorCode.DatapathCommit,
        `element ${source} -> ${destination}: protocol ${e.protocol}`,
      );
    const ok = (p: number) => Number.isInteger(p) && p >= 0 && p <= 65535;
    if (!ok(e.portFrom) || !ok(e.portTo) || e.portFrom > e.portTo)
      throw new NamegateError(
        ErrorCode.DatapathCommit,
        `element ${source} -> ${destination}: ports ${e.portFrom}-${e.portTo} are not a range in 0..65535`,
      );
    return { source, destination, protocol: e.protocol, from: e.portFrom, to: e.portTo };
  }

  #clamp(ms: number): number {
    const { minTimeoutMs, maxTimeoutMs } = this.config;
    if (!(ms >= minTimeoutMs)) {
      this.#metrics?.timeoutsClamped.inc({ reason: 'below_min' });
      return minTimeoutMs;
    }
    if (ms > maxTimeoutMs) {
      this.#metrics?.timeoutsClamped.inc({ reason: 'above_max' });
      return maxTimeoutMs;
    }
    return Math.ceil(ms);
  }

  async learn(elements: readonly AllowElement[]): Promise<void> {
    if (elements.length === 0) return;
    const started = this.#clock.now();
    let items: TimedRange[];
    try {
      items = elements.map((e) => ({ e: this.#validate(e), timeoutMs: this.#clamp(e.timeoutMs) }));
    } catch (err) {
      this.#metrics?.commitErrors.inc({ op: 'learn' });
      throw err;
    }
    try {
      await this.#writer.submit({ kind: 'learn', items, weight: items.length });
    } catch (err) {
      if (!(err instanceof NamegateError && err.code === ErrorCode.LimitExceeded))
        this.#metrics?.commitErrors.inc({ op: 'learn' });
      throw err;
    }
    this.#metrics?.commitSeconds.observe({ op: 'learn' }, (this.#clock.now() - started) / 1000);
  }

  async forget(elements: readonly ElementKey[]): Promise<ForgetResult> {
    if (elements.length === 0) return { flows: 0 };
    const started = this.#clock.now();
    let ranges: LearnedRange[];
    try {
      ranges = elements.map((e) => this.#validate(e));
    } catch (err) {
      this.#metrics?.commitErrors.inc({ op: 'forget' });
      throw err;
    }
    const op: Op & WriterItem = { kind: 'forget', ranges, weight: ranges.length };
    try {
      await this.#writer.submit(op);
    } catch (err) {
      if (!(err instanceof NamegateError && err.code === ErrorCode.LimitExceeded))
        this.#metrics?.commitErrors.inc({ op: 'forget' });
      throw err;
    }
    this.#metrics?.commitSeconds.observe({ op: 'forget' }, (this.#clock.now() - started) / 1000);
    // The flows of what this call revoked end before it resolves: a caller that reports a
    // revocation done (the enforcer) then means elements and flows both.
    const ct = op.kind === 'forget' && op.after ? await op.after : null;
    if (ct && ct.errors.length > 0) {
      throw new NamegateError(
        ErrorCode.CommandFailed,
        `elements removed, but ending their flows failed: ${ct.errors.slice(0, 3).join('; ')}`,
      );
    }
    return { flows: ct?.deleted ?? 0 };
  }

  async #commit(ops: readonly Op[]): Promise<void> {
    if (!this.#modelLoaded) await this.#loadModel();
    const now = this.#clock.now();
    const txn = this.#model.begin(now);
    for (const op of ops) {
      if (op.kind === 'learn') for (const it of op.items) txn.learn(it.e, it.timeoutMs);
      else for (const r of op.ranges) txn.forget(r);
    }
    const changes = txn.changes();
    // Removing an element from the pipapo set (allowrange) costs O(set size) in the kernel
    // commit; many in one transaction have frozen the machine (docs/datapath.md, "Interval sets and the kernel"). Past
    // RANGE_REMOVALS_PER_TXN, the extra range removals go first, in transactions of their own
    // (each is add-then-delete, so a retry or a partial run is harmless). If one fails, the
    // model is rolled back and may believe a few removed elements present: they stay missing
    // until their grants expire or are learned again (fail closed).
    const ranges = changes.removes.filter((r) => r.kind === 'range');
    const others = changes.removes.filter((r) => r.kind !== 'range');
    for (let i = RANGE_REMOVALS_PER_TXN; i < ranges.length; i += RANGE_REMOVALS_PER_TXN) {
      const chunk = ranges.slice(i, i + RANGE_REMOVALS_PER_TXN);
      const r = await this.#exec.run(removeLearnedCommands(this.config.table, chunk).join('\n'));
      if (!r.ok) {
        txn.rollback();
        throw commitError('nft transaction (range removals)', r.err);
      }
    }
    const cmds = [
      ...removeLearnedCommands(this.config.table, [...others, ...ranges.slice(0, RANGE_REMOVALS_PER_TXN)]),
      ...addLearnedCommands(this.config.table, changes.adds),
    ];
    this.#metrics?.batchElements.observe(ops.reduce((n, o) => n + o.weight, 0));
    if (cmds.length > 0) {
      const started = this.#clock.now();
      const r = await this.#exec.run(cmds.join('\n'));
      this.#metrics?.transactionSeconds.observe(
        { executor: this.#exec.kind },
        (this.#clock.now() - started) / 1000,
      );
      if (!r.ok) {
        txn.rollback();
        this.#log.warn(
          {
            [F.event]: 'datapath',
            [F.reason]: 'commit-failed',
            [F.error]: r.err,
            elements: changes.adds.length,
          },
          'learned elements were not committed',
        );
        throw commitError('nft transaction', r.err);
      }
    }
    txn.commit();
    this.#metrics?.elements.set({ set: 'allow' }, this.#model.size);
    // A revoked grant to an internal destination ends nothing: the internal rule still allows
    // new connections there, and in-cluster flows are left to NetworkPolicy.
    const revoked = changes.revoked.filter((r) => !this.#internal.has(r.destination));
    if (revoked.length > 0) {
      // Before conntrack forgets the flows: see revokedRules in nft-ruleset.ts.
      await this.#markRevoked(revoked);
      const ct = this.#conntrack;
      const after = ct ? this.#endFlows(ct, revoked) : Promise.resolve({ deleted: 0, errors: [] });
      for (const op of ops) if (op.kind === 'forget') op.after = after;
    }
  }

  /**
   * Put revoked UDP (source, peer) pairs into the `revoked` sets. Its own transaction, after the
   * elements are gone: a full revoked set must not fail the forget itself. Best effort (logged);
   * until conntrack deletes the flow nothing can revive it anyway.
   */
  async #markRevoked(revoked: readonly LearnedRange[]): Promise<void> {
    if (this.config.revokeWindowMs <= 0) return;
    const bySet = new Map<string, Set<string>>();
    for (const r of revoked) {
      if (r.protocol !== 'UDP') continue;
      const set = setName('revoked', ipFamily(r.source));
      const list = bySet.get(set) ?? new Set<string>();
      list.add(`${r.source} . ${r.destination} . udp ${lifeText(this.config.revokeWindowMs)}`);
      bySet.set(set, list);
    }
    if (bySet.size === 0) return;
    const cmds = [...bySet].map(
      ([set, items]) => `add element inet ${this.config.table} ${set} { ${[...items].join(', ')} }`,
    );
    const r = await this.#exec.run(cmds.join('\n'));
    if (!r.ok)
      this.#log.warn(
        { [F.event]: 'datapath', [F.reason]: 'revoked-mark-failed', [F.error]: r.err },
        'revoked UDP pairs were not marked; a peer may revive a revoked flow by sending first',
      );
  }

  async #endFlows(ct: Conntrack, revoked: readonly LearnedRange[]): Promise<ConntrackResult> {
    const r = await ct.deleteFlows(revoked);
    this.#metrics?.conntrackDeleted.inc({ reason: 'revoked' }, r.deleted);
    if (r.errors.length > 0) this.#metrics?.conntrackErrors.inc(r.errors.length);
    this.#log.info(
      {
        [F.event]: 'datapath',
        [F.reason]: 'flows-ended',
        ranges: revoked.length,
        deleted: r.deleted,
        errors: r.errors.slice(0, 3),
      },
      'conntrack entries of revoked elements deleted',
    );
    return r;
  }

  /**
   * K8S-05: delete UDP/TCP 53 conntrack entries of these sources (addresses or CIDRs) so their
   * DNS hits the redirect.
   */
  async flushDnsConntrack(sources: readonly string[]): Promise<ConntrackResult> {
    if (!this.#conntrack) return { deleted: 0, errors: [] };
    const prefixes: string[] = [];
    const errors: string[] = [];
    for (const s of sources) {
      const p = parseSource(s);
      if (typeof p === 'string') errors.push(`flush DNS conntrack of ${JSON.stringify(s)}: ${p}`);
      else prefixes.push(p.text);
    }
    const flushed = await this.#conntrack.flushDns(prefixes);
    const r = { deleted: flushed.deleted, errors: [...errors, ...flushed.errors] };
    this.#metrics?.conntrackDeleted.inc({ reason: 'dns-governed' }, r.deleted);
    if (r.errors.length > 0) {
      this.#metrics?.conntrackErrors.inc(r.errors.length);
      this.#log.warn(
        { [F.event]: 'datapath', [F.reason]: 'dns-conntrack-flush-failed', [F.error]: r.errors.slice(0, 3) },
        'flush failed',
      );
    }
    return r;
  }

  /**
   * The grants learned and not expired, as learn() received them (after a restart, the
   * elements read back from the kernel). Read from the in-memory model, which mirrors every
   * committed transaction, so callers can diff against it cheaply.
   */
  async listLearned(): Promise<AllowElement[]> {
    if (!this.#modelLoaded) await this.#loadModel();
    return this.#model.grants(this.#clock.now()).map((g) => ({
      source: g.source,
      destination: g.destination,
      protocol: g.protocol,
      portFrom: g.from,
      portTo: g.to,
      timeoutMs: g.remainingMs,
    }));
  }

  // ---- counters and status: read from the kernel (nft-reader.ts) ----------------------------

  /** Drop counts per owned range (see NftTableReader.readDropCounters). */
  readDropCounters(): Promise<DropCount[]> {
    return this.#reader.readDropCounters();
  }

  /** The unknown, spoofed and DNS flood counters (see NftTableReader.readSourceDrops). */
  readSourceDrops(): Promise<SourceDrops> {
    return this.#reader.readSourceDrops();
  }

  async status(): Promise<DatapathStatus> {
    return { ...(await this.#reader.status()), executor: this.#exec.kind };
  }

  /** Wait until every queued call has been committed (tests, shutdown). */
  idle(): Promise<void> {
    return this.#writer.idle();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#pruneTimer) clearInterval(this.#pruneTimer);
    await this.#writer.close();
    if (this.#ownsExecutor) await this.#exec.close();
  }
}
