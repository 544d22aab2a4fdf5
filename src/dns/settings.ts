/**
 * Everything the DNS proxy is built with, already validated and in the units it uses (parsed
 * addresses, milliseconds, rcodes, type numbers). src/config/dns.ts builds it from the config
 * file's `dns`, `ttl`, `store` and `datapath.sourceCIDRs`; tests and benchmarks build it the same
 * way. The proxy never sees the config file's shape.
 */
import type { HostPort } from '../core/host-port.ts';
import type { FlowLogMode } from '../observe/line-sink.ts';
import type { StoreSettings } from '../store/settings.ts';
import type { PipelineSettings } from './pipeline.ts';
import type { ServerLimits } from './server.ts';
import type { UnknownHoldSettings } from './unknown-hold.ts';
import type { UpstreamOptions } from './upstream.ts';

/** The trusted upstreams and how they are asked (the DNS proxy's, and the CONNECT proxy's resolver's). */
export type UpstreamSettings = Omit<UpstreamOptions, 'ids' | 'now' | 'observe'>;

export interface DnsSettings {
  /** UDP and TCP listen addresses. */
  readonly listen: readonly HostPort[];
  readonly upstream: UpstreamSettings;
  readonly pipeline: PipelineSettings;
  readonly server: ServerLimits;
  /** Queries waiting for an upstream, in total and per source. */
  readonly pending: { readonly max: number; readonly maxPerSource: number };
  /** Queries of unknown sources inside the source CIDRs wait this long for an identity. */
  readonly unknownHold: UnknownHoldSettings;
  /** Per-source token bucket: queries per second and bucket size. */
  readonly rate: { readonly perSource: number; readonly burst: number };
  /** Which queries get a flow-log line, and the file they go to (null: stdout). */
  readonly flowLog: { readonly mode: FlowLogMode; readonly path: string | null };
  readonly store: StoreSettings;
}
