/**
 * Field names of every decision log line. Dashboards, alerts and tests read these names, so
 * they change only with a release note.
 */
export const F = {
  /** What the line is about: "dns", "flow", "policy", "datapath", ... */
  event: 'event',
  sourceIp: 'src',
  identity: 'identity',
  name: 'qname',
  qtype: 'qtype',
  verdict: 'verdict',
  reason: 'reason',
  policy: 'policy',
  rule: 'rule',
  learned: 'ips',
  ttl: 'ttl',
  rcode: 'rcode',
  durationMs: 'ms',
  destination: 'dst',
  port: 'dport',
  protocol: 'proto',
  error: 'err',
  code: 'code',
  /** Proxies: the TLS server_name, the HTTP Host, the CONNECT authority. */
  sni: 'sni',
  host: 'host',
  authority: 'authority',
  /** Proxies: one id per connection, on its decision and close lines. */
  connection: 'conn',
  bytesUp: 'bytes_up',
  bytesDown: 'bytes_down',
  /** Inspected requests: the method, the path (no query), the HTTP rule that decided, our status. */
  method: 'method',
  path: 'path',
  httpRule: 'http_rule',
  status: 'status',
} as const;
