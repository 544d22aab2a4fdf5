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
  const pods: { labels: Record<string, string>; exprs: LabelSelectorRequirement[] } = {
    labels: {},
    exprs: [],
  };
  const nss: { labels: Record<string, string>; exprs: LabelSelectorRequirement[] } = {
    labels: {},
    exprs: [],
  };
  let selectsNothing = false;

  // What a namespace requirement means in a namespaced policy, whose own namespace Cilium adds
  // to the selector: "keep" (redundant: it holds), "ignore" (Cilium drops a conflicting
  // matchLabels entry) or "nothing" (an expression that excludes the own namespace).
  type OwnNamespace = 'keep' | 'ignore' | 'nothing';
  const place = (
    rawKey: string,
    at: string,
    add: (target: typeof pods, key: string) => void,
    own: () => OwnNamespace,
  ) => {
    const key = stripSource(c, rawKey, at);
    if (key === undefined) return;
    if (key === NAMESPACE_KEY) {
      if (clusterwide) {
        add(nss, METADATA_NAME);
        return;
      }
      const verdict = own();
      if (verdict === 'ignore') {
        c.warn(
          at,
          `ignored: a CiliumNetworkPolicy only ever selects pods of its own namespace ${JSON.stringify(meta.namespace)}`,
        );
      } else if (verdict === 'nothing') {
        selectsNothing = true;
      }
      return;
    }
    if (key.startsWith(NAMESPACE_LABELS_PREFIX)) {
      if (clusterwide) add(nss, key.slice(NAMESPACE_LABELS_PREFIX.length));
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
    add(pods, key);
  };

  for (const [rawKey, v] of Object.entries(raw.matchLabels ?? {})) {
    place(
      rawKey,
      child(child(path, 'matchLabels'), rawKey),
      (t, key) => {
        t.labels[key] = v;
      },
      () => (v === meta.namespace ? 'keep' : 'ignore'),
    );
  }
  (raw.matchExpressions ?? []).forEach((req, i) => {
    place(
      req.key,
      child(child(child(path, 'matchExpressions'), i), 'key'),
      (t, key) => {
        t.exprs.push({ ...req, key });
      },
      () => {
        const listed = (req.values ?? []).includes(meta.namespace ?? '');
        const holds =
          req.operator === 'Exists' ||
          (req.operator === 'In' && listed) ||
          (req.operator === 'NotIn' && !listed);
        return holds ? 'keep' : 'nothing';
      },
    );
  });
  if (c.errors.length > before) return undefined;
  if (selectsNothing) {
    c.warn(
      path,
      `selects no pod: a namespace requirement excludes the policy's own namespace ${JSON.stringify(meta.namespace)}`,
    );
    return 'nothing';
  }
  const podSelector = compactSelector({ matchLabels: pods.labels, matchExpressions: pods.exprs });
  const namespaceSelector = compactSelector({ matchLabels: nss.labels, matchExpressions: nss.exprs });
  for (const [p, m] of validateSelector(podSelector, path)) c.error(p, m);
  for (const [p, m] of validateSelector(namespaceSelector, path)) c.error(p, m);
  if (c.errors.length > before) return undefined;
  return clusterwide && Object.keys(namespaceSelector).length > 0
    ? { podSelector, namespaceSelector }
    : { podSelector };
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
