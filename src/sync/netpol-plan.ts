/**
 * Kubernetes NetworkPolicy (networking.k8s.io/v1) from policies and synced addresses (pure).
 *
 * One object per EgressPolicy, in its namespace, with its pod selector; a ClusterEgressPolicy
 * gets one per namespace its namespaceSelector selects. Egress rules: per policy rule, an ipBlock
 * /32 or /128 per synced address with the rule's ports; its toCIDRs as ipBlocks with `except`;
 * and the DNS peers on UDP/TCP 53 (a NetworkPolicy that selects a pod for egress denies what it
 * does not list, DNS included). An egress rule never goes out without peers: a rule with ports
 * and no `to` would allow every destination, so a rule whose names have no address yet is left
 * out (fail closed) and reported.
 *
 * A policy with more addresses than `maxIpBlocksPerObject` is split into several objects
 * (NetworkPolicies add up, so the split allows exactly the same), each well under the API's
 * request and etcd object limits; the split is reported as a condition. Audit policies have no
 * NetworkPolicy equivalent and are reported, not written.
 */
import { createHash } from 'node:crypto';
import type { Policy, PortRange } from '../policy/model.ts';
import { compileSelector, type LabelSelector } from '../policy/selector.ts';
import { type AddressesOf, ruleGrants } from './grants.ts';
import { firstPort, hostCidr, isAnyPort } from './ports.ts';
import type { NetworkPolicySettings } from './settings.ts';

export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'namegate-sync';
export const POLICY_KIND_LABEL = 'namegate.dev/policy-kind';
export const POLICY_NAME_LABEL = 'namegate.dev/policy';
export const HASH_ANNOTATION = 'namegate.dev/content-hash';

export interface OwnerRef {
  readonly apiVersion: string;
  readonly kind: string;
  readonly name: string;
  readonly uid: string;
}

export interface NamespaceInfo {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
}

export interface NetpolCondition {
  readonly type: 'NetworkPolicyWritten';
  readonly status: 'True' | 'False';
  /** Written | Split | AuditMode | NamespacesUnknown | NoNamespace */
  readonly reason: string;
  readonly message: string;
}

export interface PolicyReport {
  /** "Kind namespace/name". */
  readonly policy: string;
  /** The API object the policy came from (its status gets the condition); null from files. */
  readonly owner: (OwnerRef & { readonly namespace: string | null }) | null;
  /** "namespace/name" of every object written for it. */
  readonly objects: readonly string[];
  readonly condition: NetpolCondition;
  /** Exact names with no address yet, and wildcards: both left out. */
  readonly unresolved: readonly string[];
  readonly wildcards: readonly string[];
}

export interface NetworkPolicyObject {
  readonly apiVersion: 'networking.k8s.io/v1';
  readonly kind: 'NetworkPolicy';
  readonly metadata: {
    readonly name: string;
    readonly namespace: string;
    readonly labels: Record<string, string>;
    readonly annotations: Record<string, string>;
    readonly ownerReferences?: ReadonlyArray<OwnerRef & { blockOwnerDeletion: boolean; controller: boolean }>;
  };
  readonly spec: {
    readonly podSelector: LabelSelector;
    readonly policyTypes: readonly ['Egress'];
    readonly egress: readonly EgressRule[];
  };
}

interface NetworkPolicyPort {
  readonly protocol: 'TCP' | 'UDP';
  readonly port?: number;
  readonly endPort?: number;
}

interface Peer {
  readonly ipBlock?: { readonly cidr: string; readonly except?: readonly string[] };
  readonly namespaceSelector?: LabelSelector;
  readonly podSelector?: LabelSelector;
}

interface EgressRule {
  readonly to: readonly Peer[];
  readonly ports?: readonly NetworkPolicyPort[];
}

export interface NetpolPlanInput {
  readonly policies: readonly Policy[];
  readonly addressesOf: AddressesOf;
  readonly settings: NetworkPolicySettings;
  /** The API object a policy came from (for ownerReferences); null when read from files. */
  readonly ownerOf: (policy: Policy) => OwnerRef | null;
  /** Every namespace with its labels (for ClusterEgressPolicy); null when unknown. */
  readonly namespaces: readonly NamespaceInfo[] | null;
}

export interface NetpolPlan {
  readonly objects: readonly NetworkPolicyObject[];
  readonly reports: readonly PolicyReport[];
}

export function npPorts(ports: readonly PortRange[]): NetworkPolicyPort[] | undefined {
  const out: NetworkPolicyPort[] = [];
  const any = new Set(ports.filter(isAnyPort).map((p) => p.protocol));
  if (any.has('TCP') && any.has('UDP') && ports.every(isAnyPort)) {
    // Every port of both protocols: listed by protocol rather than left out, because an absent
    // `ports` would also allow SCTP (and, with some CNIs, ICMP).
    return [{ protocol: 'TCP' }, { protocol: 'UDP' }];
  }
  for (const p of ports) {
    if (isAnyPort(p)) out.push({ protocol: p.protocol });
    else if (any.has(p.protocol)) continue;
    else {
      const from = firstPort(p);
      out.push(
        from === p.to
          ? { protocol: p.protocol, port: from }
          : { protocol: p.protocol, port: from, endPort: p.to },
      );
    }
  }
  return out;
}

function shortHash(text: string, n = 10): string {
  return createHash('sha256').update(text).digest('hex').slice(0, n);
}

/** A DNS-subdomain object name of at most 253 characters; long ones end in a hash. */
function objectName(prefix: string, base: string, part: number): string {
  const suffix = part > 1 ? `-${part}` : '';
  const name = `${prefix}${base}${suffix}`;
  if (name.length <= 253) return name;
  const h = shortHash(base);
  return `${prefix}${base.slice(0, 253 - prefix.length - suffix.length - h.length - 1)}-${h}${suffix}`;
}

/** A label value (at most 63 characters); long ones become a prefix and a hash. */
function labelValue(text: string): string {
  if (text.length <= 63) return text;
  return `${text.slice(0, 52).replace(/[-_.]+$/, '')}-${shortHash(text)}`;
}

function policyText(p: Policy): string {
  return `${p.ref.kind} ${p.ref.namespace === null ? '' : `${p.ref.namespace}/`}${p.ref.name}`;
}

export function planNetworkPolicies(input: NetpolPlanInput): NetpolPlan {
  const objects: NetworkPolicyObject[] = [];
  const reports: PolicyReport[] = [];
  const s = input.settings;
  const dnsRule: EgressRule | null =
    s.dnsPeers.length > 0
      ? {
          to: s.dnsPeers.map((p) => ({
            ...(p.namespaceSelector ? { namespaceSelector: p.namespaceSelector as LabelSelector } : {}),
            ...(p.podSelector ? { podSelector: p.podSelector as LabelSelector } : {}),
          })),
          ports: [
            { protocol: 'UDP', port: 53 },
            { protocol: 'TCP', port: 53 },
          ],
        }
      : null;

  for (const policy of input.policies) {
    const grants = ruleGrants(policy, input.addressesOf);
    const unresolved = [...new Set(grants.flatMap((g) => g.unresolved))].sort();
    const wildcards = [...new Set(grants.flatMap((g) => g.wildcards))].sort();
    const from = input.ownerOf(policy);
    const base = {
      policy: policyText(policy),
      owner: from ? { ...from, namespace: policy.ref.namespace } : null,
      unresolved,
      wildcards,
    };
    const notWritten = (reason: string, message: string) =>
      reports.push({
        ...base,
        objects: [],
        condition: { type: 'NetworkPolicyWritten', status: 'False', reason, message },
      });
    if (policy.mode === 'Audit') {
      notWritten('AuditMode', 'NetworkPolicy has no audit mode: nothing is written for an Audit policy');
      continue;
    }
    let namespaces: string[];
    if (policy.namespace !== null) namespaces = [policy.namespace];
    else if (input.namespaces === null) {
      notWritten(
        'NamespacesUnknown',
        'a ClusterEgressPolicy needs the namespaces from the API; none were read',
      );
      continue;
    } else {
      const select = compileSelector(policy.namespaceSelector);
      namespaces = input.namespaces.filter((n) => select(n.labels)).map((n) => n.name);
    }

    // The per-address rules, cut into chunks; the CIDR and DNS rules go into the first object.
    const fixed: EgressRule[] = [];
    const chunks: EgressRule[][] = [[]];
    let room = s.maxIpBlocksPerObject;
    for (const g of grants) {
      const ports = npPorts(g.ports);
      const withPorts = (to: Peer[]): EgressRule => (ports ? { to, ports } : { to });
      if (g.cidrs.length > 0) {
        fixed.push(
          withPorts(
            g.cidrs.map((c) => ({
              ipBlock:
                c.except.length > 0
                  ? { cidr: c.cidr.text, except: c.except.map((e) => e.text) }
                  : { cidr: c.cidr.text },
            })),
          ),
        );
      }
      let rest = g.addresses;
      while (rest.length > 0) {
        if (room === 0) {
          chunks.push([]);
          room = s.maxIpBlocksPerObject;
        }
        const take = rest.slice(0, room);
        rest = rest.slice(take.length);
        room -= take.length;
        (chunks.at(-1) as EgressRule[]).push(
          withPorts(take.map((ip) => ({ ipBlock: { cidr: hostCidr(ip) } }))),
        );
      }
    }
    if (dnsRule) fixed.push(dnsRule);
    const parts = chunks.length;
    const owner = input.ownerOf(policy);
    const written: string[] = [];
    for (const namespace of namespaces) {
      chunks.forEach((chunk, i) => {
        const part = i + 1;
        const name = objectName(
          s.namePrefix,
          policy.namespace === null ? `cluster-${policy.ref.name}` : policy.ref.name,
          part,
        );
        const spec = {
          podSelector: policy.podSelector,
          policyTypes: ['Egress'] as const,
          egress: part === 1 ? [...fixed, ...chunk] : chunk,
        };
        const annotations: Record<string, string> = {
          'namegate.dev/part': `${part}/${parts}`,
          ...(unresolved.length > 0
            ? { 'namegate.dev/unresolved': unresolved.join(',').slice(0, 4000) }
            : {}),
          ...(wildcards.length > 0
            ? { 'namegate.dev/unresolvable': wildcards.join(',').slice(0, 4000) }
            : {}),
        };
        const labels = {
          [MANAGED_BY_LABEL]: MANAGED_BY,
          [POLICY_KIND_LABEL]: policy.ref.kind,
          [POLICY_NAME_LABEL]: labelValue(policy.ref.name),
        };
        const hash = shortHash(JSON.stringify({ spec, labels, annotations, owner }), 16);
        objects.push({
          apiVersion: 'networking.k8s.io/v1',
          kind: 'NetworkPolicy',
          metadata: {
            name,
            namespace,
            labels,
            annotations: { ...annotations, [HASH_ANNOTATION]: hash },
            ...(owner
              ? { ownerReferences: [{ ...owner, blockOwnerDeletion: false, controller: false }] }
              : {}),
          },
          spec,
        });
        written.push(`${namespace}/${name}`);
      });
    }
    const condition: NetpolCondition =
      namespaces.length === 0
        ? {
            type: 'NetworkPolicyWritten',
            status: 'False',
            reason: 'NoNamespace',
            message: 'no namespace is selected',
          }
        : parts > 1
          ? {
              type: 'NetworkPolicyWritten',
              status: 'True',
              reason: 'Split',
              message: `written as ${parts} NetworkPolicy objects per namespace (at most ${s.maxIpBlocksPerObject} ipBlocks each)`,
            }
          : {
              type: 'NetworkPolicyWritten',
              status: 'True',
              reason: 'Written',
              message: 'written as one NetworkPolicy',
            };
    reports.push({ ...base, objects: written, condition });
  }
  return { objects, reports };
}
