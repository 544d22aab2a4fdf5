/**
 * The agent's own sections of the config file: `datapath` (how the kernel is driven) and `http`
 * (metrics and health). The DNS, TTL, store, sources and policies sections live in src/config;
 * `kubernetes` in src/k8s/config.ts.
 */
import { z } from 'zod';
import { parseCidr } from '../core/ip.ts';
import { MAX_INTERNAL_CIDRS, type NftConfigInput } from '../datapath/nft-config.ts';

/** A CIDR ("10.244.0.0/16", "fd00:10:244::/56"; a bare address is a /32 or /128), not /0. */
const InternalCidr = z.string().superRefine((text, ctx) => {
  const c = parseCidr(text);
  if (typeof c === 'string') ctx.addIssue({ code: 'custom', message: c });
  else if (c.prefix === 0)
    ctx.addIssue({ code: 'custom', message: `${c.text} would exempt every destination` });
});

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
  logDrops: z.boolean().default(false).describe('Kernel log line (rate limited) for every Enforce drop.'),
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

export const HttpSectionSchema = z.strictObject({
  listen: z.string().default('127.0.0.1:9253').describe('Address of /metrics, /healthz and /readyz.'),
});

export type DatapathSection = z.output<typeof DatapathSectionSchema>;
export type HttpSection = z.output<typeof HttpSectionSchema>;

/**
 * The nftables driver's config from the datapath section, the DNS listen port and the SNI
 * proxy's port (null: verify ports are not redirected, the proxy is off).
 */
export function nftConfigFrom(
  section: DatapathSection,
  dnsListenPort: number,
  verifyPort: number | null,
): NftConfigInput {
  const r = section.dnsRedirect;
  return {
    table: section.table,
    verifyPort,
    dns: r
      ? { kind: 'dnat', port: r.port, ipv4: r.ipv4 ?? null, ipv6: r.ipv6 ?? null }
      : { kind: 'redirect', port: dnsListenPort },
    internalCidrs: section.internalCIDRs,
    logDrops: section.logDrops,
    logAudit: section.logAudit,
    ...(section.output ? { output: section.output } : {}),
    ...(section.sizes ? { sizes: stripUndefined(section.sizes) } : {}),
  };
}

function stripUndefined<T extends object>(o: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as never;
}
