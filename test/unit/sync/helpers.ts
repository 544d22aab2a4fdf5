/** Policies, groups and a scripted resolver for the sync unit tests. */
import type { AnswerAddress } from '../../../src/dns/answers.ts';
import type { NameResolution, TypeOutcome } from '../../../src/dns/resolve.ts';
import { policy } from '../enforce/helpers.ts';

export { policy };

export function answer(ips: readonly string[], ttl = 60): TypeOutcome {
  const addresses: AnswerAddress[] = ips.map((ip) => ({ ip, family: ip.includes(':') ? 6 : 4, ttl }));
  return { ok: true, rcode: 0, addresses, chain: [] };
}

export const FAILED: TypeOutcome = { ok: false, reason: 'upstream_timeout', detail: 'no answer' };

/** A resolution with these addresses (split by family) and TTL. */
export function resolution(ips: readonly string[], ttl = 60): NameResolution {
  return {
    a: answer(
      ips.filter((ip) => !ip.includes(':')),
      ttl,
    ),
    aaaa: answer(
      ips.filter((ip) => ip.includes(':')),
      ttl,
    ),
  };
}

export const STRIPE = policy(`
apiVersion: namegate.dev/v1alpha1
kind: EgressPolicy
metadata: { name: stripe, namespace: payments }
spec:
  podSelector: { matchLabels: { app: api } }
  egress:
    - toFQDNs: [{ name: api.stripe.com }, { pattern: "*.stripe.com" }]
      ports: [{ port: 443, protocol: TCP }]
    - toCIDRs: [{ cidr: 192.0.2.0/24, except: [192.0.2.128/25] }]
      ports: [{ port: 8443, protocol: TCP }]
`);

export const SETTINGS = {
  windowMs: 600_000,
  maxAddressesPerName: 256,
  concurrency: 4,
  minRefreshMs: 5000,
  maxRefreshMs: 300_000,
  jitter: 0.1,
  failureRetryMs: 5000,
  writeDelayMs: 0,
  ttl: { minTtlSeconds: 30, maxTtlSeconds: 86_400, graceSeconds: 30 },
  statusFile: null,
} as const;

import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../../src/observe/log.ts';

/** A logger whose JSON lines the test reads back. */
export function capturedLog(): { log: Logger; lines: () => Array<Record<string, unknown>> } {
  const out: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out.push(
        ...chunk
          .toString()
          .split('\n')
          .filter((l) => l !== ''),
      );
      cb();
    },
  });
  return {
    log: createLogger('sync', { destination: stream as never }),
    lines: () => out.map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}
