/**
 * The agent's learning and revocation path inside a network namespace (started with `ip netns
 * exec NS node enforce-host.ts`), driven by JSON lines like driver-host.ts: the real DNS
 * pipeline (with an upstream the test scripts, held until released when asked), the learned
 * store with "in use" read from the namespace's conntrack, the enforcer, and the nftables
 * datapath with the libnftables addon.
 *
 *   open({groups, policies, limits?, inUseMaxAgeMs?})   policies: native YAML documents
 *   answer(name, ips)          what the upstream answers for name from now on
 *   ask(source, name, hold?)   -> {rcode}; with hold the upstream answer waits for release(name)
 *   release(name)              let held answers go
 *   policies(yaml[])           replace the policies (listeners: the enforcer syncs)
 *   sync(reason)               -> the sync's result
 *   learned()                  -> the learned elements the datapath holds
 *   log(reason)                -> the log lines with that reason so far
 */
import { Writable } from 'node:stream';
import { parse } from 'yaml';
import { createAgentMetrics } from '../../../src/agent/metrics.ts';
import { systemClock } from '../../../src/core/clock.ts';
import { Conntrack } from '../../../src/datapath/conntrack.ts';
import { ConntrackInUse } from '../../../src/datapath/in-use.ts';
import { NftDatapath } from '../../../src/datapath/nft-driver.ts';
import { CommitBatcher } from '../../../src/dns/commit.ts';
import { FlowLog } from '../../../src/dns/flow-log.ts';
import { PendingLimiter, RateLimiter } from '../../../src/dns/limits.ts';
import { createDnsMetrics } from '../../../src/dns/metrics.ts';
import { Pipeline } from '../../../src/dns/pipeline.ts';
import type { Question } from '../../../src/dns/wire.ts';
import { Enforcer } from '../../../src/enforce/enforcer.ts';
import { validateNative } from '../../../src/formats/native.ts';
import { type SourceGroup, StaticGroups } from '../../../src/identity/static-groups.ts';
import { createLogger } from '../../../src/observe/log.ts';
import { createRegistry } from '../../../src/observe/metrics.ts';
import { CompiledPolicies } from '../../../src/policy/compile.ts';
import type { Policy } from '../../../src/policy/model.ts';
import { LearnedStore, type StoreLimits } from '../../../src/store/learned-store.ts';
import { A, DEFAULT_SETTINGS, query, reply } from '../../unit/dns/helpers.ts';
import { type Methods, serveJsonLines } from './json-lines-host.ts';

interface Parts {
  readonly datapath: NftDatapath;
  readonly pipeline: Pipeline;
  readonly enforcer: Enforcer;
  setPolicies(yaml: readonly string[]): void;
}

let parts: Parts | null = null;
const logLines: Array<Record<string, unknown>> = [];
const answers = new Map<string, string[]>();
const held = new Map<string, Array<() => void>>();

function need(): Parts {
  if (!parts) throw new Error('open first');
  return parts;
}

function compile(yaml: readonly string[]): CompiledPolicies {
  const out: Policy[] = [];
  for (const doc of yaml) {
    const r = validateNative(parse(doc));
    if (!r.policy) throw new Error(`invalid policy: ${JSON.stringify(r.errors)}`);
    out.push(r.policy);
  }
  return new CompiledPolicies(out);
}

async function open(o: {
  groups: SourceGroup[];
  policies: string[];
  limits?: StoreLimits;
  inUseMaxAgeMs?: number;
}): Promise<string> {
  const clock = systemClock;
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l !== '') logLines.push(JSON.parse(l));
      cb();
    },
  });
  const log = createLogger('enforce-host', { destination: sink as never });
  const datapath = await NftDatapath.open({ executor: 'addon', logger: log, clock });
  const identities = new StaticGroups(o.groups);
  let set = compile(o.policies);
  const listeners: Array<(s: CompiledPolicies) => void> = [];
  const policies = {
    current: () => set,
    onChange: (l: (s: CompiledPolicies) => void) => {
      listeners.push(l);
      return () => {};
    },
  };
  const inUse = new ConntrackInUse({
    conntrack: new Conntrack({ timeoutMs: 1000 }),
    clock,
    log,
    sourcesOf: (ip) => identities.siblings(ip),
    ...(o.inUseMaxAgeMs !== undefined ? { maxAgeMs: o.inUseMaxAgeMs } : {}),
  });
  const store = new LearnedStore({
    ttl: { minTtlSeconds: 30, maxTtlSeconds: 3600, graceSeconds: 10 },
    ...(o.limits ? { limits: o.limits } : {}),
    inUse: inUse.inUse,
  });
  const registry = createRegistry();
  const enforcer = new Enforcer({
    datapath,
    store: () => store,
    identities,
    policies,
    clock,
    log,
    metrics: createAgentMetrics(registry),
  });
  const pipeline = new Pipeline({
    settings: { ...DEFAULT_SETTINGS, holdTimeoutMs: 5_000 },
    policies,
    identities,
    store,
    upstream: {
      async query(_q: Buffer, question: Question) {
        const waiting = held.get(question.name);
        if (waiting) await new Promise<void>((r) => waiting.push(r));
        const ips = answers.get(question.name) ?? [];
        const bytes = Buffer.from(
          reply(
            question.name,
            'A',
            ips.map((ip) => A(question.name, ip)),
          ),
        );
        bytes.writeUInt16BE(_q.readUInt16BE(0), 0);
        return { bytes, transport: 'udp', server: { host: '192.0.2.53', port: 53, family: 4 } };
      },
    },
    commits: new CommitBatcher(datapath, () => clock.now()),
    datapath,
    clock,
    metrics: createDnsMetrics(registry),
    flowLog: new FlowLog(null, 'none', () => clock.wallNow()),
    rate: new RateLimiter(1000, 1000),
    pending: new PendingLimiter(100, 100),
    log,
    inUse,
  });
  await enforcer.sync('startup');
  parts = {
    datapath,
    pipeline,
    enforcer,
    setPolicies: (yaml) => {
      set = compile(yaml);
      for (const l of listeners) l(set);
    },
  };
  return datapath.executorKind;
}

const methods: Methods = {
  open,
  answer: async (name: string, ips: string[]) => {
    answers.set(name, ips);
  },
  ask: async (source: string, name: string, hold = false) => {
    if (hold && !held.has(name)) held.set(name, []);
    const r = await need().pipeline.handle(query(name), source, 'udp');
    return { rcode: r ? r[3]! & 0xf : null };
  },
  /** How many asks for name wait at the upstream now. */
  heldCount: async (name: string) => held.get(name)?.length ?? 0,
  release: async (name: string) => {
    const waiting = held.get(name) ?? [];
    held.delete(name);
    for (const w of waiting) w();
  },
  policies: async (yaml: string[]) => need().setPolicies(yaml),
  sync: (reason: string) => need().enforcer.sync(reason),
  learned: () => need().datapath.listLearned(),
  idle: () => need().datapath.idle(),
  log: async (reason: string) => logLines.filter((l) => l['reason'] === reason),
  close: async () => {
    await parts?.datapath.close();
    parts = null;
  },
};

serveJsonLines(methods, async () => {
  await parts?.datapath.close();
});
