/**
 * The `dns` section: where the DNS proxy listens, which upstreams it trusts, how it answers
 * denied queries, its limits and its flow log. dnsSettingsFrom() turns it (with the `ttl`,
 * `store` and `datapath.sourceCIDRs` it also depends on) into the proxy's DnsSettings.
 */
import path from 'node:path';
import { z } from 'zod';
import { hostPort, parseHostPort } from '../core/host-port.ts';
import { tryCanonicalName } from '../core/names.ts';
import { unknownScopeFrom } from '../dns/route.ts';
import type { DnsSettings } from '../dns/settings.ts';
import { Rcode, RrType } from '../dns/wire.ts';
import type { ConfigProblem } from './problem.ts';
import { type StoreSection, storeSettingsFrom } from './store.ts';
import type { TtlSection } from './ttl.ts';
import { count } from './units.ts';

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
  maxUnknownHeld: count(1, 100_000, 1024).describe(
    'Queries of unknown sources held at once (unknownHoldMs), in total; more are refused.',
  ),
  maxUnknownHeldPerSource: count(1, 1024, 16).describe('The same, per source address.'),
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
  unknownHoldMs: count(0, 10_000, 2000).describe(
    'Longest wait of a query from an unknown source inside datapath.sourceCIDRs for its identity ' +
      '(a new pod the agent has not seen yet) before it is refused; 0 refuses at once.',
  ),
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

export type DnsSection = z.output<typeof DnsSectionSchema>;
export type DnsLimits = DnsSection['limits'];

/** Meaning beyond the shape: IP-literal addresses with ports, canonical zone names. */
export function dnsSectionProblems(dns: DnsSection): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  dns.listen.forEach((l, i) => {
    const hp = parseHostPort(l);
    if (typeof hp === 'string') problems.push({ path: `dns.listen[${i}]`, message: hp });
  });
  dns.upstreams.forEach((u, i) => {
    const hp = parseHostPort(u);
    if (typeof hp === 'string') problems.push({ path: `dns.upstreams[${i}]`, message: hp });
    else if (hp.port === 0)
      problems.push({ path: `dns.upstreams[${i}]`, message: 'port 0 is not a server port' });
  });
  dns.passThroughZones.forEach((z, i) => {
    const name = tryCanonicalName(z);
    if (typeof name !== 'string')
      problems.push({ path: `dns.passThroughZones[${i}]`, message: name.message });
  });
  return problems;
}

/** The section as the file means it: zones canonical, the flow-log path absolute. */
export function resolveDnsSection(dns: DnsSection, baseDir: string): DnsSection {
  return {
    ...dns,
    passThroughZones: dns.passThroughZones.map((z) => tryCanonicalName(z) as string),
    flowLog:
      dns.flowLog.path === undefined
        ? dns.flowLog
        : { ...dns.flowLog, path: path.resolve(baseDir, dns.flowLog.path) },
  };
}

/** The sections the DNS proxy is built from. */
export interface DnsSettingsSource {
  readonly dns: DnsSection;
  readonly ttl: TtlSection;
  readonly store: StoreSection;
  /** An unknown source inside these is refused (see RouteSettings.unknownScope). */
  readonly datapath: { readonly sourceCIDRs: readonly string[] };
}

/** The DNS proxy's settings from a validated config. */
export function dnsSettingsFrom(config: DnsSettingsSource): DnsSettings {
  const { dns } = config;
  return {
    listen: dns.listen.map((l) => hostPort(l, 'dns.listen', 53)),
    upstream: {
      servers: dns.upstreams.map((u) => hostPort(u, 'dns.upstreams', 53)),
      timeoutMs: dns.timeoutMs,
      attempts: dns.attempts,
      socketsPerServer: dns.upstreamSockets,
      queriesPerSocket: dns.queriesPerSocket,
      tcpFallback: dns.tcpFallback,
    },
    pipeline: {
      passThroughZones: dns.passThroughZones,
      denyRcode: dns.denyResponse === 'NXDOMAIN' ? Rcode.NXDOMAIN : Rcode.REFUSED,
      unknownSources: dns.unknownSources,
      ...unknownScopeFrom(config.datapath.sourceCIDRs),
      maxCnameDepth: dns.limits.maxCnameDepth,
      maxAnswerRecords: dns.limits.maxAnswerRecords,
      maxQueryBytes: dns.limits.maxQueryBytes,
      refusedTypes: new Set(dns.refusedTypes.map((t) => RrType[t])),
      holdTimeoutMs: dns.holdTimeoutMs,
    },
    server: {
      tcpMaxConnections: dns.limits.tcpMaxConnections,
      tcpMaxConnectionsPerSource: dns.limits.tcpMaxConnectionsPerSource,
      tcpMaxInFlightPerConnection: dns.limits.tcpMaxInFlightPerConnection,
      tcpIdleTimeoutMs: dns.limits.tcpIdleTimeoutMs,
      recvBufferBytes: dns.recvBufferBytes,
    },
    pending: { max: dns.limits.maxPending, maxPerSource: dns.limits.maxPendingPerSource },
    unknownHold: {
      timeoutMs: dns.unknownHoldMs,
      max: dns.limits.maxUnknownHeld,
      maxPerSource: dns.limits.maxUnknownHeldPerSource,
    },
    rate: { perSource: dns.limits.ratePerSource, burst: dns.limits.burstPerSource },
    flowLog: { mode: dns.flowLog.mode, path: dns.flowLog.path ?? null },
    store: storeSettingsFrom(config.store, config.ttl),
  };
}
