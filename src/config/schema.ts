/**
 * The agent config file, as zod schemas: one section per component. Every object is strict (an
 * unknown key is an error: a typo must not silently fall back to a default) and every field
 * has a default where one is safe. Sections are listed in SECTIONS so a component adds its own
 * (datapath, http, ...) with one entry.
 */
import { z } from 'zod';
import { DatapathSectionSchema, HttpSectionSchema } from '../agent/config.ts';
import { KubernetesConfigSchema } from '../k8s/config.ts';
import { ProxySectionSchema } from '../proxy/config.ts';
import { SyncSectionSchema } from './sync.ts';

const seconds = (min: number, max: number, def: number) => z.number().int().min(min).max(max).default(def);
const count = (min: number, max: number, def: number) => z.number().int().min(min).max(max).default(def);

export const DNS_TYPE_NAMES = ['ANY', 'AXFR', 'IXFR', 'MAILA', 'MAILB', 'NULL', 'TXT', 'HINFO'] as const;

export const DnsLimitsSchema = z.strictObject({
  maxQueryBytes: count(512, 65535, 4096).describe('Largest query accepted (UDP and TCP).'),
  maxCnameDepth: count(1, 64, 16).describe(
    'CNAMEs followed from the queried name; longer chains get SERVFAIL.',
  ),
  maxAnswerRecords: count(1, 8192, 1000).describe('Records in an answer section; more gets SERVFAIL.'),
  maxPending: count(1, 1_000_000, 10_000).describe('Queries waiting for an upstream, in total.'),
  maxPendingPerSource: count(1, 100_000, 256).describe('Queries waiting for an upstream, per source IP.'),
  ratePerSource: count(1, 1_000_000, 2000).describe('Queries per second per source IP (token bucket rate).'),
  burstPerSource: count(1, 1_000_000, 4000).describe('Token bucket size per source IP.'),
  tcpMaxConnections: count(1, 100_000, 1024),
  tcpMaxConnectionsPerSource: count(1, 10_000, 64),
  tcpMaxInFlightPerConnection: count(1, 1024, 32).describe(
    'Pipelined queries in progress on one connection.',
  ),
  tcpIdleTimeoutMs: count(100, 600_000, 10_000),
});

export const FlowLogSchema = z.strictObject({
  mode: z.enum(['all', 'denied', 'none']).default('all').describe('Which queries get a flow-log line.'),
  path: z.string().optional().describe('A file to append lines to; stdout when absent.'),
});

export const DnsSectionSchema = z.strictObject({
  listen: z
    .array(z.string())
    .min(1)
    .default(['127.0.0.1:53'])
    .describe('Addresses to serve UDP and TCP on: "127.0.0.1:53", "[::1]:53".'),
  upstreams: z.array(z.string()).min(1).max(16).describe('Trusted upstream servers, tried in order.'),
  timeoutMs: count(50, 60_000, 2000).describe('Wait for one upstream attempt.'),
  attempts: count(1, 10, 3).describe('Tries per query, over the upstreams in turn.'),
  holdTimeoutMs: count(1, 10_000, 200).describe(
    'Longest wait for the datapath before an answer is released.',
  ),
  denyResponse: z.enum(['REFUSED', 'NXDOMAIN']).default('REFUSED'),
  passThroughZones: z
    .array(z.string())
    .default([])
    .describe('Zones forwarded for every source without learning (cluster.local, ...).'),
  unknownSources: z
    .enum(['forward', 'refuse'])
    .default('forward')
    .describe('Sources no identity knows: forwarded without learning, or refused.'),
  refusedTypes: z
    .array(z.enum(DNS_TYPE_NAMES))
    .default(['ANY', 'AXFR', 'IXFR', 'MAILA', 'MAILB', 'NULL'])
    .describe('Query types refused for every source.'),
  upstreamSockets: count(1, 1024, 64).describe('UDP sockets per upstream, each on its own random port.'),
  queriesPerSocket: count(1, 1_000_000, 64).describe('Queries sent from one socket before it is replaced.'),
  tcpFallback: z.boolean().default(true).describe('Retry over TCP when an upstream UDP reply is truncated.'),
  recvBufferBytes: count(65_536, 64 * 1024 * 1024, 4 * 1024 * 1024),
  limits: DnsLimitsSchema.prefault({}),
  flowLog: FlowLogSchema.prefault({}),
});

export const TtlSectionSchema = z.strictObject({
  minTTL: seconds(0, 86_400, 30).describe('Seconds; shorter answer TTLs (0 included) are raised to this.'),
  maxTTL: seconds(1, 7 * 86_400, 86_400).describe('Seconds; longer answer TTLs are cut to this.'),
  grace: seconds(0, 3600, 30).describe('Seconds added to every learned element.'),
});

export const CheckpointSchema = z.strictObject({
  path: z.string().describe('Checkpoint file; relative paths are from the config file.'),
  intervalSeconds: seconds(1, 86_400, 30),
  maxBytes: count(1024, 1024 * 1024 * 1024, 64 * 1024 * 1024),
});

export const StoreSectionSchema = z.strictObject({
  maxIpsPerName: count(1, 100_000, 64),
  maxIpsPerSource: count(1, 10_000_000, 4096),
  maxEntries: count(1, 100_000_000, 500_000),
  gcIntervalSeconds: seconds(1, 3600, 10),
  checkpoint: CheckpointSchema.optional(),
});

export const SourceGroupSchema = z.strictObject({
  name: z.string().min(1).max(253),
  namespace: z.string().min(1).max(63).default('default'),
  labels: z.record(z.string(), z.string()).default({}),
  namespaceLabels: z.record(z.string(), z.string()).default({}),
  cidrs: z.array(z.string()).min(1),
});

/** Every section; a component adds its own here. */
export const SECTIONS = {
  dns: DnsSectionSchema,
  ttl: TtlSectionSchema.prefault({}),
  store: StoreSectionSchema.prefault({}),
  sources: z.array(SourceGroupSchema).default([]),
  policies: z.array(z.string()).default([]).describe('Policy files or folders; relative to the config file.'),
  datapath: DatapathSectionSchema.prefault({}),
  http: HttpSectionSchema.prefault({}),
  proxy: ProxySectionSchema.prefault({}),
  kubernetes: KubernetesConfigSchema.optional(),
  /** `namegate sync` only (src/config/sync.ts); the agent ignores it. */
  sync: SyncSectionSchema.optional(),
};

export const AgentConfigSchema = z.strictObject(SECTIONS);

export type AgentConfig = z.output<typeof AgentConfigSchema>;
export type DnsSection = AgentConfig['dns'];
export type DnsLimits = DnsSection['limits'];
export type TtlSection = AgentConfig['ttl'];
export type StoreSection = AgentConfig['store'];
