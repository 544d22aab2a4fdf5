/**
 * Micro-benchmark (not a test): the JavaScript cost of one query through the pipeline, with no
 * sockets. The upstream is an in-memory function returning a canned reply, the datapath is the
 * recording one, the policy allows `*.example.test`; NAMES distinct names are asked in turn
 * (steady state: their entries are learned once, then only refreshed).
 *
 *   node bench/dns/pipeline-micro.ts [silent|noop|log]  (NAMES=10000 by default)
 *     silent  no flow log
 *     noop    flow lines built, written nowhere
 *     log     flow lines written to /dev/null through a pino destination (as `namegate dns`)
 */
import dnsPacket from 'dns-packet';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { systemClock } from '../../src/core/clock.ts';
import { RecordingDatapath } from '../../src/datapath/recording.ts';
import { CommitBatcher } from '../../src/dns/commit.ts';
import { FlowLog } from '../../src/dns/flow-log.ts';
import { PendingLimiter, RateLimiter } from '../../src/dns/limits.ts';
import { createDnsMetrics } from '../../src/dns/metrics.ts';
import { Pipeline } from '../../src/dns/pipeline.ts';
import type { Question } from '../../src/dns/wire.ts';
import { validateNative } from '../../src/formats/native.ts';
import { StaticGroups } from '../../src/identity/static-groups.ts';
import type { LineSink } from '../../src/observe/line-sink.ts';
import { silentLogger } from '../../src/observe/log.ts';
import { CompiledPolicies } from '../../src/policy/compile.ts';
import { LearnedStore } from '../../src/store/learned-store.ts';

const mode = process.argv[2] ?? 'log';
const NAMES = Number(process.env['NAMES'] ?? 10_000);
const ROUNDS = 3;
const PER_ROUND = 100_000;

const result = validateNative({
  apiVersion: 'namegate.dev/v1alpha1',
  kind: 'ClusterEgressPolicy',
  metadata: { name: 'micro' },
  spec: { egress: [{ toFQDNs: [{ pattern: '*.example.test' }], ports: [{ port: 443 }] }] },
});
if (!result.policy) throw new Error(JSON.stringify(result.errors));
const set = new CompiledPolicies([result.policy]);

const nameOf = (i: number) => `h${i}.example.test`;
const replies = Array.from({ length: NAMES }, (_, i) =>
  dnsPacket.encode({
    type: 'response',
    id: 1,
    flags: 0x8180,
    questions: [{ type: 'A', name: nameOf(i) }],
    answers: [{ type: 'A', name: nameOf(i), ttl: 300, data: `198.51.${100 + (i >> 8)}.${i & 255}` }],
  }),
);
const queries = Array.from({ length: NAMES }, (_, i) =>
  dnsPacket.encode({ type: 'query', id: 7, flags: 0x0100, questions: [{ type: 'A', name: nameOf(i) }] }),
);

const sink: LineSink | null =
  mode === 'log'
    ? pino.destination({ dest: '/dev/null', sync: false, minLength: 4096 })
    : mode === 'noop'
      ? { write() {} }
      : null;
const datapath = new RecordingDatapath();
const pipeline = new Pipeline({
  settings: {
    passThroughZones: [],
    denyRcode: 5,
    unknownSources: 'forward',
    maxCnameDepth: 16,
    maxAnswerRecords: 1000,
    maxQueryBytes: 4096,
    refusedTypes: new Set([255]),
    holdTimeoutMs: 200,
  },
  policies: { current: () => set },
  identities: new StaticGroups([{ name: 'local', namespace: 'default', labels: {}, cidrs: ['127.0.0.0/8'] }]),
  store: new LearnedStore({
    ttl: { minTtlSeconds: 30, maxTtlSeconds: 86_400, graceSeconds: 30 },
    limits: { maxIpsPerName: 64, maxIpsPerSource: 100_000, maxEntries: 500_000 },
  }),
  upstream: {
    async query(_q: Buffer, question: Question) {
      const i = Number(question.name.slice(1, question.name.indexOf('.')));
      return {
        bytes: Buffer.from(replies[i]!),
        transport: 'udp' as const,
        server: { host: '', port: 0, family: 4 as const },
      };
    },
  },
  commits: new CommitBatcher(datapath, () => systemClock.now()),
  datapath,
  clock: systemClock,
  metrics: createDnsMetrics(new Registry()),
  flowLog: new FlowLog(sink, 'all', Date.now, 32 * 1024),
  rate: new RateLimiter(1e9, 1e9),
  pending: new PendingLimiter(1e6, 1e6),
  log: silentLogger(),
});

for (let round = 0; round < ROUNDS; round++) {
  const started = performance.now();
  for (let i = 0; i < PER_ROUND; i++)
    await pipeline.handle(Buffer.from(queries[i % NAMES]!), '127.0.0.1', 'udp');
  const us = ((performance.now() - started) * 1000) / PER_ROUND;
  console.log(`pipeline (${mode}, ${NAMES} names): ${us.toFixed(2)} us/query`);
}
