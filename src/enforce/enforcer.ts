/**
 * Keeps the kernel in step with policy and identity. DNS answers add elements on their own
 * (the DNS proxy learns and commits them); the enforcer handles everything else:
 *
 *   static state   governed sources, toCIDRs allows, verify ports -> Datapath.reconcile
 *   learned state  elements the store justifies under today's policies; what the kernel holds
 *                  beyond that is forgotten (and its flows ended), what it lacks is learned
 *
 * Syncs run one at a time; a change during a sync schedules one more, and a sync whose view went
 * stale meanwhile forgets nothing. Forgetting is limited to what this agent's own store explains
 * (entries whose policy, rule or identity went away) and to sources that are not governed any
 * more: an element of a governed source that the store never held was learned by another agent
 * sharing the table (a rolling update) or before a restart without a checkpoint, and is left to
 * expire on its own instead of cutting flows that were fine.
 */

import type { Counter, Gauge, Histogram } from 'prom-client';
import type { Clock } from '../core/clock.ts';
import { errorMessage } from '../core/errors.ts';
import { type AllowElement, type Datapath, type ElementKey, elementKey } from '../datapath/datapath.ts';
import { sourceCovers } from '../datapath/source-ranges.ts';
import { elementSources, type IdentityProvider } from '../identity/identity.ts';
import { F } from '../observe/fields.ts';
import type { Logger } from '../observe/log.ts';
import type { CompiledPolicies } from '../policy/compile.ts';
import type { CurrentPolicies } from '../policy/source.ts';
import type { LearnedStore } from '../store/learned-store.ts';
import { desiredLearned } from './elements.ts';
import { staticState } from './static-state.ts';

/** The sync metrics the enforcer reports (namegate_agent_* in src/agent/metrics.ts). */
export interface EnforcerMetrics {
  readonly syncs: Counter<'result'>;
  readonly syncSeconds: Histogram;
  readonly governedSources: Gauge;
  /** Revocations done (elements and their flows gone) or failed, by result (ok, error). */
  readonly revocations: Counter<'result'>;
}

/** A revocation's log line names at most this many sources. */
const LOGGED_SOURCES = 16;

export interface EnforcerDeps {
  readonly datapath: Datapath;
  readonly store: () => LearnedStore | null;
  readonly identities: IdentityProvider;
  readonly policies: CurrentPolicies;
  readonly clock: Clock;
  readonly log: Logger;
  readonly metrics: EnforcerMetrics;
}

export interface SyncResult {
  readonly sources: number;
  readonly learned: number;
  readonly forgotten: number;
  readonly stale: number;
}

export class Enforcer {
  readonly #d: EnforcerDeps;
  #running: Promise<SyncResult> | null = null;
  #again: string | null = null;
  /** syncAfter callers waiting for the next sync to start. */
  #after: Array<() => void> = [];
  #synced = 0;
  /** Bumped by every sync request: a sync that sees it move knows its view is outdated. */
  #changes = 0;

  constructor(deps: EnforcerDeps) {
    this.#d = deps;
  }

  /** Syncs completed so far (readiness waits for the first). */
  get syncs(): number {
    return this.#synced;
  }

  /** Bring the kernel in step; concurrent calls share the running sync plus one follow-up. */
  sync(reason: string): Promise<SyncResult> {
    this.#changes++;
    if (this.#running) {
      this.#again = reason;
      return this.#running;
    }
    // The callers of syncAfter that were waiting for a sync to start: this one is theirs.
    const after = this.#after;
    this.#after = [];
    this.#running = this.#syncOnce(reason).finally(() => {
      this.#running = null;
      for (const done of after) done();
      const next = this.#again;
      if (next !== null) {
        this.#again = null;
        this.sync(next).catch(() => {});
      }
    });
    return this.#running;
  }

  /**
   * Resolves when a sync that starts after this call has ended (ok or not): the kernel then
   * holds the identities and policies known now. Requests that sync (a running one gets its
   * follow-up). Never rejects.
   */
  syncAfter(reason: string): Promise<void> {
    return new Promise((resolve) => {
      this.#after.push(resolve);
      this.sync(reason).catch(() => {});
    });
  }

  /** A source's IP left (pod deleted, group removed): drop what it learned before reuse. */
  async removeSources(ips: readonly string[]): Promise<void> {
    // Called as the identity changes (with no address for a relabel): a sync running now judges
    // with a view that just went stale, so it must forget nothing (its follow-up does).
    this.#changes++;
    if (ips.length === 0) return;
    const store = this.#d.store();
    // An entry may be a prefix (a static group): everything learned inside it goes.
    const covered = (ip: string) => ips.some((gone) => sourceCovers(gone, ip));
    for (const e of [...(store?.entries() ?? [])])
      if (covered(e.source)) store?.forget(e.source, e.name, e.ip);
    const learned = await this.#d.datapath.listLearned();
    const keys: ElementKey[] = learned.filter((e) => covered(e.source)).map(withoutTimeout);
    await this.#revoke(keys, 'sources_removed');
    this.#d.log.info(
      { [F.event]: 'enforce', [F.reason]: 'sources_removed', sources: ips.length, forgotten: keys.length },
      'removed sources and their learned elements',
    );
  }

  /**
   * One revocation step: the elements leave the kernel, then their flows end (conntrack), and
   * only then is it counted and logged as done (`revoked`, with the sources it concerned), so
   * whoever waits for it knows that neither new nor established traffic passes any more. A
   * failure to end flows is `revocation_failed` and rejects.
   */
  async #revoke(keys: readonly ElementKey[], trigger: string): Promise<void> {
    if (keys.length === 0) return;
    const { datapath, clock, log, metrics } = this.#d;
    const started = clock.now();
    const sources = [...new Set(keys.map((k) => k.source))];
    const fields = {
      [F.event]: 'enforce',
      trigger,
      elements: keys.length,
      sources: sources.slice(0, LOGGED_SOURCES),
      moreSources: Math.max(0, sources.length - LOGGED_SOURCES),
    };
    try {
      const r = await datapath.forget(keys);
      metrics.revocations.inc({ result: 'ok' });
      log.info(
        { ...fields, [F.reason]: 'revoked', flows: r.flows, ms: Math.round(clock.now() - started) },
        'revoked: the elements and their flows are gone',
      );
    } catch (err) {
      metrics.revocations.inc({ result: 'error' });
      log.error(
        { ...fields, [F.reason]: 'revocation_failed', [F.error]: errorMessage(err) },
        'revocation incomplete: elements or flows may remain',
      );
      throw err;
    }
  }

  #done(
    reason: string,
    started: number,
    sources: number,
    learned: number,
    forgotten: number,
    stale: number,
  ): SyncResult {
    const { clock, log, metrics } = this.#d;
    this.#synced++;
    const result = { sources, learned, forgotten, stale };
    metrics.syncs.inc({ result: 'ok' });
    metrics.syncSeconds.observe((clock.now() - started) / 1000);
    metrics.governedSources.set(sources);
    log.info(
      { [F.event]: 'enforce', [F.reason]: reason, ...result, ms: Math.round(clock.now() - started) },
      'kernel in step',
    );
    return result;
  }

  async #syncOnce(reason: string): Promise<SyncResult> {
    const { datapath, identities, policies, clock, log, metrics } = this.#d;
    const started = clock.now();
    const generation = this.#changes;
    let set: CompiledPolicies;
    try {
      set = policies.current();
    } catch {
      return { sources: 0, learned: 0, forgotten: 0, stale: 0 };
    }
    try {
      const entries = [...identities.entries()];
      const state = staticState(set, entries);
      // The datapath deletes stale DNS conntrack entries of newly governed sources itself
      // (K8S-05), in merged ranges, as part of the reconcile.
      await datapath.reconcile(state);
      const governed = new Set(state.sources.map((s) => s.ip));

      // What the kernel holds first, then what the store justifies, with no await between the
      // store read and the comparison: the DNS proxy writes the store before it commits, so
      // every element the kernel reports is already explained by the store we read.
      const actual = await datapath.listLearned();
      if (this.#changes !== generation) {
        // Policy or identity changed while this sync ran; judging learned state by the old view
        // would forget what the proxy just learned under the new one. The follow-up sync does it.
        return this.#done(reason, started, governed.size, 0, 0, 0);
      }
      const store = this.#d.store();
      const now = clock.now();
      const desired = store
        ? desiredLearned(store, set, identities, now)
        : { elements: new Map(), stale: [] };
      // The (source, destination) pairs this agent's store explains, stale entries included:
      // an element outside them was learned by another agent sharing the table (a rolling
      // update) or before a restart that had no checkpoint, and is left to expire on its own.
      const ours = new Set<string>();
      for (const e of store?.entries() ?? []) {
        // An expired entry (not yet collected) explains nothing: another agent sharing the
        // table may have refreshed the element since, for its own, unexpired answer.
        if (e.expiresAt <= now) continue;
        for (const source of elementSources(identities, e.source, e.ip)) ours.add(`${source}|${e.ip}`);
      }
      for (const e of desired.stale) store?.forget(e.source, e.name, e.ip);

      const actualKeys = new Set(actual.map(elementKey));
      const forget: ElementKey[] = [];
      for (const e of actual) {
        if (desired.elements.has(elementKey(e))) continue;
        // Forget what the store no longer justifies, and everything of a source that is not
        // governed (any more); keep unexplained elements of governed sources.
        if (isGoverned(set, identities, e.source) && !ours.has(`${e.source}|${e.destination}`)) continue;
        forget.push(withoutTimeout(e));
      }
      const learn: AllowElement[] = [...desired.elements.values()].filter(
        (e) => !actualKeys.has(elementKey(e)),
      );
      await this.#revoke(forget, reason);
      if (learn.length > 0) await datapath.learn(learn);
      return this.#done(reason, started, governed.size, learn.length, forget.length, desired.stale.length);
    } catch (err) {
      metrics.syncs.inc({ result: 'error' });
      log.error(
        { [F.event]: 'enforce', [F.reason]: reason, [F.error]: errorMessage(err) },
        'sync with the kernel failed',
      );
      throw err;
    }
  }
}

/** Is this source address governed now (its identity selected by some policy)? */
function isGoverned(set: CompiledPolicies, identities: IdentityProvider, ip: string): boolean {
  const identity = identities.lookup(ip);
  return identity !== undefined && set.selection(identity).mode !== null;
}

function withoutTimeout(e: AllowElement): ElementKey {
  return {
    source: e.source,
    destination: e.destination,
    protocol: e.protocol,
    portFrom: e.portFrom,
    portTo: e.portTo,
  };
}
