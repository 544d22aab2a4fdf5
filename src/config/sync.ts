/**
 * The `sync:` section of the config file: how `namegate sync` keeps IP allowlists following DNS
 * (the resolver loop, the union window) and which targets it writes. Its runtime settings are
 * built from it in one place, `syncSettingsFrom`; src/sync never sees the YAML.
 *
 * The resolver is `dns.upstreams` (with dns.timeoutMs, dns.attempts, ...), the TTL clamps are the
 * `ttl` section and the policies the `policies` files (or the Kubernetes API when a `kubernetes`
 * section is present): the same trusted upstream, clamps and policies as the agent.
 */
import path from 'node:path';
import { z } from 'zod';
import { LabelSelectorSchema } from '../formats/native-schema.ts';
import type { SyncSettings } from '../sync/settings.ts';
import type { ConfigProblem } from './problem.ts';
import { count, seconds } from './units.ts';

export type { SyncSettings };

const DnsPeerSchema = z.strictObject({
  namespaceSelector: LabelSelectorSchema.optional(),
  podSelector: LabelSelectorSchema.optional(),
});

export const NetworkPolicyTargetSchema = z.strictObject({
  namePrefix: z
    .string()
    .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?-?$/)
    .max(40)
    .default('namegate-')
    .describe('Prefix of the NetworkPolicy names (one object per EgressPolicy: <prefix><policy name>).'),
  maxIpBlocksPerObject: count(1, 10_000, 1000).describe(
    'ipBlocks per NetworkPolicy object; a policy with more addresses is split into several objects.',
  ),
  dnsPeers: z
    .array(DnsPeerSchema)
    .default([
      {
        namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } },
        podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } },
      },
    ])
    .describe(
      'Peers the selected pods may reach on UDP/TCP 53 (the cluster DNS): a NetworkPolicy that selects a pod ' +
        'for egress denies everything it does not list, DNS included. [] leaves DNS to your own policies.',
    ),
  fieldManager: z.string().min(1).max(128).default('namegate-sync'),
});

export const NftablesTargetSchema = z
  .strictObject({})
  .describe('Write the allowlists into the nftables table of the `datapath` section (a Linux gateway).');

export const AwsTargetSchema = z.strictObject({
  directory: z
    .string()
    .min(1)
    .describe('Folder for the request files; relative paths are from the config file.'),
  securityGroups: z
    .array(
      z.strictObject({
        groupId: z.string().regex(/^sg-[0-9a-f]{8,17}$/),
        source: z.string().min(1).describe('The source group (`sources[].name`) whose instances use it.'),
      }),
    )
    .default([]),
  maxRulesPerSecurityGroup: count(1, 1000, 60).describe(
    'Egress rules a security group may hold (the AWS quota; 60 unless raised).',
  ),
  networkFirewall: z
    .strictObject({
      ruleGroupName: z.string().regex(/^[a-zA-Z0-9-]{1,128}$/),
      capacity: count(1, 30_000, 1000),
      sources: z
        .array(z.string().min(1))
        .default([])
        .describe('Source groups the rule group covers; [] covers every governed group.'),
    })
    .optional(),
});

export const GcpTargetSchema = z.strictObject({
  directory: z.string().min(1),
  project: z.string().regex(/^[a-z][-a-z0-9]{4,28}[a-z0-9]$/),
  firewallPolicy: z.string().regex(/^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$/),
  priorityStart: count(0, 2_000_000_000, 10_000).describe(
    'Priority of the first rule; each governed group gets a block of priorityBlock numbers from here.',
  ),
  priorityBlock: count(10, 1_000_000, 1000),
  sources: z
    .array(z.string().min(1))
    .default([])
    .describe('Source groups to write; [] writes every governed one.'),
});

export const SyncSectionSchema = z.strictObject({
  windowSeconds: seconds(0, 7 * 86_400, 600).describe(
    'Every address seen for a name within this window stays allowed (a rotating name keeps the addresses ' +
      'clients may still use); 0 keeps only the latest answer, as naive loops do.',
  ),
  maxAddressesPerName: count(1, 100_000, 256).describe(
    'Addresses kept per name; past it the least recently seen leave first (counted and logged).',
  ),
  concurrency: count(1, 256, 8).describe('Resolutions in flight at once.'),
  minRefreshSeconds: seconds(1, 86_400, 5).describe(
    'Shortest time between two resolutions of a name, whatever its TTL.',
  ),
  maxRefreshSeconds: seconds(1, 86_400, 300).describe(
    'Longest time between two resolutions of a name (also bounded by ttl.maxTTL).',
  ),
  jitter: z
    .number()
    .min(0)
    .max(0.5)
    .default(0.1)
    .describe('Re-resolve at (1 - jitter * random) of the time left, so names do not fall due together.'),
  failureRetrySeconds: seconds(1, 3600, 5).describe(
    'First retry after a failed resolution; doubles up to maxRefreshSeconds.',
  ),
  writeDelayMs: count(0, 60_000, 200).describe('Changes are written at most this often (coalescing).'),
  statusFile: z.string().optional().describe('Where the status (JSON) is written after every pass.'),
  targets: z
    .strictObject({
      networkPolicy: NetworkPolicyTargetSchema.optional(),
      nftables: NftablesTargetSchema.optional(),
      aws: AwsTargetSchema.optional(),
      gcp: GcpTargetSchema.optional(),
    })
    .prefault({}),
});

export type SyncSection = z.output<typeof SyncSectionSchema>;
export type NetworkPolicyTarget = z.output<typeof NetworkPolicyTargetSchema>;
export type AwsTarget = z.output<typeof AwsTargetSchema>;
export type GcpTarget = z.output<typeof GcpTargetSchema>;

/** Problems beyond the shape, with their field paths (empty when the section is usable). */
export function syncSectionProblems(
  section: SyncSection,
  sources: ReadonlyArray<{ readonly name: string }>,
): ConfigProblem[] {
  const groupNames = sources.map((g) => g.name);
  const out: ConfigProblem[] = [];
  if (section.minRefreshSeconds > section.maxRefreshSeconds)
    out.push({ path: 'sync.minRefreshSeconds', message: 'must not be larger than sync.maxRefreshSeconds' });
  const known = new Set(groupNames);
  const t = section.targets;
  t.aws?.securityGroups.forEach((g, i) => {
    if (!known.has(g.source))
      out.push({
        path: `sync.targets.aws.securityGroups[${i}].source`,
        message: `no source group "${g.source}"`,
      });
  });
  t.aws?.networkFirewall?.sources.forEach((s, i) => {
    if (!known.has(s))
      out.push({ path: `sync.targets.aws.networkFirewall.sources[${i}]`, message: `no source group "${s}"` });
  });
  t.gcp?.sources.forEach((s, i) => {
    if (!known.has(s))
      out.push({ path: `sync.targets.gcp.sources[${i}]`, message: `no source group "${s}"` });
  });
  if (!t.networkPolicy && !t.nftables && !t.aws && !t.gcp)
    out.push({
      path: 'sync.targets',
      message: 'name at least one target (networkPolicy, nftables, aws, gcp)',
    });
  return out;
}

/** The section with its relative paths resolved against the config file's folder. */
export function resolveSyncSection(section: SyncSection, baseDir: string): SyncSection {
  const t = section.targets;
  return {
    ...section,
    ...(section.statusFile !== undefined ? { statusFile: path.resolve(baseDir, section.statusFile) } : {}),
    targets: {
      ...t,
      ...(t.aws ? { aws: { ...t.aws, directory: path.resolve(baseDir, t.aws.directory) } } : {}),
      ...(t.gcp ? { gcp: { ...t.gcp, directory: path.resolve(baseDir, t.gcp.directory) } } : {}),
    },
  };
}

/** The loop's settings from the sync and ttl sections: the one mapping from YAML to runtime. */
export function syncSettingsFrom(
  section: SyncSection,
  ttl: { readonly minTTL: number; readonly maxTTL: number; readonly grace: number },
): SyncSettings {
  return {
    windowMs: section.windowSeconds * 1000,
    maxAddressesPerName: section.maxAddressesPerName,
    concurrency: section.concurrency,
    minRefreshMs: section.minRefreshSeconds * 1000,
    maxRefreshMs: section.maxRefreshSeconds * 1000,
    jitter: section.jitter,
    failureRetryMs: section.failureRetrySeconds * 1000,
    writeDelayMs: section.writeDelayMs,
    ttl: { minTtlSeconds: ttl.minTTL, maxTtlSeconds: ttl.maxTTL, graceSeconds: ttl.grace },
    statusFile: section.statusFile ?? null,
  };
}
