/**
 * The lab plan: every namespace, veth, address, route, sysctl, web site and DNS record of one lab,
 * computed from its name alone. Pure and deterministic: `lab up` applies it, `lab down` removes
 * what it names, tests read addresses from it, and two calls with the same name agree.
 *
 * Addresses do not depend on the lab name: each lab lives in its own namespaces, which are not
 * connected to the root namespace or to each other, so several labs can use the same addresses.
 * Only namespace names (and the state dir) carry the lab name.
 */
import path from 'node:path';
import { ErrorCode, NamegateError } from '../core/errors.ts';
import type { Labels } from '../policy/selector.ts';

export const DEFAULT_LAB_NAME = 'demo';
export const DEFAULT_STATE_ROOT = '/run/namegate/lab';
/** Linux limits interface names to 15 bytes (IFNAMSIZ - 1). */
export const MAX_IFNAME = 15;
/** Namespaces named ng-t-* belong to the datapath tests; a lab named "t" would collide with them. */
const RESERVED_LAB_NAMES: ReadonlySet<string> = new Set(['t']);
/** No hyphen: "ng-<lab>-" must be an unambiguous prefix. */
const LAB_NAME = /^[a-z][a-z0-9]{0,11}$/;

export interface PodSpec {
  /** The pod's name; also the CLI's name for it and the suffix of its network namespace. */
  readonly id: string;
  /** Short form used in interface names (at most 8 characters). */
  readonly tag: string;
  readonly namespace: string;
  readonly labels: Labels;
  readonly namespaceLabels: Labels;
  /** What the pod shows in the demo. */
  readonly why: string;
}

/** The pods of every lab: one per example policy, and one that no policy selects. */
export const PODS: readonly PodSpec[] = [
  {
    id: 'payments-api',
    tag: 'pay',
    namespace: 'payments',
    labels: { app: 'payments-api' },
    namespaceLabels: {},
    why: 'selected by examples/payments-stripe.yaml (Enforce): api.stripe.com on TCP 443 with SNI verification',
  },
  {
    id: 'ci-runner',
    tag: 'ci',
    namespace: 'ci',
    labels: { role: 'runner' },
    namespaceLabels: {},
    why: 'selected by examples/ci-runners.yaml (Enforce): GitHub and npm',
  },
  {
    id: 'web',
    tag: 'web',
    namespace: 'web',
    labels: { app: 'web' },
    namespaceLabels: { 'egress-audit': 'on' },
    why: 'selected by examples/cluster-audit.yaml (Audit): would-be denials are logged, nothing is dropped',
  },
  {
    id: 'unmanaged',
    tag: 'unm',
    namespace: 'sandbox',
    labels: { app: 'unmanaged' },
    namespaceLabels: {},
    why: 'no policy selects it: namegate leaves it alone',
  },
];

export interface Address {
  readonly netns: string;
  readonly dev: string;
  /** Address with prefix length, e.g. "10.10.1.2/24". */
  readonly cidr: string;
}

export interface VethEnd {
  readonly netns: string;
  readonly ifname: string;
}

export interface Veth {
  /** Created in a's namespace, with its peer created directly in b's namespace. */
  readonly a: VethEnd;
  readonly b: VethEnd;
}

export interface Route {
  readonly netns: string;
  /** "default" or a CIDR. */
  readonly to: string;
  readonly via: string;
  readonly family: 4 | 6;
}

export interface Sysctl {
  readonly netns: string;
  readonly key: string;
  readonly value: string;
}

export interface LabPod extends PodSpec {
  readonly netns: string;
  readonly ipv4: string;
  readonly ipv6: string;
  /** The node's addresses on this pod's link (the pod's default gateways). */
  readonly gateway4: string;
  readonly gateway6: string;
}

/** A web site in the internet namespace: nginx serves these names on these addresses. */
export interface Site {
  readonly key: string;
  readonly names: readonly string[];
  /** Addresses published in DNS. */
  readonly ipv4: readonly string[];
  readonly ipv6: readonly string[];
  /** Addresses that serve the site but are not in DNS yet (targets for dynamic updates). */
  readonly spare4: readonly string[];
  readonly spare6: readonly string[];
  readonly ttl: number;
  readonly why: string;
}

export type RecordType = 'A' | 'AAAA' | 'CNAME' | 'NS' | 'TXT';

export interface DnsRecord {
  /** Canonical name without the trailing dot. */
  readonly name: string;
  readonly type: RecordType;
  readonly ttl: number;
  /** Address, target name (no trailing dot) or TXT text. */
  readonly data: string;
}

export interface Endpoint {
  readonly ipv4: string;
  readonly ipv6: string;
  readonly port: number;
}

export interface LabPlan {
  readonly name: string;
  /** Where pid files, logs, configs, zones and certificates live. */
  readonly stateDir: string;
  /** The router namespace; the agent runs here. */
  readonly nodeNetns: string;
  /** The fake internet: DNS, web servers, escape listeners. */
  readonly inetNetns: string;
  readonly pods: readonly LabPod[];
  /** Every namespace, node first. */
  readonly namespaces: readonly string[];
  readonly veths: readonly Veth[];
  readonly addresses: readonly Address[];
  readonly routes: readonly Route[];
  readonly sysctls: readonly Sysctl[];
  /** The node address the pods use as their resolver (resolv.conf); the agent's DNS listens here. */
  readonly resolver: Endpoint;
  /** The authoritative server (knotd): the agent's trusted upstream. */
  readonly upstream: Endpoint;
  /** Another DNS server on the internet: queries to it are an escape attempt. */
  readonly otherResolver: Endpoint;
  /** What the other resolver answers for every A / AAAA query (never used elsewhere). */
  readonly otherResolverAnswer: { readonly ipv4: string; readonly ipv6: string };
  /** TCP port of the DNS-over-TLS-like listener on the other resolver's address. */
  readonly dotPort: number;
  /** UDP port of the QUIC-like listener on every internet address. */
  readonly quicPort: number;
  readonly sites: readonly Site[];
  readonly records: readonly DnsRecord[];
  /** The TSIG key name the zone accepts dynamic updates with. */
  readonly tsigKeyName: string;
}

export interface PlanOptions {
  readonly stateRoot?: string;
  /**
   * A Kubernetes node instead of the static pods (src/lab/cluster): no pod namespaces; the
   * internet routes the cluster's pod network to the node.
   */
  readonly kubernetes?: boolean;
}

/** The lab cluster's pod network (all nodes) when the lab is a Kubernetes node. */
export const CLUSTER_POD_CIDR = '10.244.0.0/16';

export function validateLabName(name: string): string | null {
  if (!LAB_NAME.test(name)) {
    return `lab name ${JSON.stringify(name)} must be 1-12 lowercase letters or digits, starting with a letter`;
  }
  if (RESERVED_LAB_NAMES.has(name))
    return `lab name ${JSON.stringify(name)} is reserved (ng-t-* belongs to other tests)`;
  return null;
}

const V4_SERVERS = '203.0.113';
const V6_SERVERS = '2001:db8:113:';
const V4_INFRA = '198.51.100';
const V6_INFRA = '2001:db8:100:';

function site(
  key: string,
  names: string[],
  hosts: number[],
  why: string,
  extra: { spare?: number[]; ttl?: number } = {},
): Site {
  return {
    key,
    names,
    ipv4: hosts.map((h) => `${V4_SERVERS}.${h}`),
    ipv6: hosts.map((h) => `${V6_SERVERS}:${h}`),
    spare4: (extra.spare ?? []).map((h) => `${V4_SERVERS}.${h}`),
    spare6: (extra.spare ?? []).map((h) => `${V6_SERVERS}:${h}`),
    ttl: extra.ttl ?? 300,
    why,
  };
}

/** The fake internet's web sites: the names the example policies use, and negative cases. */
export const SITES: readonly Site[] = [
  site('stripe', ['api.stripe.com', 'cdn-neighbour.example.net'], [10], 'CDN case: two names share one IP'),
  site('github', ['github.com'], [20], 'examples/ci-runners.yaml'),
  site(
    'ghcontent',
    ['objects.githubusercontent.com', 'raw.githubusercontent.com'],
    [21],
    'two names matched by **.githubusercontent.com on one IP',
  ),
  site('npm', ['registry.npmjs.org'], [30, 31], 'two addresses per family (round robin)'),
  site('debian', ['deb.debian.org'], [40], 'examples/cluster-audit.yaml'),
  site('pypi', ['pypi.org'], [50], 'examples/cluster-audit.yaml'),
  site('pyfiles', ['files.pythonhosted.org'], [51], 'examples/cluster-audit.yaml'),
  site('evil', ['evil.example.com'], [66], 'a name no policy allows'),
  site('examplecom', ['example.com', 'www.example.com'], [80], 'negative cases'),
  site('edge', ['edge.example.net'], [90], 'target of the CNAME www.example.org'),
  site('exampleorg', ['example.org'], [91], 'negative cases'),
  site('short', ['short.example.com'], [100], 'TTL 5 s: expiry tests', { ttl: 5 }),
  site('moving', ['moving.example.com'], [110], 'dynamic updates move it to a spare address', {
    spare: [111],
  }),
  // A CDN-like name for bench/sync: 20 addresses (.120-.139), 4 in an answer at a time, moved
  // along by dynamic updates.
  site('rotating', ['rotating.example.com'], [120, 121, 122, 123], 'bench/sync: rotates among 20 addresses', {
    spare: Array.from({ length: 16 }, (_, i) => 124 + i),
    ttl: 5,
  }),
];

function records(sites: readonly Site[], upstream: Endpoint): DnsRecord[] {
  const out: DnsRecord[] = [
    { name: 'ns1.example.net', type: 'A', ttl: 3600, data: upstream.ipv4 },
    { name: 'ns1.example.net', type: 'AAAA', ttl: 3600, data: upstream.ipv6 },
    // Followed across names by the authoritative server, as a recursive resolver would.
    { name: 'www.example.org', type: 'CNAME', ttl: 300, data: 'edge.example.net' },
    // A private answer: namegate must not learn it (docs/architecture.md: answers never widen access).
    { name: 'internal.example.com', type: 'A', ttl: 300, data: '10.0.0.5' },
    { name: 'lab.example.net', type: 'TXT', ttl: 60, data: 'namegate lab authoritative server' },
  ];
  for (const s of sites) {
    for (const name of s.names) {
      for (const ip of s.ipv4) out.push({ name, type: 'A', ttl: s.ttl, data: ip });
      for (const ip of s.ipv6) out.push({ name, type: 'AAAA', ttl: s.ttl, data: ip });
    }
  }
  return out;
}

export function labPlan(name: string = DEFAULT_LAB_NAME, options: PlanOptions = {}): LabPlan {
  const problem = validateLabName(name);
  if (problem) throw new NamegateError(ErrorCode.UsageInvalid, problem);
  const prefix = `ng-${name}`;
  const nodeNetns = `${prefix}-node`;
  const inetNetns = `${prefix}-inet`;
  const stateDir = path.join(options.stateRoot ?? DEFAULT_STATE_ROOT, name);

  const resolver: Endpoint = { ipv4: '10.10.0.53', ipv6: 'fd00:10::53', port: 53 };
  const upstream: Endpoint = { ipv4: `${V4_INFRA}.53`, ipv6: `${V6_INFRA}:53`, port: 53 };
  const otherResolver: Endpoint = { ipv4: `${V4_INFRA}.54`, ipv6: `${V6_INFRA}:54`, port: 53 };
  const otherResolverAnswer = { ipv4: `${V4_INFRA}.66`, ipv6: `${V6_INFRA}:66` };

  const veths: Veth[] = [];
  const addresses: Address[] = [];
  const routes: Route[] = [];
  const sysctls: Sysctl[] = [];

  // Node <-> internet transit link. No NAT: servers see the pods' own addresses.
  veths.push({ a: { netns: nodeNetns, ifname: 'to-inet' }, b: { netns: inetNetns, ifname: 'to-node' } });
  addresses.push(
    { netns: nodeNetns, dev: 'to-inet', cidr: '10.254.0.1/24' },
    { netns: nodeNetns, dev: 'to-inet', cidr: 'fd00:254::1/64' },
    { netns: inetNetns, dev: 'to-node', cidr: '10.254.0.2/24' },
    { netns: inetNetns, dev: 'to-node', cidr: 'fd00:254::2/64' },
    // The resolver address sits on the node's loopback, like a cluster DNS service IP.
    { netns: nodeNetns, dev: 'lo', cidr: `${resolver.ipv4}/32` },
    { netns: nodeNetns, dev: 'lo', cidr: `${resolver.ipv6}/128` },
  );
  routes.push(
    { netns: nodeNetns, to: 'default', via: '10.254.0.2', family: 4 },
    { netns: nodeNetns, to: 'default', via: 'fd00:254::2', family: 6 },
    { netns: inetNetns, to: '10.10.0.0/16', via: '10.254.0.1', family: 4 },
    { netns: inetNetns, to: 'fd00:10::/32', via: 'fd00:254::1', family: 6 },
  );

  if (options.kubernetes)
    routes.push({ netns: inetNetns, to: CLUSTER_POD_CIDR, via: '10.254.0.1', family: 4 });

  const pods: LabPod[] = (options.kubernetes ? [] : PODS).map((spec, i) => {
    const n = i + 1;
    const netns = `${prefix}-${spec.id}`;
    const pod: LabPod = {
      ...spec,
      netns,
      ipv4: `10.10.${n}.2`,
      ipv6: `fd00:10:${n}::2`,
      gateway4: `10.10.${n}.1`,
      gateway6: `fd00:10:${n}::1`,
    };
    const nodeIf = `to-${spec.tag}`;
    veths.push({ a: { netns: nodeNetns, ifname: nodeIf }, b: { netns, ifname: 'eth0' } });
    addresses.push(
      { netns: nodeNetns, dev: nodeIf, cidr: `${pod.gateway4}/24` },
      { netns: nodeNetns, dev: nodeIf, cidr: `${pod.gateway6}/64` },
      { netns, dev: 'eth0', cidr: `${pod.ipv4}/24` },
      { netns, dev: 'eth0', cidr: `${pod.ipv6}/64` },
    );
    routes.push(
      { netns, to: 'default', via: pod.gateway4, family: 4 },
      { netns, to: 'default', via: pod.gateway6, family: 6 },
    );
    return pod;
  });

  const infra4 = [upstream.ipv4, otherResolver.ipv4];
  const infra6 = [upstream.ipv6, otherResolver.ipv6];
  const serverAddrs = new Set<string>();
  for (const s of SITES) for (const ip of [...s.ipv4, ...s.spare4]) serverAddrs.add(`${ip}/32`);
  for (const ip of infra4) serverAddrs.add(`${ip}/32`);
  for (const s of SITES) for (const ip of [...s.ipv6, ...s.spare6]) serverAddrs.add(`${ip}/128`);
  for (const ip of infra6) serverAddrs.add(`${ip}/128`);
  for (const cidr of serverAddrs) addresses.push({ netns: inetNetns, dev: 'lo', cidr });

  const namespaces = [nodeNetns, inetNetns, ...pods.map((p) => p.netns)];
  for (const netns of namespaces) {
    // Set before any link exists so every interface inherits it: no 1-2 s wait for duplicate
    // address detection before IPv6 addresses can be used.
    sysctls.push(
      { netns, key: 'net.ipv6.conf.default.accept_dad', value: '0' },
      { netns, key: 'net.ipv6.conf.all.accept_dad', value: '0' },
    );
  }
  // Forwarding only inside the node namespace: the root namespace is never touched.
  sysctls.push(
    { netns: nodeNetns, key: 'net.ipv4.ip_forward', value: '1' },
    { netns: nodeNetns, key: 'net.ipv6.conf.all.forwarding', value: '1' },
  );

  return {
    name,
    stateDir,
    nodeNetns,
    inetNetns,
    pods,
    namespaces,
    veths,
    addresses,
    routes,
    sysctls,
    resolver,
    upstream,
    otherResolver,
    otherResolverAnswer,
    dotPort: 853,
    quicPort: 443,
    sites: SITES,
    records: records(SITES, upstream),
    tsigKeyName: 'lab-update',
  };
}

export function findPod(plan: LabPlan, id: string): LabPod {
  const pod = plan.pods.find((p) => p.id === id || p.netns === id);
  if (!pod) {
    throw new NamegateError(
      ErrorCode.UsageInvalid,
      `no pod ${JSON.stringify(id)} in lab ${plan.name}; pods: ${plan.pods.map((p) => p.id).join(', ')}`,
    );
  }
  return pod;
}

/** The site serving a name, if any. */
export function siteFor(plan: LabPlan, name: string): Site | undefined {
  return plan.sites.find((s) => s.names.includes(name));
}

/** Every file path the lab writes, relative to nothing: one place so up, down and tests agree. */
export function statePaths(plan: LabPlan) {
  const d = plan.stateDir;
  return {
    stateFile: path.join(d, 'state.json'),
    pids: path.join(d, 'pids'),
    logs: path.join(d, 'logs'),
    knot: path.join(d, 'knot'),
    knotConf: path.join(d, 'knot', 'knot.conf'),
    zoneFile: path.join(d, 'knot', 'root.zone'),
    tsigKey: path.join(d, 'knot', 'tsig.key'),
    nginx: path.join(d, 'nginx'),
    nginxConf: path.join(d, 'nginx', 'nginx.conf'),
    ca: path.join(d, 'ca'),
    caCert: path.join(d, 'ca', 'ca.crt'),
    listenersConf: path.join(d, 'listeners.json'),
    agentConfig: path.join(d, 'agent.yaml'),
  };
}

/** ip netns exec bind-mounts files from here over /etc inside the namespace. */
export function netnsEtcDir(netns: string): string {
  return path.join('/etc/netns', netns);
}
