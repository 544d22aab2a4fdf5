/**
 * Test helpers for the DNS proxy: message builders (dns-packet for well-formed messages, raw
 * bytes for malformed ones) and a pipeline harness with a programmable upstream, the recording
 * datapath, a manual clock and a flow log that keeps its lines.
 */
import dnsPacket from 'dns-packet';
import { Registry } from 'prom-client';
import { ManualClock } from '../../../src/core/clock.ts';
import { RecordingDatapath } from '../../../src/datapath/recording.ts';
import { CommitBatcher } from '../../../src/dns/commit.ts';
import { FlowLog } from '../../../src/dns/flow-log.ts';
import { PendingLimiter, RateLimiter } from '../../../src/dns/limits.ts';
import { replyMismatch } from '../../../src/dns/message.ts';
import { createDnsMetrics, type DnsMetrics } from '../../../src/dns/metrics.ts';
import { Pipeline, type PipelineSettings } from '../../../src/dns/pipeline.ts';
import { UnknownHold, type UnknownHoldDeps } from '../../../src/dns/unknown-hold.ts';
import { UpstreamError, type UpstreamReply } from '../../../src/dns/upstream.ts';
import type { Question } from '../../../src/dns/wire.ts';
import { validateNative } from '../../../src/formats/native.ts';
import type { IdentityProvider } from '../../../src/identity/identity.ts';
import { type SourceGroup, StaticGroups } from '../../../src/identity/static-groups.ts';
import { silentLogger } from '../../../src/observe/log.ts';
import { CompiledPolicies } from '../../../src/policy/compile.ts';
import type { Policy } from '../../../src/policy/model.ts';
import { type InUseSource, LearnedStore, type StoreLimits } from '../../../src/store/learned-store.ts';
import type { TtlPolicy } from '../../../src/store/ttl.ts';

export type Answer = dnsPacket.Answer;

export function query(name: string, type: string = 'A', opts: { id?: number; edns?: number } = {}): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id: opts.id ?? 0x1234,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: type as dnsPacket.RecordType, name }],
    ...(opts.edns !== undefined
      ? {
          additionals: [
            {
              type: 'OPT',
              name: '.',
              udpPayloadSize: opts.edns,
              flags: 0,
              options: [],
            } as unknown as dnsPacket.Answer,
          ],
        }
      : {}),
  });
}

export function reply(
  name: string,
  type: string,
  answers: Answer[],
  opts: { id?: number; rcode?: number; tc?: boolean } = {},
): Buffer {
  const flags = 0x8180 | (opts.tc ? 0x0200 : 0) | (opts.rcode ?? 0);
  return dnsPacket.encode({
    type: 'response',
    id: opts.id ?? 0,
    flags,
    questions: [{ type: type as dnsPacket.RecordType, name }],
    answers,
  });
}

export const A = (name: string, ip: string, ttl = 300): Answer => ({ type: 'A', name, ttl, data: ip });
export const AAAA = (name: string, ip: string, ttl = 300): Answer => ({ type: 'AAAA', name, ttl, data: ip });
export const CNAME = (name: string, target: string, ttl = 300): Answer => ({
  type: 'CNAME',
  name,
  ttl,
  data: target,
});

/** HTTPS (65) or SVCB (64) rdata: priority, uncompressed target, params in the order given. */
export function svcbRdata(priority: number, target: string, params: Array<[number, Buffer]>): Buffer {
  const labels = target === '.' || target === '' ? [] : target.split('.');
  const parts: Buffer[] = [Buffer.from([priority >> 8, priority & 0xff])];
  for (const l of labels) parts.push(Buffer.from([l.length]), Buffer.from(l, 'latin1'));
  parts.push(Buffer.from([0]));
  for (const [key, value] of params) {
    parts.push(Buffer.from([key >> 8, key & 0xff, value.length >> 8, value.length & 0xff]), value);
  }
  return Buffer.concat(parts);
}

export function ipv4Hint(...ips: string[]): [number, Buffer] {
  return [4, Buffer.from(ips.flatMap((ip) => ip.split('.').map(Number)))];
}

export const HTTPS = (name: string, rdata: Buffer, ttl = 300): Answer =>
  ({ type: 'UNKNOWN_65', name, ttl, data: rdata }) as unknown as Answer;

export function policy(spec: object, name = 'p', kind = 'ClusterEgressPolicy', namespace?: string): Policy {
  const result = validateNative({
    apiVersion: 'namegate.dev/v1alpha1',
    kind,
    metadata: { name, ...(namespace ? { namespace } : {}) },
    spec,
  });
  if (!result.policy) throw new Error(JSON.stringify(result.errors));
  return result.policy;
}

export interface Upstreamed {
  query: Buffer;
  question: Question;
  tcp: boolean;
}

export type UpstreamFn = (u: Upstreamed) => Buffer | Promise<Buffer>;

export interface Harness {
  readonly pipeline: Pipeline;
  readonly datapath: RecordingDatapath;
  readonly store: LearnedStore;
  readonly clock: ManualClock;
  readonly lines: Array<Record<string, unknown>>;
  readonly metrics: DnsMetrics;
  readonly registry: Registry;
  readonly upstreamCalls: Upstreamed[];
  upstream: UpstreamFn;
  policies: CompiledPolicies;
  /** Send a query from `src`; the reply decoded (or null when dropped). */
  ask(src: string, msg: Buffer, transport?: 'udp' | 'tcp'): Promise<Buffer | null>;
  metric(name: string, labels?: Record<string, string>): Promise<number>;
}

export const DEFAULT_SETTINGS: PipelineSettings = {
  passThroughZones: ['cluster.local'],
  denyRcode: 5,
  unknownSources: 'forward',
  maxCnameDepth: 16,
  maxAnswerRecords: 1000,
  maxQueryBytes: 4096,
  refusedTypes: new Set([255, 252, 251, 253, 254, 10]),
  // A real timer: on a loaded machine 100 ms passed before the recording datapath's commit and
  // released answers unlearned. Tests of the hold's bound set a short one of their own.
  holdTimeoutMs: 10_000,
};

export const GROUPS: SourceGroup[] = [
  { name: 'web', namespace: 'shop', labels: { app: 'web' }, cidrs: ['10.0.1.0/24', 'fd00:1::/64'] },
  { name: 'batch', namespace: 'shop', labels: { app: 'batch' }, cidrs: ['10.0.2.0/24'] },
  { name: 'audit', namespace: 'lab', labels: { app: 'audit' }, cidrs: ['10.0.3.0/24'] },
  { name: 'free', namespace: 'free', labels: {}, cidrs: ['10.0.9.0/24'] },
];

/** Web may resolve api.example.com and **.cdn.example.net on 443; audit namespace is in Audit. */
export const POLICIES = (): Policy[] => [
  policy(
    {
      podSelector: { matchLabels: { app: 'web' } },
      egress: [
        {
          toFQDNs: [
            { name: 'api.example.com' },
            { pattern: '**.cdn.example.net' },
            { name: 'private.example.com' },
          ],
          ports: [{ port: 443 }],
        },
        { toFQDNs: [{ name: 'mixed.example.com' }], ports: [{ port: 80 }, { port: 8000, endPort: 8080 }] },
        { toCIDRs: [{ cidr: '10.99.0.0/16' }], ports: [{ port: 443 }] },
      ],
    },
    'web',
    'EgressPolicy',
    'shop',
  ),
  policy(
    { podSelector: { matchLabels: { app: 'batch' } }, egress: [{ toFQDNs: [{ name: 'api.example.com' }] }] },
    'batch',
    'EgressPolicy',
    'shop',
  ),
  policy(
    { mode: 'Audit', egress: [{ toFQDNs: [{ name: 'api.example.com' }], ports: [{ port: 443 }] }] },
    'audit',
    'EgressPolicy',
    'lab',
  ),
];

export function harness(
  opts: {
    settings?: Partial<PipelineSettings>;
    ttl?: TtlPolicy;
    limits?: StoreLimits;
    rate?: [number, number];
    pending?: [number, number];
    inUse?: (source: string, ip: string) => boolean;
    /** Read ahead before an answer that has to make room (the agent's conntrack listing). */
    inUseSource?: InUseSource;
    policies?: Policy[];
    identities?: IdentityProvider;
    /** An unknown-source hold over the harness's identities (src/dns/unknown-hold.ts). */
    unknownHold?: Omit<UnknownHoldDeps, 'identities'>;
  } = {},
): Harness {
  const clock = new ManualClock();
  const registry = new Registry();
  const metrics = createDnsMetrics(registry);
  const datapath = new RecordingDatapath(clock);
  const store = new LearnedStore({
    ttl: opts.ttl ?? { minTtlSeconds: 30, maxTtlSeconds: 86_400, graceSeconds: 30 },
    ...(opts.limits ? { limits: opts.limits } : {}),
    ...(opts.inUse ? { inUse: opts.inUse } : {}),
    ...(opts.inUseSource ? { inUse: opts.inUseSource.inUse } : {}),
  });
  const lines: Array<Record<string, unknown>> = [];
  const upstreamCalls: Upstreamed[] = [];
  const h = {
    datapath,
    store,
    clock,
    lines,
    metrics,
    registry,
    upstreamCalls,
    upstream: ((u: Upstreamed) => reply(u.question.name, 'A', [])) as UpstreamFn,
    policies: new CompiledPolicies(opts.policies ?? POLICIES()),
  } as Harness;
  const identities = opts.identities ?? new StaticGroups(GROUPS);
  const pipeline = new Pipeline({
    settings: { ...DEFAULT_SETTINGS, ...opts.settings },
    policies: { current: () => h.policies },
    identities,
    ...(opts.unknownHold ? { unknownHold: new UnknownHold({ ...opts.unknownHold, identities }) } : {}),
    store,
    upstream: {
      async query(q: Buffer, question: Question, tcp: boolean): Promise<UpstreamReply> {
        const u = { query: Buffer.from(q), question, tcp };
        upstreamCalls.push(u);
        const bytes = Buffer.from(await h.upstream(u));
        // A real upstream echoes the ID it was sent; the real client drops replies to other questions.
        bytes.writeUInt16BE(q.readUInt16BE(0), 0);
        if (replyMismatch(bytes, question) !== null)
          throw new UpstreamError('upstream_failed', 'mismatched reply');
        return { bytes, transport: tcp ? 'tcp' : 'udp', server: { host: '192.0.2.53', port: 53, family: 4 } };
      },
    },
    commits: new CommitBatcher(datapath, () => clock.now()),
    datapath,
    clock,
    metrics,
    flowLog: new FlowLog({ write: (line: string) => lines.push(JSON.parse(line)) }, 'all', () =>
      clock.wallNow(),
    ),
    rate: new RateLimiter(...(opts.rate ?? [1000, 1000])),
    pending: new PendingLimiter(...(opts.pending ?? [100, 100])),
    log: silentLogger(),
    ...(opts.inUseSource ? { inUse: opts.inUseSource } : {}),
  });
  Object.assign(h, {
    pipeline,
    ask: (src: string, msg: Buffer, transport: 'udp' | 'tcp' = 'udp') => pipeline.handle(msg, src, transport),
    metric: async (name: string, labels: Record<string, string> = {}) => {
      const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
      if (!m) return 0;
      return (m.values as Array<{ value: number; labels: Record<string, string> }>)
        .filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val))
        .reduce((a, v) => a + v.value, 0);
    },
  });
  return h;
}

export type Decoded = dnsPacket.DecodedPacket & {
  rcode: string;
  answers: Array<dnsPacket.Answer & { data?: unknown }>;
};

export function decode(buf: Buffer | null): Decoded {
  if (!buf) throw new Error('no reply');
  return dnsPacket.decode(buf) as Decoded;
}

export function rcodeOf(buf: Buffer | null): number {
  if (!buf) throw new Error('no reply');
  return buf[3]! & 0xf;
}

/** The EDE option of a reply, if any: [info code, text]. */
export function edeOf(buf: Buffer | null): [number, string] | null {
  const p = decode(buf);
  for (const a of p.additionals ?? []) {
    if (a.type !== 'OPT') continue;
    for (const o of (a as { options?: Array<{ code: number; data?: Buffer }> }).options ?? []) {
      if (o.code === 15 && o.data) return [o.data.readUInt16BE(0), o.data.subarray(2).toString('utf8')];
    }
  }
  return null;
}
