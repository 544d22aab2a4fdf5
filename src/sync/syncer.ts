/**
 * `namegate sync` put together: the policies give the names (names.ts), the resolver loop keeps
 * them resolved into the union window (loop.ts), and every change of the window or of the
 * policies leads to one write pass over the targets, coalesced (`writeDelayMs`) and one at a
 * time. Each target plans purely (netpol-plan, nft-plan, aws-plan, gcp-plan) and writes by
 * difference; a target that fails is logged, counted and reported in the status, and retried on
 * the next pass, while the others go on. A periodic pass catches drift.
 */

import type { Clock } from '../core/clock.ts';
import { errorMessage } from '../core/errors.ts';
import type { Datapath } from '../datapath/datapath.ts';
import type { NameResolution } from '../dns/resolve.ts';
import type { IdentityProvider } from '../identity/identity.ts';
import { F } from '../observe/fields.ts';
import type { Logger } from '../observe/log.ts';
import type { CompiledPolicies } from '../policy/compile.ts';
import type { Policy } from '../policy/model.ts';
import type { PlannedGroup } from './aws-plan.ts';
import { writeAws, writeGcp } from './cloud-writer.ts';
import { jsonText, writeIfChanged } from './files.ts';
import { groupGrants, groupsOf } from './grants.ts';
import type { NameState } from './loop.ts';
import { ResolverLoop } from './loop.ts';
import type { SyncMetrics, TargetName } from './metrics.ts';
import { planNames, type UnresolvablePattern, WILDCARD_ADVICE } from './names.ts';
import { type OwnerRef, type PolicyReport, planNetworkPolicies } from './netpol-plan.ts';
import type { NetworkPolicyWriter } from './netpol-writer.ts';
import { planNftState } from './nft-plan.ts';
import type { AwsSettings, GcpSettings, NetworkPolicySettings, SyncSettings } from './settings.ts';

export interface PolicyFeed {
  current(): CompiledPolicies;
  onChange(listener: (set: CompiledPolicies) => void): () => void;
}

export interface SyncTargets {
  readonly networkPolicy?: {
    readonly writer: Pick<NetworkPolicyWriter, 'write' | 'namespaces' | 'writeConditions'>;
    readonly settings: NetworkPolicySettings;
    /** The API object a policy came from (ownerReferences); absent for policies from files. */
    readonly ownerOf?: (policy: Policy) => OwnerRef | null;
  };
  readonly nftables?: {
    readonly datapath: Pick<Datapath, 'reconcile'> & {
      /** What the last reconcile changed (NftDatapath has it): tells `ok` from `unchanged`. */
      readonly lastReconcile?: { readonly elementChanges: readonly unknown[] } | null;
    };
  };
  readonly aws?: AwsSettings;
  readonly gcp?: GcpSettings;
}

export interface SyncDeps {
  readonly settings: SyncSettings;
  readonly policies: PolicyFeed;
  /** Source groups (gateway and cloud targets). */
  readonly groups: Pick<IdentityProvider, 'entries'>;
  readonly resolve: (name: string) => Promise<NameResolution>;
  readonly targets: SyncTargets;
  readonly clock: Clock;
  readonly log: Logger;
  readonly metrics?: SyncMetrics;
  readonly random?: () => number;
  /** How often a pass runs without a change (drift, retries); default 60 s. */
  readonly periodicMs?: number;
}

export interface TargetStatus {
  readonly ok: boolean;
  /** ISO time of the last pass that finished without error. */
  readonly lastSuccess: string | null;
  readonly error: string | null;
  readonly detail: unknown;
}

export interface SyncStatus {
  readonly time: string;
  readonly names: readonly NameState[];
  readonly wildcards: ReadonlyArray<UnresolvablePattern & { readonly advice: string }>;
  readonly targets: Partial<Record<TargetName, TargetStatus>>;
}

export class Syncer {
  readonly loop: ResolverLoop;
  readonly #d: SyncDeps;
  #wildcards: readonly UnresolvablePattern[] = [];
  #targets: Partial<Record<TargetName, TargetStatus>> = {};
  #pass: Promise<void> | null = null;
  #again = false;
  #timer: NodeJS.Timeout | null = null;
  #periodic: NodeJS.Timeout | null = null;
  #offPolicies: (() => void) | null = null;
  #stopped = false;

  constructor(deps: SyncDeps) {
    this.#d = deps;
    this.loop = new ResolverLoop({
      settings: deps.settings,
      resolve: deps.resolve,
      clock: deps.clock,
      log: deps.log,
      metrics: deps.metrics,
      ...(deps.random ? { random: deps.random } : {}),
      onChange: () => this.#schedule(),
      // The status file must show failures too: a pass writes it (targets are unchanged).
      onHealth: () => this.#schedule(),
    });
    this.#takePolicies(deps.policies.current());
  }

  /** Follow DNS and policy changes until stop(). */
  start(): void {
    this.#offPolicies = this.#d.policies.onChange((set) => {
      this.#takePolicies(set);
      this.#schedule();
    });
    this.loop.start();
    this.#periodic = setInterval(() => this.#schedule(), this.#d.periodicMs ?? 60_000);
    this.#periodic.unref();
  }

  /** Resolve every name once and write every target once (`namegate sync --once`). */
  async once(): Promise<SyncStatus> {
    await this.loop.resolveAll();
    await this.pass();
    return this.status();
  }

  /** One write pass now (waits for a pass already running, then runs another). */
  pass(): Promise<void> {
    if (this.#pass) {
      this.#again = true;
      return this.#pass;
    }
    this.#pass = this.#run().finally(() => {
      this.#pass = null;
      if (this.#again && !this.#stopped) {
        this.#again = false;
        void this.pass();
      }
    });
    return this.#pass;
  }

  status(): SyncStatus {
    return {
      time: new Date(this.#d.clock.wallNow()).toISOString(),
      names: this.loop.states(),
      wildcards: this.#wildcards.map((w) => ({ ...w, advice: WILDCARD_ADVICE })),
      targets: this.#targets,
    };
  }

  /** True once every configured target has been written at least once. */
  ready(): boolean {
    const t = this.#d.targets;
    const want: TargetName[] = [];
    if (t.networkPolicy) want.push('networkpolicy');
    if (t.nftables) want.push('nftables');
    if (t.aws) want.push('aws');
    if (t.gcp) want.push('gcp');
    return want.every((n) => this.#targets[n]?.lastSuccess != null);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.loop.stop();
    this.#offPolicies?.();
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#periodic) clearInterval(this.#periodic);
    await this.#pass;
  }

  #takePolicies(set: CompiledPolicies): void {
    const plan = planNames(set.policies);
    const before = this.#wildcards.map((w) => w.pattern).join();
    this.#wildcards = plan.wildcards;
    this.#d.metrics?.unresolvablePatterns.set(plan.wildcards.length);
    if (plan.wildcards.length > 0 && plan.wildcards.map((w) => w.pattern).join() !== before) {
      for (const w of plan.wildcards)
        this.#d.log.warn(
          {
            [F.event]: 'sync',
            [F.reason]: 'wildcard_unresolvable',
            pattern: w.pattern,
            [F.policy]: w.policies,
          },
          WILDCARD_ADVICE,
        );
    }
    this.loop.setNames(plan.names);
  }

  #schedule(): void {
    if (this.#stopped || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.pass();
    }, this.#d.settings.writeDelayMs);
    this.#timer.unref?.();
  }

  async #run(): Promise<void> {
    const set = this.#d.policies.current();
    const addressesOf = (name: string) => this.loop.addresses(name);
    const t = this.#d.targets;
    const entries = [...this.#d.groups.entries()];
    const planned = new Map<string, PlannedGroup>();
    for (const g of groupsOf(entries)) {
      planned.set(g.name, { name: g.name, cidrs: g.cidrs, view: groupGrants(set, g.identity, addressesOf) });
    }
    if (t.networkPolicy) {
      const np = t.networkPolicy;
      await this.#target('networkpolicy', async () => {
        const needNamespaces = set.policies.some((p) => p.namespace === null && p.mode === 'Enforce');
        const plan = planNetworkPolicies({
          policies: set.policies,
          addressesOf,
          settings: np.settings,
          ownerOf: np.ownerOf ?? (() => null),
          namespaces: needNamespaces ? await np.writer.namespaces() : [],
        });
        this.#d.metrics?.splitPolicies.set(plan.reports.filter((r) => r.condition.reason === 'Split').length);
        const r = await np.writer.write(plan.objects);
        const conditions = await np.writer.writeConditions(plan.reports);
        return {
          changed: r.applied + r.deleted + conditions > 0,
          detail: { ...r, policies: plan.reports satisfies readonly PolicyReport[] },
        };
      });
    }
    if (t.nftables) {
      const dp = t.nftables.datapath;
      await this.#target('nftables', async () => {
        const state = planNftState(set, entries, addressesOf);
        await dp.reconcile(state);
        const changes = dp.lastReconcile?.elementChanges.length;
        return {
          changed: changes === undefined || changes > 0,
          detail: { sources: state.sources.length, allows: state.cidrs.length },
        };
      });
    }
    if (t.aws) {
      const aws = t.aws;
      await this.#target('aws', async () => {
        const r = await writeAws(aws, planned);
        return { changed: r.changed > 0, detail: r };
      });
    }
    if (t.gcp) {
      const gcp = t.gcp;
      await this.#target('gcp', async () => {
        const r = await writeGcp(gcp, planned);
        return { changed: r.changed > 0, detail: r };
      });
    }
    const file = this.#d.settings.statusFile;
    if (file) {
      try {
        await writeIfChanged(file, jsonText(this.status()));
      } catch (err) {
        this.#d.log.error(
          { [F.event]: 'sync', [F.reason]: 'status_write_failed', [F.error]: errorMessage(err) },
          'writing the status file failed',
        );
      }
    }
  }

  async #target(name: TargetName, run: () => Promise<{ changed: boolean; detail: unknown }>): Promise<void> {
    const started = this.#d.clock.now();
    const prior = this.#targets[name];
    try {
      const r = await run();
      this.#d.metrics?.writes.inc({ target: name, result: r.changed ? 'ok' : 'unchanged' });
      this.#d.metrics?.lastWrite.set({ target: name }, this.#d.clock.wallNow() / 1000);
      this.#targets[name] = {
        ok: true,
        lastSuccess: new Date(this.#d.clock.wallNow()).toISOString(),
        error: null,
        detail: r.detail,
      };
      if (prior && !prior.ok)
        this.#d.log.info(
          { [F.event]: 'sync', [F.reason]: 'target_recovered', target: name },
          'target written again',
        );
    } catch (err) {
      this.#d.metrics?.writes.inc({ target: name, result: 'error' });
      const message = errorMessage(err);
      this.#targets[name] = {
        ok: false,
        lastSuccess: prior?.lastSuccess ?? null,
        error: message,
        detail: prior?.detail ?? null,
      };
      this.#d.log.error(
        { [F.event]: 'sync', [F.reason]: 'target_write_failed', target: name, [F.error]: message },
        'writing a target failed; it keeps what it had and is retried on the next pass',
      );
    } finally {
      this.#d.metrics?.writeSeconds.observe({ target: name }, (this.#d.clock.now() - started) / 1000);
    }
  }
}
