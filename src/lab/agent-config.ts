/**
 * The agent configuration for a lab: what `namegate agent --config <state>/agent.yaml` needs to
 * govern the lab's pods from the node namespace, in the schema of src/config. Pure: an object
 * from the plan and the policy paths; `lab up` writes it as YAML and tests can build the same
 * object (and override parts of it) without reading files.
 *
 * Sections the config schema does not have yet (the datapath's DNS redirect target, the HTTP
 * listener) are added only once the schema lists them, so the file always loads; the unit tests
 * validate the result against the schema to catch any drift.
 */
import path from 'node:path';
import { stringify } from 'yaml';
import { SECTIONS } from '../config/schema.ts';
import type { Labels } from '../policy/selector.ts';
import type { LabPlan } from './plan.ts';
import { statePaths } from './plan.ts';

export interface LabSourceGroup {
  readonly name: string;
  readonly namespace: string;
  readonly labels: Labels;
  readonly namespaceLabels: Labels;
  readonly cidrs: readonly string[];
}

export interface LabAgentConfig {
  readonly dns: {
    /** host:port pairs in the node namespace (IPv6 in brackets). */
    readonly listen: readonly string[];
    readonly upstreams: readonly string[];
    readonly flowLog: { readonly mode: 'all'; readonly path: string };
  };
  /** Short clamps so the TTL-5 s name expires within seconds in the lab. */
  readonly ttl: { readonly minTTL: number; readonly maxTTL: number; readonly grace: number };
  /** The learned store survives agent restarts through a checkpoint in the state dir. */
  readonly store: { readonly checkpoint: { readonly path: string; readonly intervalSeconds: number } };
  readonly sources: readonly LabSourceGroup[];
  readonly policies: readonly string[];
  /**
   * Where governed sources' DNS (UDP and TCP 53 to any address) is redirected to, and the pods'
   * networks: every address in them that is not a lab pod's gets no grants (L3-05, K8S-04).
   */
  readonly datapath?: {
    readonly dnsRedirect: { readonly ipv4: string; readonly ipv6: string; readonly port: number };
    readonly sourceCIDRs: readonly string[];
  };
  /** The agent's metrics and health endpoint, on the node's loopback. */
  readonly http?: { readonly listen: string };
  /**
   * The SNI/Host proxy checks verify ports (api.stripe.com shares its IP with a neighbour); the
   * lab CA doubles as the inspection CA, and is also the root the lab's web sites chain to.
   */
  readonly proxy?: {
    readonly sni: { readonly enabled: boolean };
    readonly inspect: {
      readonly ca: { readonly certFile: string; readonly keyFile: string };
      readonly upstreamCA: string;
    };
  };
}

export const AGENT_HTTP_LISTEN = '127.0.0.1:9253';

/** The DNS redirect target, whether or not the config schema has a datapath section yet. */
export function dnsRedirectTarget(plan: LabPlan): { ipv4: string; ipv6: string; port: number } {
  return { ipv4: plan.resolver.ipv4, ipv6: plan.resolver.ipv6, port: plan.resolver.port };
}

/**
 * The pods' networks, IPv4 and IPv6: what the internet namespace routes to the node (every pod's
 * link is carved from them). The agent's datapath.sourceCIDRs.
 */
export function podNetworks(plan: LabPlan): string[] {
  return plan.routes.filter((r) => r.netns === plan.inetNetns && r.to !== 'default').map((r) => r.to);
}

export function flowLogPath(plan: LabPlan): string {
  return path.join(statePaths(plan).logs, 'flow.log');
}

export function labAgentConfig(plan: LabPlan, policies: readonly string[]): LabAgentConfig {
  const r = plan.resolver;
  const sections: Record<string, unknown> = SECTIONS;
  return {
    dns: {
      listen: [`${r.ipv4}:${r.port}`, `[${r.ipv6}]:${r.port}`],
      upstreams: [`${plan.upstream.ipv4}:${plan.upstream.port}`],
      flowLog: { mode: 'all', path: flowLogPath(plan) },
    },
    ttl: { minTTL: 5, maxTTL: 3600, grace: 5 },
    store: { checkpoint: { path: path.join(plan.stateDir, 'store.ckpt'), intervalSeconds: 5 } },
    sources: plan.pods.map((p) => ({
      name: p.id,
      namespace: p.namespace,
      labels: { ...p.labels },
      namespaceLabels: { ...p.namespaceLabels },
      cidrs: [`${p.ipv4}/32`, `${p.ipv6}/128`],
    })),
    policies: [...policies],
    ...(Object.hasOwn(sections, 'datapath')
      ? { datapath: { dnsRedirect: dnsRedirectTarget(plan), sourceCIDRs: podNetworks(plan) } }
      : {}),
    ...(Object.hasOwn(sections, 'http') ? { http: { listen: AGENT_HTTP_LISTEN } } : {}),
    ...(Object.hasOwn(sections, 'proxy') ? { proxy: labProxy(plan) } : {}),
  };
}

function labProxy(plan: LabPlan): NonNullable<LabAgentConfig['proxy']> {
  const p = statePaths(plan);
  return {
    sni: { enabled: true },
    inspect: { ca: { certFile: p.caCert, keyFile: path.join(p.ca, 'ca.key') }, upstreamCA: p.caCert },
  };
}

export function agentConfigYaml(plan: LabPlan, config: LabAgentConfig): string {
  return `# namegate agent configuration for lab ${plan.name}, written by namegate lab up.\n${stringify(config)}`;
}
