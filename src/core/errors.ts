/**
 * Errors with stable codes. Callers match on `code`, never on message text; the codes are
 * listed in docs/errors.md.
 */

export const ErrorCode = {
  /** A domain name failed canonicalization. */
  NameInvalid: 'NG_NAME_INVALID',
  /** A pattern (exact, `*.`, `**.` or a foreign form) is not acceptable. */
  PatternInvalid: 'NG_PATTERN_INVALID',
  /** A policy document failed validation. */
  PolicyInvalid: 'NG_POLICY_INVALID',
  /** A document could not be read or parsed (YAML, JSON, unknown kind). */
  DocumentInvalid: 'NG_DOCUMENT_INVALID',
  /** A configuration file is invalid. */
  ConfigInvalid: 'NG_CONFIG_INVALID',
  /** A command-line argument is invalid. */
  UsageInvalid: 'NG_USAGE_INVALID',
  /** A DNS message could not be parsed. */
  DnsMalformed: 'NG_DNS_MALFORMED',
  /** An upstream DNS server did not answer in time. */
  DnsUpstreamTimeout: 'NG_DNS_UPSTREAM_TIMEOUT',
  /** No upstream DNS server gave a usable answer. */
  DnsUpstreamFailed: 'NG_DNS_UPSTREAM_FAILED',
  /** The datapath could not commit a change. */
  DatapathCommit: 'NG_DATAPATH_COMMIT',
  /** The datapath did not commit within the bounded wait. */
  DatapathTimeout: 'NG_DATAPATH_TIMEOUT',
  /** A checkpoint file is corrupt or from an incompatible version. */
  CheckpointInvalid: 'NG_CHECKPOINT_INVALID',
  /** A bounded resource (queue, map, rate) is full. */
  LimitExceeded: 'NG_LIMIT_EXCEEDED',
  /** An external command (nft, ip, knotc...) failed. */
  CommandFailed: 'NG_COMMAND_FAILED',
  /** Kernel flow events (NFLOG) could not be read: no addon or tcpdump, group busy, no permission. */
  FlowEventsUnavailable: 'NG_FLOW_EVENTS_UNAVAILABLE',
  /** A flow API call (local agent or through the API server's pod proxy) failed. */
  FlowApi: 'NG_FLOW_API',
  /** A Kubernetes API call failed. */
  KubernetesApi: 'NG_KUBERNETES_API',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class NamegateError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NamegateError';
    this.code = code;
  }
}

export function isNamegateError(err: unknown, code?: ErrorCode): err is NamegateError {
  return err instanceof NamegateError && (code === undefined || err.code === code);
}

/** The message of anything thrown, for logs. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
