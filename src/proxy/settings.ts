/**
 * What the SNI/Host proxy and the CONNECT proxy are built with, validated and parsed.
 * src/config/proxy.ts builds it from the `proxy` section (proxySettings() also fills every
 * default, for tests and tools that build proxies without a config file).
 */
import type { HostPort } from '../core/host-port.ts';
import type { FlowLogMode } from '../observe/line-sink.ts';
import type { HelloLimits } from './client-hello.ts';
import type { HeadLimits } from './http-head.ts';
import type { OriginalDstMethod } from './original-dst.ts';

export interface ProxySettings {
  readonly sni: { readonly enabled: boolean; readonly listen: readonly HostPort[] };
  readonly connect: {
    readonly enabled: boolean;
    readonly listen: readonly HostPort[];
    /** CONNECT ports whose tunnels must start with a ClientHello naming the CONNECT host. */
    readonly tlsPorts: ReadonlySet<number>;
    /** Clients no identity knows: refused, or served like ungoverned ones. */
    readonly unknownSources: 'deny' | 'allow';
  };
  /** Longest wait for a complete ClientHello or request head. */
  readonly peekTimeoutMs: number;
  readonly hello: HelloLimits;
  readonly head: HeadLimits;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** Open connections per proxy, in total and per source address. */
  readonly maxConnections: number;
  readonly maxConnectionsPerSource: number;
  readonly originalDst: OriginalDstMethod;
  /** Which connections get flow-log lines, and the file (null: the DNS flow log's, or stdout). */
  readonly flowLog: { readonly mode: FlowLogMode; readonly path: string | null };
}
