/**
 * The resolver loop: keeps every exact name of the policies resolved through the trusted
 * upstream, re-resolving each before its answer expires (schedule.ts), at most `concurrency` at
 * a time, and feeds the answers into the union window (window.ts). Answers in denied ranges
 * (private, loopback, link-local, CGNAT, multicast, IPv4-embedding IPv6) are never learned: the
 * same address-class rule as the DNS proxy. Callers are told when the window changed.
 *
 * The clock and the random source are passed in; `resolve` is the only I/O.
 */

import { addressClass } from '../core/address-class.ts';
import type { Clock } from '../core/clock.ts';
import { errorMessage } from '../core/errors.ts';
import type { NameResolution, TypeOutcome } from '../dns/resolve.ts';
import { F } from '../observe/fields.ts';
import type { Logger } from '../observe/log.ts';
import type { SyncMetrics } from './metrics.ts';
import { failureDelayMs, type RefreshSettings, refreshDelayMs } from './schedule.ts';
import { UnionWindow } from './window.ts';

export interface LoopSettings extends RefreshSettings {
  readonly windowMs: number;
  readonly maxAddressesPerName: number;
  readonly concurrency: number;
}

export interface LoopDeps {
  readonly settings: LoopSettings;
  readonly resolve: (name: string) => Promise<NameResolution>;
  readonly clock: Clock;
  readonly log: Logger;
  readonly metrics?: SyncMetrics | undefined;
  /** [0, 1); Math.random by default. */
  readonly random?: () => number;
  /** The window changed (addresses added or removed). */
  readonly onChange?: () => void;
  /** A name started failing or works again (the status changed, the window did not). */
  readonly onHealth?: () => void;
}

/** What the loop knows of one name, for the status. */
export interface NameState {
  readonly name: string;
  readonly addresses: readonly string[];
  /** Wall-clock ms of the last resolution that answered (null: none yet). */
  readonly lastSuccess: number | null;
  /** Failures in a row (0: the last resolution answered). */
  readonly failures: number;
  readonly lastError: string | null;
  /** Addresses of the latest answer that were not learned (denied ranges). */
  readonly deniedAddresses: readonly string[];
  /** Times the per-name cap pushed addresses out. */
  readonly capHits: number;
}

interface Tracked {
  readonly name: string;
  due: number;
  inFlight: boolean;
  /** In the heap (waiting for its due time). */
  queued: boolean;
  removed: boolean;
  lastSuccess: number | null;
  failures: number;
  lastError: string | null;
  denied: string[];
  capHits: number;
}

export class ResolverLoop {
  readonly window: UnionWindow;
  readonly #d: LoopDeps;
  readonly #random: () => number;
  readonly #names = new Map<string, Tracked>();
  /** Min-heap of names by due time. */
  #heap: Tracked[] = [];
  #inFlight = 0;
  #timer: NodeJS.Timeout | null = null;
  #running = false;
  #idle: Array<() => void> = [];

  constructor(deps: LoopDeps) {
    this.#d = deps;
    this.#random = deps.random ?? Math.random;
    this.window = new UnionWindow({
      windowMs: deps.settings.windowMs,
      maxPerName: deps.settings.maxAddressesPerName,
    });
  }

  /** The names to keep resolved: new ones are due now, names no longer listed are forgotten. */
  setNames(names: readonly string[]): void {
    const wanted = new Set(names);
    let removed = false;
    for (const [name, t] of this.#names) {
      if (wanted.has(name)) continue;
      t.removed = true;
      this.#names.delete(name);
      this.window.forget(name);
      removed = true;
    }
    if (removed) this.#heap = this.#heap.filter((t) => !t.removed);
    heapify(this.#heap);
    const now = this.#d.clock.now();
    for (const name of wanted) {
      if (this.#names.has(name)) continue;
      const t: Tracked = {
        name,
        due: now,
        inFlight: false,
        queued: true,
        removed: false,
        lastSuccess: null,
        failures: 0,
        lastError: null,
        denied: [],
        capHits: 0,
      };
      this.#names.set(name, t);
      push(this.#heap, t);
    }
    this.#d.metrics?.names.set(this.#names.size);
    if (removed) this.#changed();
    this.#pump();
  }

  start(): void {
    this.#running = true;
    this.#pump();
  }

  stop(): void {
    this.#running = false;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  /** Resolve every name once now (with the same bounds), e.g. for `sync --once` and tests. */
  async resolveAll(): Promise<void> {
    const names = [...this.#names.values()];
    let next = 0;
    const worker = async () => {
      while (next < names.length) {
        const t = names[next++] as Tracked;
        if (!t.removed && !t.inFlight) await this.#resolve(t);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#d.settings.concurrency, names.length) }, worker));
  }

  /** Resolves when nothing is in flight (tests). */
  idle(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Remove addresses older than the window; returns how many left. */
  prune(): number {
    const removed = this.window.prune(this.#d.clock.now());
    if (removed.length > 0) {
      this.#d.metrics?.windowRemovals.inc(removed.length);
      this.#d.log.info(
        { [F.event]: 'sync', [F.reason]: 'window_expired', removed: removed.length },
        'addresses not seen for the whole window left the allowlists',
      );
      this.#changed();
    }
    return removed.length;
  }

  states(): NameState[] {
    return [...this.#names.values()]
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((t) => ({
        name: t.name,
        addresses: this.window.addresses(t.name),
        lastSuccess: t.lastSuccess,
        failures: t.failures,
        lastError: t.lastError,
        deniedAddresses: t.denied,
        capHits: t.capHits,
      }));
  }

  addresses(name: string): string[] {
    return this.window.addresses(name);
  }

  #pump(): void {
    if (!this.#running) return;
    const now = this.#d.clock.now();
    while (this.#inFlight < this.#d.settings.concurrency && this.#heap.length > 0) {
      const top = this.#heap[0] as Tracked;
      if (top.due > now) break;
      pop(this.#heap);
      top.queued = false;
      // Resolved by resolveAll meanwhile: its completion queues it again.
      if (top.removed || top.inFlight) continue;
      void this.#resolve(top).then(() => this.#pump());
    }
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const next = this.#heap[0]?.due ?? null;
    const expiry = this.window.nextExpiry();
    const wake = Math.min(next ?? Number.POSITIVE_INFINITY, expiry ?? Number.POSITIVE_INFINITY);
    // With every worker busy, each completion pumps again and re-arms the timer.
    if (Number.isFinite(wake) && this.#inFlight < this.#d.settings.concurrency) {
      this.#timer = setTimeout(
        () => {
          this.#timer = null;
          this.prune();
          this.#pump();
        },
        Math.max(1, Math.ceil(wake - now)),
      );
    }
  }

  async #resolve(t: Tracked): Promise<void> {
    t.inFlight = true;
    this.#inFlight++;
    const started = this.#d.clock.now();
    let outcome: NameResolution;
    try {
      outcome = await this.#d.resolve(t.name);
    } catch (err) {
      const failed: TypeOutcome = { ok: false, reason: 'upstream_failed', detail: errorMessage(err) };
      outcome = { a: failed, aaaa: failed };
    }
    this.#d.metrics?.resolutionSeconds.observe((this.#d.clock.now() - started) / 1000);
    this.#inFlight--;
    t.inFlight = false;
    if (!t.removed) this.#apply(t, outcome);
    if (this.#inFlight === 0) {
      const waiting = this.#idle;
      this.#idle = [];
      for (const w of waiting) w();
    }
  }

  #apply(t: Tracked, r: NameResolution): void {
    const now = this.#d.clock.now();
    const s = this.#d.settings;
    let changed = false;
    let ttl: number | null = null;
    const denied: string[] = [];
    const errors: string[] = [];
    for (const [family, o] of [
      [4, r.a],
      [6, r.aaaa],
    ] as const) {
      this.#d.metrics?.resolutions.inc({ result: o.ok ? 'ok' : 'failed', family: String(family) });
      if (!o.ok) {
        errors.push(`${family === 4 ? 'A' : 'AAAA'}: ${o.reason}: ${o.detail}`);
        continue;
      }
      const learnable: string[] = [];
      for (const a of o.addresses) {
        // The DNS proxy's rule: a name never opens private or special ranges (toCIDRs does).
        if (addressClass(a.ip) !== 'public') {
          denied.push(a.ip);
          continue;
        }
        learnable.push(a.ip);
        ttl = ttl === null ? a.ttl : Math.min(ttl, a.ttl);
      }
      const seen = this.window.observe(t.name, family, learnable, now);
      if (seen.added.length > 0 || seen.evicted.length > 0) changed = true;
      if (seen.capped) {
        t.capHits++;
        this.#d.metrics?.capEvictions.inc();
        this.#d.log.warn(
          {
            [F.event]: 'sync',
            [F.reason]: 'name_cap',
            [F.name]: t.name,
            cap: s.maxAddressesPerName,
            evicted: seen.evicted.length,
          },
          'a name reached sync.maxAddressesPerName; the least recently seen addresses left',
        );
      }
    }
    if (denied.length > 0 && denied.join() !== t.denied.join()) {
      this.#d.log.warn(
        { [F.event]: 'sync', [F.reason]: 'denied_range', [F.name]: t.name, [F.learned]: denied },
        'answer addresses in denied ranges were not learned (use toCIDRs for private destinations)',
      );
    }
    t.denied = denied;
    const wasFailing = t.failures > 0;
    if (errors.length === 2) {
      t.failures++;
      t.lastError = errors.join('; ');
      t.due = now + failureDelayMs(t.failures, s, this.#random());
      this.#d.log.warn(
        {
          [F.event]: 'sync',
          [F.reason]: 'resolve_failed',
          [F.name]: t.name,
          failures: t.failures,
          [F.error]: t.lastError,
          kept: this.window.addresses(t.name).length,
        },
        'resolution failed; the last good addresses stay until the window passes',
      );
    } else {
      if (t.failures > 0)
        this.#d.log.info(
          { [F.event]: 'sync', [F.reason]: 'resolve_recovered', [F.name]: t.name, failures: t.failures },
          'resolution works again',
        );
      t.failures = 0;
      // One family failing is reported but does not stop the other's answer from counting.
      t.lastError = errors.length > 0 ? errors.join('; ') : null;
      t.lastSuccess = this.#d.clock.wallNow();
      t.due = now + refreshDelayMs(ttl, s, this.#random());
    }
    if (t.queued) heapify(this.#heap);
    else {
      t.queued = true;
      push(this.#heap, t);
    }
    this.#updateGauges();
    if (changed) this.#changed();
    else if (wasFailing !== t.failures > 0) this.#d.onHealth?.();
  }

  #updateGauges(): void {
    const m = this.#d.metrics;
    if (!m) return;
    let failing = 0;
    let v4 = 0;
    let v6 = 0;
    for (const t of this.#names.values()) {
      if (t.failures > 0) failing++;
      for (const ip of this.window.sightings(t.name).keys()) {
        if (ip.includes(':')) v6++;
        else v4++;
      }
    }
    m.failingNames.set(failing);
    m.addresses.set({ family: '4' }, v4);
    m.addresses.set({ family: '6' }, v6);
  }

  #changed(): void {
    this.#d.onChange?.();
  }
}

// A binary min-heap on `due`; small and local, so the loop's cost per resolution is O(log n).
function less(a: Tracked, b: Tracked): boolean {
  return a.due < b.due;
}

function push(h: Tracked[], t: Tracked): void {
  h.push(t);
  let i = h.length - 1;
  while (i > 0) {
    const p = (i - 1) >> 1;
    if (!less(h[i] as Tracked, h[p] as Tracked)) break;
    [h[i], h[p]] = [h[p] as Tracked, h[i] as Tracked];
    i = p;
  }
}

function pop(h: Tracked[]): Tracked | undefined {
  const top = h[0];
  const last = h.pop();
  if (h.length > 0 && last) {
    h[0] = last;
    down(h, 0);
  }
  return top;
}

function down(h: Tracked[], i: number): void {
  for (;;) {
    const l = 2 * i + 1;
    const r = l + 1;
    let m = i;
    if (l < h.length && less(h[l] as Tracked, h[m] as Tracked)) m = l;
    if (r < h.length && less(h[r] as Tracked, h[m] as Tracked)) m = r;
    if (m === i) return;
    [h[i], h[m]] = [h[m] as Tracked, h[i] as Tracked];
    i = m;
  }
}

function heapify(h: Tracked[]): void {
  for (let i = (h.length >> 1) - 1; i >= 0; i--) down(h, i);
}
