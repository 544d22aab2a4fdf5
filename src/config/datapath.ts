/**
 * The `datapath` section: how the kernel is driven (driver, table, redirects, internal and
 * source CIDRs, anti-spoofing, the DNS flood guard, logging, set sizes). datapathSettingsFrom()
 * builds the datapath's DatapathSettings; the redirects point at the DNS proxy's and the SNI
 * proxy's ports, so it reads those sections too.
 */
import { z } from 'zod';
import { hostPort } from '../core/host-port.ts';
import { parseCidr } from '../core/ip.ts';
import {
  type DnsGuard,
  MAX_INTERNAL_CIDRS,
  MAX_SOURCE_CIDRS,
  type NftConfigInput,
} from '../datapath/nft-config.ts';
import type { DatapathSettings } from '../datapath/settings.ts';
import { flowEventsFrom, type ObserveSection } from './observe.ts';

/** A CIDR ("10.244.0.0/16", "fd00:10:244::/56"; a bare address is a /32 or /128), not /0. */
const cidrNotZero = (whyNotZero: string) =>
  z.string().superRefine((text, ctx) => {
    const c = parseCidr(text);
    if (typeof c === 'string') ctx.addIssue({ code: 'custom', message: c });
    else if (c.prefix === 0) ctx.addIssue({ code: 'custom', message: `${c.text} ${whyNotZero}` });
  });
const InternalCidr = cidrNotZero('would exempt every destination');
const SourceCidr = cidrNotZero(
  'would govern every source, the internet included; list the workload networks',
);

export const DatapathSectionSchema = z.strictObject({
  driver: z
    .enum(['nftables', 'recording'])
    .default('nftables')
    .describe('nftables enforces in the kernel; recording only records (trials without root).'),
  table: z
    .string()
    .regex(/^[a-z][a-z0-9_]{0,30}$/)
    .default('namegate')
    .describe('The inet table namegate owns.'),
  executor: z
    .enum(['auto', 'addon', 'spawn'])
    .default('auto')
    .describe(
      'How transactions reach the kernel: the libnftables addon, `nft -f`, or the addon when it loads.',
    ),
  dnsRedirect: z
    .strictObject({
      ipv4: z.string().optional(),
      ipv6: z.string().optional(),
      port: z.number().int().min(1).max(65535).default(53),
    })
    .optional()
    .describe(
      "Where governed sources' DNS goes (dnat). Absent: redirect to the port of the first dns.listen address.",
    ),
  internalCIDRs: z
    .array(InternalCidr)
    .max(MAX_INTERNAL_CIDRS)
    .default([])
    .describe(
      'Cluster-internal destinations (pod and service CIDRs; a gateway: its own VPC ranges, or none). ' +
        'Governed sources reach them without learning: that traffic is left to NetworkPolicy. ' +
        'DNS to them is still redirected to the proxy.',
    ),
  sourceCIDRs: z
    .array(SourceCidr)
    .max(MAX_SOURCE_CIDRS)
    .default([])
    .describe(
      'The networks workloads live in (Kubernetes: the pod CIDRs; a gateway: the networks whose egress it ' +
        'routes). Every source address inside them is governed by default: known sources get what policy ' +
        'gives them (or pass untouched when no policy selects them); any other address (unknown, spoofed, ' +
        'not yet synced) gets no grants: its DNS is refused and its packets to non-internal destinations ' +
        'are dropped and counted. Empty: only known sources are governed, and an address no identity ' +
        'knows passes untouched.',
    ),
  antiSpoof: z
    .boolean()
    .default(true)
    .describe(
      'With sourceCIDRs: drop packets from inside them that arrive on an interface the route back to ' +
        "their source does not use (strict reverse path), so a workload cannot use another one's address. " +
        'Turn off with asymmetric routing towards the workloads (docs/datapath.md).',
    ),
  dnsFloodLimit: z
    .number()
    .int()
    .min(0)
    .max(10_000_000)
    .optional()
    .describe(
      'UDP packets per second per source that the kernel lets reach the DNS proxy; the rest is dropped and ' +
        'counted (namegate_datapath_dns_flood_drops_total) before the socket, so one flooding source cannot ' +
        "fill the socket's buffer and starve the others. Default: 4 x dns.limits.ratePerSource (burst 4 x " +
        "burstPerSource), above the proxy's own token bucket, which stays the precise limit. 0: off.",
    ),
  logDrops: z
    .boolean()
    .default(false)
    .describe('Kernel log line (rate limited) for every Enforce drop, unknown-source and spoofed drop.'),
  logAudit: z
    .boolean()
    .default(true)
    .describe('Kernel log line (rate limited) for every Audit would-be drop.'),
  output: z
    .strictObject({
      enabled: z.boolean().default(false),
      exemptUids: z.array(z.number().int().min(0)).default([]),
    })
    .optional()
    .describe("Also govern the gateway's own processes (the agent's uid must be exempt)."),
  sizes: z
    .strictObject({
      sources: z.number().int().min(16).optional(),
      allow: z.number().int().min(16).optional(),
      cidr: z.number().int().min(16).optional(),
      verify: z.number().int().min(16).optional(),
    })
    .optional()
    .describe('Set sizes per family; a full set makes DNS answers fail (never a silent allow).'),
});

export type DatapathSection = z.output<typeof DatapathSectionSchema>;

/**
 * The kernel's DNS flood guard: every UDP port the proxy listens on (a redirect lands on one of
 * them), at datapath.dnsFloodLimit packets/s per source or four times the proxy's own limits.
 */
export function dnsGuardFrom(
  section: DatapathSection,
  listenPorts: readonly number[],
  limits: { readonly ratePerSource: number; readonly burstPerSource: number },
): DnsGuard | null {
  if (section.dnsFloodLimit === 0 || listenPorts.length === 0) return null;
  const rate = section.dnsFloodLimit ?? 4 * limits.ratePerSource;
  return {
    ports: [...new Set(listenPorts)].sort((a, b) => a - b).slice(0, 16),
    rate,
    burst: Math.max(rate, 4 * limits.burstPerSource),
  };
}

/**
 * The nftables driver's config from the datapath section, the DNS listen port and the SNI
 * proxy's port (null: verify ports are not redirected, the proxy is off).
 */
export function nftConfigFrom(
  section: DatapathSection,
  dnsListenPort: number,
  verifyPort: number | null,
  dnsGuard: DnsGuard | null = null,
): NftConfigInput {
  const r = section.dnsRedirect;
  return {
    table: section.table,
    verifyPort,
    dns: r
      ? { kind: 'dnat', port: r.port, ipv4: r.ipv4 ?? null, ipv6: r.ipv6 ?? null }
      : { kind: 'redirect', port: dnsListenPort },
    internalCidrs: section.internalCIDRs,
    sourceCidrs: section.sourceCIDRs,
    antiSpoof: section.antiSpoof,
    dnsGuard,
    logDrops: section.logDrops,
    logAudit: section.logAudit,
    ...(section.output ? { output: section.output } : {}),
    ...(section.sizes ? { sizes: stripUndefined(section.sizes) } : {}),
  };
}

/** The sections the datapath's settings come from. */
export interface DatapathSettingsSource {
  readonly datapath: DatapathSection;
  /** Kernel drops as flow events (nft `log group` rules); absent: the kernel log as configured. */
  readonly observe?: ObserveSection;
  readonly dns: { readonly listen: readonly string[]; readonly limits: DnsFloodBasis };
  readonly proxy: { readonly sni: { readonly enabled: boolean; readonly listen: readonly string[] } };
}

type DnsFloodBasis = { readonly ratePerSource: number; readonly burstPerSource: number };

/**
 * The datapath's settings from a validated config: DNS is redirected to the port of the first
 * dns.listen address (unless dnsRedirect says otherwise), verify ports to the SNI proxy's port
 * when it is enabled, and the flood guard covers every DNS listen port.
 */
export function datapathSettingsFrom(config: DatapathSettingsSource): DatapathSettings {
  const dnsPorts = config.dns.listen.map((l) => hostPort(l, 'dns.listen', 53).port);
  const sni = config.proxy.sni;
  const sniPort = sni.enabled ? hostPort(sni.listen[0] ?? '', 'proxy.sni.listen').port : null;
  return {
    driver: config.datapath.driver,
    executor: config.datapath.executor,
    nft: {
      ...nftConfigFrom(
        config.datapath,
        dnsPorts[0] ?? 53,
        sniPort,
        dnsGuardFrom(config.datapath, dnsPorts, config.dns.limits),
      ),
      flowEvents: config.observe ? flowEventsFrom(config.observe) : null,
    },
  };
}

/**
 * What the startup log says about addresses no identity knows, or null when nothing needs
 * saying. Without sourceCIDRs, an address no identity knows passes untouched: a workload that
 * adds an unused address of its subnet, or a pod created while the API watch is down, is not
 * governed (docs/security.md L3-05, K8S-04).
 */
export function unknownSourcesWarning(config: {
  readonly datapath: DatapathSection;
  readonly sources: readonly unknown[];
  readonly kubernetes?: unknown;
}): { reason: string; message: string } | null {
  const dp = config.datapath;
  if (dp.driver !== 'nftables') return null;
  if (dp.sourceCIDRs.length === 0) {
    const what = config.kubernetes ? 'pods' : config.sources.length > 0 ? 'static source groups' : null;
    if (what === null) return null;
    return {
      reason: 'unknown-sources-ungoverned',
      message:
        `datapath.sourceCIDRs is empty: only known ${what} are governed; an address no identity knows ` +
        '(one a workload adds to its interface, or a pod created while the API watch is down) passes ' +
        'untouched. Set datapath.sourceCIDRs to the workload networks',
    };
  }
  if (!dp.antiSpoof)
    return {
      reason: 'anti-spoof-off',
      message:
        'datapath.antiSpoof is off: a workload that sends with the address of another known workload ' +
        "gets that workload's grants unless the network (CNI) checks source addresses",
    };
  return null;
}

function stripUndefined<T extends object>(o: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as never;
}
