/**
 * The `proxy` section: the transparent SNI/Host proxy (where verify ports are redirected; the
 * datapath's verifyPort is its port) and the explicit CONNECT proxy. Both are off unless
 * enabled. proxySettingsFrom() builds the proxies' ProxySettings.
 */
import path from 'node:path';
import { z } from 'zod';
import { hostPort } from '../core/host-port.ts';
import type { ProxySettings } from '../proxy/settings.ts';
import { count, ms } from './units.ts';

export const SniProxySchema = z.strictObject({
  enabled: z.boolean().default(false),
  listen: z
    .array(z.string())
    .min(1)
    .max(8)
    .default(['0.0.0.0:15001', '[::]:15001'])
    .describe(
      'Where redirected verify-port connections arrive. REDIRECT rewrites the destination to an address of the incoming interface, so listen on the wildcard of each family, all on one port (that port is the datapath verifyPort).',
    ),
});

export const ConnectProxySchema = z.strictObject({
  enabled: z.boolean().default(false),
  listen: z
    .array(z.string())
    .min(1)
    .max(8)
    .default(['127.0.0.1:3128'])
    .describe('Addresses of the HTTP CONNECT proxy.'),
  tlsPorts: z
    .array(z.number().int().min(1).max(65535))
    .default([443])
    .describe('CONNECT ports whose tunnels must start with a ClientHello naming the CONNECT host (CON-09).'),
  unknownSources: z
    .enum(['deny', 'allow'])
    .default('deny')
    .describe('Clients no identity knows: refused (default), or served like ungoverned ones.'),
});

export const ProxySectionSchema = z.strictObject({
  sni: SniProxySchema.prefault({}),
  connect: ConnectProxySchema.prefault({}),
  peekTimeoutMs: ms(100, 60_000, 5000).describe(
    'Longest wait for a complete ClientHello or request head (TLS-04).',
  ),
  maxHelloBytes: count(512, 65_536, 16_384).describe('Largest ClientHello accepted (TLS-03).'),
  maxHelloRecords: count(1, 1024, 64).describe('Most TLS records a ClientHello may be spread over.'),
  maxHeadBytes: count(1024, 65_536, 16_384).describe('Largest HTTP request head accepted.'),
  maxHeadFields: count(8, 1000, 100),
  connectTimeoutMs: ms(100, 60_000, 5000).describe('Longest wait for the upstream TCP connection.'),
  idleTimeoutMs: ms(1000, 86_400_000, 300_000).describe(
    'A connection silent this long in both directions is closed.',
  ),
  maxConnections: count(1, 1_000_000, 16_384).describe('Open connections per proxy, in total.'),
  maxConnectionsPerSource: count(1, 100_000, 512).describe('Open connections per proxy, per source address.'),
  originalDst: z
    .enum(['auto', 'addon', 'conntrack'])
    .default('auto')
    .describe(
      "How the SNI proxy reads a redirected connection's original destination: the sockopt addon, the conntrack tool, or the addon when it loads. Without either the connection is closed.",
    ),
  flowLog: z
    .strictObject({
      mode: z.enum(['all', 'denied', 'none']).default('all'),
      path: z.string().optional(),
    })
    .prefault({}),
});

export type ProxySection = z.output<typeof ProxySectionSchema>;
export type ProxySectionInput = z.input<typeof ProxySectionSchema>;

/** A relative flow-log path is from the config file's folder. */
export function resolveProxySection(proxy: ProxySection, baseDir: string): ProxySection {
  const p = proxy.flowLog.path;
  return p === undefined
    ? proxy
    : { ...proxy, flowLog: { ...proxy.flowLog, path: path.resolve(baseDir, p) } };
}

/** The proxies' settings from a validated section. */
export function proxySettingsFrom(proxy: ProxySection): ProxySettings {
  return {
    sni: { enabled: proxy.sni.enabled, listen: proxy.sni.listen.map((l) => hostPort(l, 'proxy.sni.listen')) },
    connect: {
      enabled: proxy.connect.enabled,
      listen: proxy.connect.listen.map((l) => hostPort(l, 'proxy.connect.listen')),
      tlsPorts: new Set(proxy.connect.tlsPorts),
      unknownSources: proxy.connect.unknownSources,
    },
    peekTimeoutMs: proxy.peekTimeoutMs,
    hello: { maxHelloBytes: proxy.maxHelloBytes, maxRecords: proxy.maxHelloRecords },
    head: { maxHeadBytes: proxy.maxHeadBytes, maxFields: proxy.maxHeadFields },
    connectTimeoutMs: proxy.connectTimeoutMs,
    idleTimeoutMs: proxy.idleTimeoutMs,
    maxConnections: proxy.maxConnections,
    maxConnectionsPerSource: proxy.maxConnectionsPerSource,
    originalDst: proxy.originalDst,
    flowLog: { mode: proxy.flowLog.mode, path: proxy.flowLog.path ?? null },
  };
}

/** The section with every default (tests and tools that build proxies without a file). */
export function proxyConfig(input: ProxySectionInput = {}): ProxySection {
  return ProxySectionSchema.parse(input);
}

/** Settings from a partial section, every default filled (tests, benchmarks, tools). */
export function proxySettings(input: ProxySectionInput = {}): ProxySettings {
  return proxySettingsFrom(proxyConfig(input));
}
