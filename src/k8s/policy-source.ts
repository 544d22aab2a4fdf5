/**
 * Policies from the Kubernetes API: EgressPolicy and ClusterEgressPolicy, plus the foreign kinds
 * the config enables (each read only while its CRD is installed; a missing CRD is an empty,
 * synced resource). Every object is validated on its own, foreign ones through their importer
 * (src/formats): an invalid object is excluded whole and reported (log line, metric, and the
 * controller's status condition), and never disturbs the valid ones. A burst of events costs one
 * compile: changes are coalesced to the next turn of the event loop.
 *
 * Implements the agent's PolicySource (current, onChange).
 */

import type { ImportContext } from '../formats/importer.ts';
import { type Problem, validateNative } from '../formats/native.ts';
import {
  DIALECT_RESOURCES,
  type Dialect,
  findImporter,
  IMPORTERS,
  type RegisteredImporter,
} from '../formats/registry.ts';
import type { Logger } from '../observe/log.ts';
import { CompiledPolicies } from '../policy/compile.ts';
import type { Policy } from '../policy/model.ts';
import type { KubeApi, KubeObject, ResourceType } from './api.ts';
import { CLUSTER_EGRESS_POLICY, EGRESS_POLICY } from './crd.ts';
import type { K8sMetrics } from './metrics.ts';
import { Reflector, type ReflectorEvent } from './reflector.ts';
import type { KubernetesSettings } from './settings.ts';

/** What the source keeps of a policy object. */
export interface PolicyObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: {
    readonly name: string;
    readonly namespace?: string;
    readonly uid?: string;
    readonly generation?: number;
    readonly labels?: Record<string, string>;
    readonly annotations?: Record<string, string>;
  };
  readonly spec: unknown;
}

/** The verdict on one object. */
export interface Evaluated {
  /** "Kind namespace/name" or "Kind name". */
  readonly object: string;
  readonly dialect: Dialect;
  readonly kind: string;
  readonly namespace: string | null;
  readonly name: string;
  readonly generation: number | undefined;
  /** The object's apiVersion and uid (what an ownerReference names). */
  readonly apiVersion: string;
  readonly uid: string | undefined;
  readonly policies: readonly Policy[];
  readonly errors: readonly Problem[];
  readonly warnings: readonly Problem[];
}

export function policyObject(resource: ResourceType): (raw: KubeObject) => PolicyObject {
  const apiVersion = resource.group === '' ? resource.version : `${resource.group}/${resource.version}`;
  return (raw) => {
    const m = raw.metadata ?? {};
    return {
      apiVersion: raw.apiVersion ?? apiVersion,
      kind: raw.kind ?? resource.kind,
      metadata: {
        name: m.name ?? '',
        ...(m.namespace ? { namespace: m.namespace } : {}),
        ...(m.uid ? { uid: m.uid } : {}),
        ...(m.generation !== undefined ? { generation: m.generation } : {}),
        ...(m.labels ? { labels: m.labels } : {}),
        ...(m.annotations ? { annotations: m.annotations } : {}),
      },
      spec: raw['spec'],
    };
  };
}

export interface EvaluateOptions {
  /** Istio ServiceEntries are an allow list only in REGISTRY_ONLY mode; otherwise Audit. */
  readonly istioRegistryOnly: boolean;
}

/** Validate one object (converting foreign ones); pure. */
export function evaluatePolicyObject(obj: PolicyObject, options: EvaluateOptions): Evaluated {
  const namespace = obj.metadata.namespace ?? null;
  const base = {
    object: `${obj.kind} ${namespace ? `${namespace}/` : ''}${obj.metadata.name}`,
    kind: obj.kind,
    namespace,
    name: obj.metadata.name,
    generation: obj.metadata.generation,
    apiVersion: obj.apiVersion,
    uid: obj.metadata.uid,
  };
  const context: ImportContext = { defaultNamespace: namespace ?? 'default' };
  const doc = obj as unknown as Record<string, unknown>;
  if (obj.kind === 'EgressPolicy' || obj.kind === 'ClusterEgressPolicy') {
    const r = validateNative(doc, context.defaultNamespace);
    return {
      ...base,
      dialect: 'native',
      policies: r.policy ? [r.policy] : [],
      errors: r.errors,
      warnings: r.warnings,
    };
  }
  const importer = findImporter(obj.apiVersion, obj.kind);
  if (!importer) {
    return {
      ...base,
      dialect: 'native',
      policies: [],
      errors: [{ path: 'kind', message: 'no importer reads this kind' }],
      warnings: [],
    };
  }
  const dialect = importer.dialect;
  let imported: ReturnType<typeof importer.convert>;
  try {
    imported = importer.convert(doc, context);
  } catch (err) {
    const message = `could not convert: ${err instanceof Error ? err.message : String(err)}`;
    return { ...base, dialect, policies: [], errors: [{ path: '', message }], warnings: [] };
  }
  const errors: Problem[] = [...imported.errors];
  const warnings: Problem[] = [...imported.warnings];
  const policies: Policy[] = [];
  for (const native of imported.documents) {
    const r = validateNative(native, context.defaultNamespace);
    const prefix = `(as ${native.kind} ${native.metadata.name}) `;
    errors.push(...r.errors.map((p) => ({ path: p.path, message: prefix + p.message })));
    warnings.push(...r.warnings.map((p) => ({ path: p.path, message: prefix + p.message })));
    if (r.policy) {
      policies.push(
        dialect === 'istio' && !options.istioRegistryOnly ? { ...r.policy, mode: 'Audit' } : r.policy,
      );
    }
  }
  // All or nothing per object: a half-converted policy would be a policy nobody wrote.
  return { ...base, dialect, policies: errors.length > 0 ? [] : policies, errors, warnings };
}

/**
 * The importers' checks over all objects of their dialect that are valid on their own (keyed like
 * `evaluated`): the problems only the set shows, per object id. Pure.
 */
export function setProblems(
  evaluated: ReadonlyMap<string, Evaluated>,
  objects: ReadonlyMap<string, PolicyObject>,
): Map<string, Problem[]> {
  const errors = new Map<string, Problem[]>();
  for (const importer of IMPORTERS as readonly RegisteredImporter[]) {
    if (!importer.checkSet) continue;
    const ids = [...evaluated]
      .filter(([id, e]) => e.dialect === importer.dialect && e.errors.length === 0 && objects.has(id))
      .map(([id]) => id);
    const docs = ids.map((id) => objects.get(id) as unknown as Record<string, unknown>);
    importer.checkSet(docs).forEach((list, i) => {
      const id = ids[i];
      if (id !== undefined && list.length > 0) errors.set(id, list);
    });
  }
  return errors;
}

export function problemsText(problems: readonly Problem[], limit = 4096): string {
  const text = problems.map((p) => (p.path === '' ? p.message : `${p.path}: ${p.message}`)).join('; ');
  return text.length > limit ? `${text.slice(0, limit - 3)}...` : text;
}

export interface KubePolicySourceOptions {
  readonly api: KubeApi;
  readonly logger: Logger;
  readonly metrics: K8sMetrics;
  readonly config: Pick<KubernetesSettings, 'dialects' | 'istioRegistryOnly'>;
  readonly stallMs?: number;
  readonly watchTimeoutSeconds?: number;
  readonly absentRetryMs?: number;
}

export class KubePolicySource {
  readonly reflectors: readonly Reflector<PolicyObject>[];
  readonly synced: Promise<void>;
  readonly #o: KubePolicySourceOptions;
  readonly #evaluated = new Map<string, Evaluated>();
  /** The objects as read, for the importers' checks over a whole dialect (`checkSet`). */
  readonly #objects = new Map<string, PolicyObject>();
  /** Problems only the set shows, per object id; recomputed by every compile. */
  #setErrors = new Map<string, Problem[]>();
  #current: CompiledPolicies | null = null;
  #listeners: Array<(set: CompiledPolicies) => void> = [];
  #scheduled: NodeJS.Immediate | null = null;
  #allSynced = false;

  constructor(options: KubePolicySourceOptions) {
    this.#o = options;
    const enabled = options.config.dialects;
    const resources: ResourceType[] = [EGRESS_POLICY, CLUSTER_EGRESS_POLICY];
    for (const r of DIALECT_RESOURCES) if (enabled[r.dialect]) resources.push(r);
    this.reflectors = resources.map((resource) => {
      const reflector = new Reflector<PolicyObject>({
        api: options.api,
        logger: options.logger,
        metrics: options.metrics,
        resource,
        transform: policyObject(resource),
        ...(options.stallMs !== undefined ? { stallMs: options.stallMs } : {}),
        ...(options.watchTimeoutSeconds !== undefined
          ? { watchTimeoutSeconds: options.watchTimeoutSeconds }
          : {}),
        ...(options.absentRetryMs !== undefined ? { absentRetryMs: options.absentRetryMs } : {}),
      });
      reflector.onChange((events) => this.#onEvents(resource, events));
      return reflector;
    });
    this.synced = Promise.all(this.reflectors.map((r) => r.synced)).then(() => {
      this.#allSynced = true;
      this.#compile();
    });
  }

  start(): void {
    for (const r of this.reflectors) r.start();
  }

  async stop(): Promise<void> {
    if (this.#scheduled) clearImmediate(this.#scheduled);
    await Promise.all(this.reflectors.map((r) => r.stop()));
  }

  notReadyReason(): string | null {
    for (const r of this.reflectors) {
      const why = r.notReadyReason();
      if (why) return why;
    }
    return this.#current ? null : 'policies not compiled yet';
  }

  /** The set in force; throws before the first full sync. */
  current(): CompiledPolicies {
    if (!this.#current) throw new Error('policies from the Kubernetes API are not synced yet');
    return this.#current;
  }

  onChange(listener: (set: CompiledPolicies) => void): () => void {
    this.#listeners.push(listener);
    return () => {
      this.#listeners = this.#listeners.filter((l) => l !== listener);
    };
  }

  /** Every object read, with its verdict (the controller and `namegate status` report from it). */
  evaluated(): IterableIterator<Evaluated> {
    return this.#verdicts().values();
  }

  /** Objects excluded because they are invalid. */
  rejected(): Evaluated[] {
    return [...this.#verdicts().values()].filter((e) => e.errors.length > 0);
  }

  /** Each object's own verdict, with the problems only the set shows added (they exclude it too). */
  #verdicts(): Map<string, Evaluated> {
    if (this.#setErrors.size === 0) return this.#evaluated;
    const out = new Map<string, Evaluated>();
    for (const [id, e] of this.#evaluated) {
      const extra = this.#setErrors.get(id);
      out.set(id, extra ? { ...e, policies: [], errors: [...e.errors, ...extra] } : e);
    }
    return out;
  }

  #onEvents(resource: ResourceType, events: ReflectorEvent<PolicyObject>[]): void {
    if (events.length === 0) return;
    for (const e of events) {
      const id = `${resource.kind}/${e.key}`;
      if (e.type === 'deleted') {
        this.#evaluated.delete(id);
        this.#objects.delete(id);
        continue;
      }
      this.#objects.set(id, e.object);
      const verdict = evaluatePolicyObject(e.object, this.#o.config);
      const previous = this.#evaluated.get(id);
      this.#evaluated.set(id, verdict);
      if (
        verdict.errors.length > 0 &&
        problemsText(verdict.errors) !== problemsText(previous?.errors ?? [])
      ) {
        this.#o.logger.warn(
          {
            event: 'policy',
            reason: 'policy_invalid',
            policy: verdict.object,
            err: problemsText(verdict.errors),
          },
          'policy rejected; the other policies stay in force',
        );
      }
    }
    if (this.#allSynced && !this.#scheduled) {
      this.#scheduled = setImmediate(() => {
        this.#scheduled = null;
        this.#compile();
      });
    }
  }

  #compile(): void {
    const before = this.#setErrors;
    this.#setErrors = setProblems(this.#evaluated, this.#objects);
    for (const [id, problems] of this.#setErrors) {
      if (problemsText(problems) === problemsText(before.get(id) ?? [])) continue;
      this.#o.logger.warn(
        {
          event: 'policy',
          reason: 'policy_invalid',
          policy: this.#evaluated.get(id)?.object,
          err: problemsText(problems),
        },
        'policy rejected; the other policies stay in force',
      );
    }
    const policies: Policy[] = [];
    let rejected = 0;
    for (const e of this.#verdicts().values()) {
      if (e.errors.length > 0) rejected++;
      else policies.push(...e.policies);
    }
    const set = new CompiledPolicies(policies);
    this.#current = set;
    this.#o.metrics.policies.set({ state: 'accepted' }, this.#evaluated.size - rejected);
    this.#o.metrics.policies.set({ state: 'rejected' }, rejected);
    this.#o.logger.info(
      { event: 'policy', reason: 'policy_compiled', policies: set.size, rejected, patterns: set.fqdns.size },
      'policies from the API compiled',
    );
    for (const l of this.#listeners) {
      try {
        l(set);
      } catch (err) {
        this.#o.logger.error(
          {
            event: 'policy',
            reason: 'listener_failed',
            err: err instanceof Error ? err.message : String(err),
          },
          'a policy listener threw',
        );
      }
    }
  }
}
