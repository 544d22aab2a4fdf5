/**
 * Cilium endpoint selectors -> native pod and namespace selectors: Cilium's source prefixes
 * (k8s:, any:) and its special keys (the pod's namespace, namespace labels, policy labels).
 */
import type { LabelSelector, LabelSelectorRequirement } from '../policy/selector.ts';
import { validateSelector } from '../policy/selector.ts';
import { type Conversion, child, compactSelector, type ForeignMeta, readSelector } from './foreign-common.ts';

const NAMESPACE_KEY = 'io.kubernetes.pod.namespace';
const NAMESPACE_LABELS_PREFIX = 'io.cilium.k8s.namespace.labels.';
const POLICY_KEY_PREFIX = 'io.cilium.k8s.policy.';
const METADATA_NAME = 'kubernetes.io/metadata.name';

/**
 * endpointSelector -> podSelector (+ namespaceSelector for the clusterwide kind). Keys may carry
 * a Cilium source prefix; `k8s:` and `any:` select pod labels, anything else (reserved:,
 * container:, cidr: ...) selects identities that are not pods.
 */
export function convertEndpointSelector(
  c: Conversion,
  value: unknown,
  path: string,
  clusterwide: boolean,
  meta: ForeignMeta,
): { podSelector: LabelSelector; namespaceSelector?: LabelSelector } | 'nothing' | undefined {
  const raw = readSelector(c, value, path);
  if (!raw) return undefined;
  const before = c.errors.length;
  const split = new SelectorSplit(c, clusterwide, meta);
  for (const [rawKey, v] of Object.entries(raw.matchLabels ?? {})) {
    split.place(
      rawKey,
      child(child(path, 'matchLabels'), rawKey),
      (t, key) => {
        t.labels[key] = v;
      },
      () => (v === meta.namespace ? 'keep' : 'ignore'),
    );
  }
  (raw.matchExpressions ?? []).forEach((req, i) => {
    split.place(
      req.key,
      child(child(child(path, 'matchExpressions'), i), 'key'),
      (t, key) => {
        t.exprs.push({ ...req, key });
      },
      () => ownNamespaceByExpression(req, meta),
    );
  });
  if (c.errors.length > before) return undefined;
  if (split.selectsNothing) {
    c.warn(
      path,
      `selects no pod: a namespace requirement excludes the policy's own namespace ${JSON.stringify(meta.namespace)}`,
    );
    return 'nothing';
  }
  const podSelector = compactSelector({ matchLabels: split.pods.labels, matchExpressions: split.pods.exprs });
  const namespaceSelector = compactSelector({
    matchLabels: split.namespaces.labels,
    matchExpressions: split.namespaces.exprs,
  });
  for (const [p, m] of validateSelector(podSelector, path)) c.error(p, m);
  for (const [p, m] of validateSelector(namespaceSelector, path)) c.error(p, m);
  if (c.errors.length > before) return undefined;
  return clusterwide && Object.keys(namespaceSelector).length > 0
    ? { podSelector, namespaceSelector }
    : { podSelector };
}

/** Requirements as they are gathered, before they become a selector. */
interface Requirements {
  readonly labels: Record<string, string>;
  readonly exprs: LabelSelectorRequirement[];
}

/**
 * What a namespace requirement means in a namespaced policy, whose own namespace Cilium adds to
 * the selector: "keep" (redundant: it holds), "ignore" (Cilium drops a conflicting matchLabels
 * entry) or "nothing" (an expression that excludes the own namespace).
 */
type OwnNamespace = 'keep' | 'ignore' | 'nothing';

function ownNamespaceByExpression(req: LabelSelectorRequirement, meta: ForeignMeta): OwnNamespace {
  const listed = (req.values ?? []).includes(meta.namespace ?? '');
  const holds =
    req.operator === 'Exists' || (req.operator === 'In' && listed) || (req.operator === 'NotIn' && !listed);
  return holds ? 'keep' : 'nothing';
}

/** Cilium's one selector split into the pod part and the namespace part, by key. */
class SelectorSplit {
  readonly pods: Requirements = { labels: {}, exprs: [] };
  readonly namespaces: Requirements = { labels: {}, exprs: [] };
  selectsNothing = false;
  readonly #c: Conversion;
  readonly #clusterwide: boolean;
  readonly #meta: ForeignMeta;

  constructor(c: Conversion, clusterwide: boolean, meta: ForeignMeta) {
    this.#c = c;
    this.#clusterwide = clusterwide;
    this.#meta = meta;
  }

  /** Put one requirement where its key says: the pod's labels, its namespace, or an error. */
  place(
    rawKey: string,
    at: string,
    add: (target: Requirements, key: string) => void,
    own: () => OwnNamespace,
  ): void {
    const c = this.#c;
    const key = stripSource(c, rawKey, at);
    if (key === undefined) return;
    if (key === NAMESPACE_KEY) {
      this.#placeNamespace(at, add, own);
      return;
    }
    if (key.startsWith(NAMESPACE_LABELS_PREFIX)) {
      if (this.#clusterwide) add(this.namespaces, key.slice(NAMESPACE_LABELS_PREFIX.length));
      else {
        c.error(
          at,
          'selecting by the labels of the own namespace is not converted for a namespaced policy; use a CiliumClusterwideNetworkPolicy or drop the requirement',
        );
      }
      return;
    }
    if (key.startsWith(POLICY_KEY_PREFIX)) {
      c.error(
        at,
        `${JSON.stringify(key)} is a Cilium identity label (service account, cluster); namegate selects pods by their labels`,
      );
      return;
    }
    add(this.pods, key);
  }

  /** The pod's namespace: a namespace name for the clusterwide kind, else the own namespace. */
  #placeNamespace(
    at: string,
    add: (target: Requirements, key: string) => void,
    own: () => OwnNamespace,
  ): void {
    if (this.#clusterwide) {
      add(this.namespaces, METADATA_NAME);
      return;
    }
    const verdict = own();
    if (verdict === 'ignore') {
      this.#c.warn(
        at,
        `ignored: a CiliumNetworkPolicy only ever selects pods of its own namespace ${JSON.stringify(this.#meta.namespace)}`,
      );
    } else if (verdict === 'nothing') {
      this.selectsNothing = true;
    }
  }
}

/** "k8s:app" -> "app"; "any:app" -> "app"; "app" -> "app"; other sources are an error. */
function stripSource(c: Conversion, key: string, at: string): string | undefined {
  const colon = key.indexOf(':');
  if (colon < 0) return key;
  const source = key.slice(0, colon);
  if (source === 'k8s' || source === 'any') return key.slice(colon + 1);
  c.error(at, `the label source ${JSON.stringify(source)} selects Cilium identities that are not pods`);
  return undefined;
}
