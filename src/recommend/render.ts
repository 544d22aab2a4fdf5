/**
 * Recommendations as policy documents:
 *   namegate  EgressPolicy (namegate.dev/v1alpha1), one per workload, Enforce
 *   cilium    CiliumNetworkPolicy (cilium.io/v2): toFQDNs + toPorts, and the DNS rule Cilium
 *             needs to see the lookups (kube-dns, any name)
 *   npa       network-policy-api ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2, tier
 *             Admin) with domainNames. Its "*.x" matches one or more labels (NPEP-133), so a
 *             native `*.x` can only be written wider; the report says where.
 * Each document is checked by that format's reader before it is printed (validate.ts).
 */
import { stringify } from 'yaml';
import type { RecommendOptions, WorkloadRecommendation } from './engine.ts';

export const RECOMMEND_FORMATS = ['namegate', 'cilium', 'npa'] as const;
export type RecommendFormat = (typeof RECOMMEND_FORMATS)[number];

/** A DNS-1123 subdomain name for the policy of a workload. */
export function policyName(r: WorkloadRecommendation): string {
  const base = `${r.workload.name}-egress`
    .toLowerCase()
    .replace(/[^a-z0-9.-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, 240)
    .replace(/[^a-z0-9]+$/, '');
  return base === '' ? 'recommended-egress' : base;
}

export const RECOMMENDED_ANNOTATION = 'namegate.dev/recommended-from';

function provenance(r: WorkloadRecommendation): string {
  return `${r.workload.kind} ${r.workload.namespace}/${r.workload.name}: ${r.events} flow events, ${r.first} .. ${r.last}`;
}

export function nativeDocument(r: WorkloadRecommendation): Record<string, unknown> {
  return {
    apiVersion: 'namegate.dev/v1alpha1',
    kind: 'EgressPolicy',
    metadata: {
      name: policyName(r),
      namespace: r.workload.namespace,
      annotations: { [RECOMMENDED_ANNOTATION]: provenance(r) },
    },
    spec: {
      podSelector: { matchLabels: { ...r.selector } },
      egress: r.rules.map((rule) => ({
        toFQDNs: rule.patterns.map((p) => (p.kind === 'exact' ? { name: p.text } : { pattern: p.text })),
        ports: rule.ports.map((p) => ({ port: p.port, protocol: p.protocol })),
      })),
    },
  };
}

/** Cilium's pod labels in an endpoint selector carry the `k8s:` source prefix only for namespaces. */
export function ciliumDocument(r: WorkloadRecommendation): Record<string, unknown> {
  return {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: {
      name: policyName(r),
      namespace: r.workload.namespace,
      annotations: { [RECOMMENDED_ANNOTATION]: provenance(r) },
    },
    spec: {
      endpointSelector: { matchLabels: { ...r.selector } },
      egress: [
        {
          toEndpoints: [
            { matchLabels: { 'k8s:io.kubernetes.pod.namespace': 'kube-system', 'k8s:k8s-app': 'kube-dns' } },
          ],
          toPorts: [{ ports: [{ port: '53', protocol: 'ANY' }], rules: { dns: [{ matchPattern: '*' }] } }],
        },
        ...r.rules.map((rule) => ({
          toFQDNs: rule.patterns.map((p) =>
            p.kind === 'exact' ? { matchName: p.text } : { matchPattern: p.text },
          ),
          toPorts: [{ ports: rule.ports.map((p) => ({ port: String(p.port), protocol: p.protocol })) }],
        })),
      ],
    },
  };
}

export function npaDocument(r: WorkloadRecommendation, priority = 50): Record<string, unknown> {
  return {
    apiVersion: 'policy.networking.k8s.io/v1alpha2',
    kind: 'ClusterNetworkPolicy',
    metadata: { name: `${r.workload.namespace}-${policyName(r)}`.slice(0, 253).replace(/[^a-z0-9]+$/, '') },
    spec: {
      tier: 'Admin',
      priority,
      subject: {
        pods: {
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': r.workload.namespace } },
          podSelector: { matchLabels: { ...r.selector } },
        },
      },
      egress: r.rules.map((rule, i) => ({
        name: `recommended-${i}`,
        action: 'Accept',
        // NPEP-133's "*.x" is one or more labels: native **.x exactly, native *.x widened.
        to: [
          {
            domainNames: rule.patterns.map((p) =>
              p.kind === 'exact' ? p.text : `*.${p.text.replace(/^\*+\./, '')}`,
            ),
          },
        ],
        protocols: rule.ports.map((p) =>
          p.protocol === 'TCP'
            ? { tcp: { destinationPort: { number: p.port } } }
            : { udp: { destinationPort: { number: p.port } } },
        ),
      })),
    },
  };
}

export function renderDocument(r: WorkloadRecommendation, format: RecommendFormat): Record<string, unknown> {
  if (format === 'cilium') return ciliumDocument(r);
  if (format === 'npa') return npaDocument(r);
  return nativeDocument(r);
}

/** What a person should know about a recommendation, as YAML comment lines. */
export function reportLines(
  r: WorkloadRecommendation,
  format: RecommendFormat,
  options: RecommendOptions,
): string[] {
  const lines = [
    `${r.workload.kind} ${r.workload.namespace}/${r.workload.name}: ${r.pods.length} pod(s), ${r.events} flow events, ${r.first} .. ${r.last}`,
  ];
  if (Object.keys(r.selector).length === 0)
    lines.push('WARNING: its pods share no stable label: the selector selects every pod of the namespace');
  for (const rule of r.rules) {
    if (rule.defaultPorts)
      lines.push(`no connection seen for ${rule.patterns.map((p) => p.text).join(', ')}: default ports`);
    for (const p of rule.patterns)
      if (p.kind !== 'exact') {
        lines.push(
          `${p.text} stands for ${p.names.length} names seen: ${p.names.slice(0, 5).join(', ')}${p.names.length > 5 ? ', ...' : ''}`,
        );
        if (format === 'npa' && p.kind === 'one-label')
          lines.push(
            `  network-policy-api has no one-label wildcard: written as *.${p.text.slice(2)} (one or more labels)`,
          );
      }
  }
  for (const n of r.oneOff)
    lines.push(`left out (seen ${n.count} time(s), fewer than ${options.minSeen ?? 2}): ${n.name}`);
  for (const n of r.recent)
    lines.push(`left out (first seen inside the stabilization window, ${n.first}): ${n.name}`);
  for (const u of r.unnamed)
    lines.push(
      `connected without a name (hard-coded address or DNS bypass): ${u.address} ${u.ports.map((p) => `${p.protocol}/${p.port}`).join(' ')}`,
    );
  return lines;
}

/** Every recommendation as one multi-document YAML text, each document after its report. */
export function renderYaml(
  recs: readonly WorkloadRecommendation[],
  format: RecommendFormat,
  options: RecommendOptions,
): string {
  const parts: string[] = [];
  for (const r of recs) {
    if (r.rules.length === 0) {
      parts.push(
        `${reportLines(r, format, options)
          .map((l) => `# ${l}`)
          .join('\n')}\n# nothing to allow\n`,
      );
      continue;
    }
    const head = reportLines(r, format, options)
      .map((l) => `# ${l}`)
      .join('\n');
    parts.push(`${head}\n${stringify(renderDocument(r, format), { lineWidth: 0 })}`);
  }
  return parts.join('---\n');
}
