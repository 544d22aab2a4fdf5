/**
 * What TLS inspection is built with (src/config/proxy.ts maps the `proxy.inspect` section onto
 * it). Null in ProxySettings.inspect: no inspection CA is configured, and connections that need
 * inspection are refused (`inspection_unavailable`), never passed uninspected.
 */
export interface InspectSettings {
  /** The inspection CA: PEM certificate and key files (a mounted kubernetes.io/tls Secret works). */
  readonly ca: { readonly certFile: string; readonly keyFile: string };
  /** How often the CA files are checked for a rotation. */
  readonly reloadMs: number;
  /** PEM file of the roots destinations must chain to; null: Node's bundled Mozilla roots. */
  readonly upstreamCaFile: string | null;
  readonly leafValiditySeconds: number;
  /** Cached leaf certificates (least recently used first out). */
  readonly maxLeaves: number;
  /** Longest wait for the client's TLS handshake and for the destination's TLS connection. */
  readonly handshakeTimeoutMs: number;
  /** HTTP/2 streams a client may open at once on one inspected connection. */
  readonly maxConcurrentStreams: number;
}
