/**
 * The agent: the one place where namegate's parts are built from the config file and wired
 * into a running process. `namegate agent` runs it; `namegate dns` runs the same wiring with
 * the datapath off (the recording datapath, nothing in the kernel changes) and without the
 * SNI/CONNECT proxies, so durability (checkpoint, synchronous flow log), health and metrics are
 * the same in both. Every part can be replaced through the options (tests pass a recording
 * datapath, a Kubernetes identity provider, ...).
 *
 * Startup order (each step needs the one before):
 *   1. policies load (files or the API); invalid first load -> no start (fail closed: the kernel
 *      keeps what an earlier agent programmed, new DNS fails because nothing answers)
 *   2. identities (static groups or pods from the API, synced)
 *   3. the datapath opens and reconciles the static state by difference (never a flush)
 *   4. the DNS proxy restores its checkpoint into the kernel (and removes, flows included, the
 *      elements the restored state no longer justifies), then opens its sockets
 *   5. the SNI/Host and CONNECT proxies, when enabled
 *   6. the enforcer's first full sync, then it follows policy and identity changes
 *   7. /metrics, /healthz and /readyz; /readyz says ready once step 6 is done
 * Shutdown (SIGTERM): the DNS proxy writes a last checkpoint and closes; the kernel table stays,
 * so learned and established traffic keeps flowing and new DNS fails closed until the next start.
 */
import path from 'node:path';
import type { Registry } from 'prom-client';
import { datapathSettingsFrom, unknownSourcesWarning } from '../config/datapath.ts';
import { dnsSettingsFrom } from '../config/dns.ts';
import { httpListenFrom } from '../config/http.ts';
import { kubernetesSettingsFrom } from '../config/kubernetes.ts';
import { observeSettingsFrom } from '../config/observe.ts';
import { proxySettingsFrom } from '../config/proxy.ts';
import type { AgentConfig } from '../config/schema.ts';
import { sourceGroupsFrom } from '../config/sources.ts';
import { type Clock, systemClock } from '../core/clock.ts';
import { errorMessage } from '../core/errors.ts';
import { Conntrack } from '../datapath/conntrack.ts';
import type { Datapath } from '../datapath/datapath.ts';
import { ConntrackInUse } from '../datapath/in-use.ts';
import { DatapathMetrics } from '../datapath/metrics.ts';
import { NftDatapath } from '../datapath/nft-driver.ts';
import { RecordingDatapath } from '../datapath/recording.ts';
import { DnsProxy, upstreamFrom } from '../dns/proxy.ts';
import { Enforcer } from '../enforce/enforcer.ts';
import { AgentFlows } from '../flows/agent-flows.ts';
import type { IdentityProvider } from '../identity/identity.ts';
import { StaticGroups } from '../identity/static-groups.ts';
import { F } from '../observe/fields.ts';
import { HealthServer, type ReadinessCheck } from '../observe/http.ts';
import { createLineSink, type LineSink } from '../observe/line-sink.ts';
import { createLogger, type Logger } from '../observe/log.ts';
import { createRegistry } from '../observe/metrics.ts';
import type { PolicySource } from '../policy/source.ts';
import { ConnectProxy } from '../proxy/connect-proxy.ts';
import type { Inspector } from '../proxy/inspect/inspector.ts';
import { originalDestinationFor } from '../proxy/original-dst.ts';
import { UpstreamResolver } from '../proxy/resolver.ts';
import type { ProxySettings } from '../proxy/settings.ts';
import { SniProxy } from '../proxy/sni-proxy.ts';
import type { LearnedView } from '../proxy/verdict.ts';
import { proposeRule } from '../recommend/propose.ts';
import type { InUseSource, LearnedStore } from '../store/learned-store.ts';
import { combinedView, PeerEntries } from '../store/peer-view.ts';
import { maxTimeoutMs, timeoutMsFor } from '../store/ttl.ts';
import { Cleanups } from './cleanups.ts';
import { kubernetesSources } from './kubernetes.ts';
import { type AgentMetrics, createAgentMetrics } from './metrics.ts';
import { PeerFeed } from './peer-feed.ts';
import { PolicyFiles } from './policy-files.ts';

export interface AgentOptions {
  readonly config: AgentConfig;
  readonly registry?: Registry;
  readonly log?: Logger;
  readonly clock?: Clock;
  /** Replace the parts the config would build. */
  readonly datapath?: Datapath;
  readonly identities?: IdentityProvider;
  readonly policies?: PolicySource;
  /** Flow log sink (DNS and proxies); default: the configured files, else stdout. */
  readonly flowLog?: LineSink | null;
  /** Override http.listen ("host:port"; port 0 picks one); null: no HTTP listener. */
  readonly httpListen?: string | null;
  /** Also serve /readyz, /healthz and /metrics on this Unix socket (a pod-local probe). */
  readonly healthSocket?: string;
  /**
   * `namegate dns`: the recording datapath whatever datapath.driver says (the kernel is never
   * touched) and no SNI/CONNECT proxy.
   */
  readonly dnsOnly?: boolean;
}

export interface RunningAgent {
  readonly dns: DnsProxy;
  /** Flow events: history, followers, statistics, kernel events (src/flows). */
  readonly flows: AgentFlows;
  readonly datapath: Datapath;
  readonly enforcer: Enforcer;
  readonly registry: Registry;
  /** Where /metrics, /healthz and /readyz answer, when listening. */
  readonly http: { host: string; port: number } | null;
  ready(): boolean;
  /** Read the policy files again now (SIGHUP); no-op when policies come from elsewhere. */
  reloadPolicies(): Promise<void>;
  stop(): Promise<void>;
}

/** What every step is given: the config, the shared plumbing and where to register cleanups. */
interface Wiring {
  readonly config: AgentConfig;
  readonly options: AgentOptions;
  readonly clock: Clock;
  readonly log: Logger;
  readonly registry: Registry;
  readonly metrics: AgentMetrics;
  readonly cleanups: Cleanups;
  readonly readiness: ReadinessCheck[];
}

interface Sources {
  readonly policies: PolicySource;
  readonly identities: IdentityProvider;
  /** Set when the policies come from files (SIGHUP reloads them). */
  readonly files: PolicyFiles | null;
}

export async function startAgent(options: AgentOptions): Promise<RunningAgent> {
  const registry = options.registry ?? createRegistry({ defaultMetrics: true });
  const w: Wiring = {
    config: options.config,
    options,
    clock: options.clock ?? systemClock,
    log: options.log ?? createLogger('agent'),
    registry,
    metrics: createAgentMetrics(registry),
    cleanups: new Cleanups(),
    readiness: [],
  };
  try {
    const sources = await startSources(w);
    const { datapath, inUse } = await openDatapath(w, sources);
    let dns: DnsProxy | null = null;
    const enforcer = new Enforcer({
      datapath,
      store: () => dns?.store ?? null,
      identities: sources.identities,
      policies: sources.policies,
      clock: w.clock,
      log: w.log.child({ component: 'enforce' }),
      metrics: w.metrics,
    });
    await enforcer.sync('startup-static');
    const fileSink =
      options.flowLog === undefined ? flowSink(dnsSettingsFrom(w.config).flowLog) : options.flowLog;
    const flows = startFlows(w, sources, fileSink);
    const peer = peerFeed(w);
    dns = await startDns(w, sources, datapath, fileSink, flows, inUse, peer, () =>
      enforcer.syncAfter('unknown_hold'),
    );
    const learned = peer ? combinedView(dns.store, peer.entries) : dns.store;
    if (!options.dnsOnly) await startProxies(w, sources, learned, flows);
    await followChanges(w, sources, enforcer, peer?.entries ?? null);
    flows.followIdentities();
    // Kernel events only where there is a kernel datapath to log them.
    if (datapath instanceof NftDatapath) await flows.startKernelEvents();
    const http = await serveHealth(w, sources, dns, flows);
    w.log.info({ [F.event]: 'agent', [F.reason]: 'started', http }, 'namegate agent running');
    return running(w, { dns, flows, datapath, enforcer, http, files: sources.files });
  } catch (err) {
    await w.cleanups.run(w.log);
    throw err;
  }
}

/** Steps 1 and 2: policies (files or the API; an invalid first load stops the start) and identities. */
async function startSources(w: Wiring): Promise<Sources> {
  const { config, options, log, metrics } = w;
  let policies = options.policies;
  let identities = options.identities;
  let files: PolicyFiles | null = null;
  if (config.kubernetes && (!policies || !identities)) {
    const kube = await kubernetesSources(kubernetesSettingsFrom(config.kubernetes), w.registry, log);
    w.cleanups.add(() => kube.stop());
    w.readiness.push({ name: 'kubernetes', check: () => kube.notReadyReason() });
    policies ??= kube.policies;
    identities ??= kube.identities;
  }
  if (!policies) {
    files = new PolicyFiles({
      paths: config.policies,
      logger: log.child({ component: 'policy' }),
      onRejected: () => metrics.policyReloads.inc({ result: 'rejected' }),
    });
    const first = await files.reload();
    if (!first.ok) {
      throw new Error(`policies are invalid (${first.errors.length} problem(s) logged); not starting`);
    }
    await files.watch();
    const watched = files;
    w.cleanups.add(() => watched.close());
    policies = files;
  }
  identities ??= new StaticGroups(sourceGroupsFrom(config.sources));
  metrics.policies.set(policies.current().size);
  return { policies, identities, files };
}

/**
 * Step 3: the datapath the config (or the caller) asks for; warns about ungoverned addresses.
 * With the nftables datapath, what is in use comes from conntrack (the store never evicts it).
 */
async function openDatapath(
  w: Wiring,
  sources: Sources,
): Promise<{ datapath: Datapath; inUse: InUseSource | null }> {
  const { config, options, clock, log } = w;
  let datapath = options.datapath;
  let inUse: InUseSource | null = null;
  if (!datapath) {
    const settings = datapathSettingsFrom(config);
    if (settings.driver === 'recording' || options.dnsOnly) {
      datapath = new RecordingDatapath(clock);
    } else {
      const metrics = new DatapathMetrics(w.registry);
      const nft = await NftDatapath.open({
        config: settings.nft,
        executor: settings.executor,
        clock,
        logger: log.child({ component: 'datapath' }),
        metrics,
      });
      metrics.readDrops = () => nft.readDropCounters();
      datapath = nft;
      const identities = sources.identities;
      inUse = new ConntrackInUse({
        conntrack: new Conntrack({ timeoutMs: IN_USE_READ_TIMEOUT_MS }),
        clock,
        log: log.child({ component: 'datapath' }),
        sourcesOf: (ip) => identities.siblings?.(ip) ?? [ip],
        reads: metrics.inUseReads,
      });
    }
    const warning = unknownSourcesWarning(config);
    if (warning && !options.dnsOnly)
      log.warn({ [F.event]: 'datapath', [F.reason]: warning.reason }, warning.message);
  }
  const dp = datapath;
  w.cleanups.add(() => dp.close());
  return { datapath: dp, inUse };
}

/**
 * How long the proxies give open connections to finish when the agent stops (a rolling update:
 * the new agent already accepts; well inside the chart's 30 s terminationGracePeriodSeconds).
 */
const PROXY_DRAIN_MS = 10_000;

/** A conntrack listing before an eviction waits at most this long (the answer waits for it). */
const IN_USE_READ_TIMEOUT_MS = 1000;

/**
 * Step 3b: flow events (src/flows): the history and followers of the flow API, the dashboard's
 * statistics, the memory of learned names, per-policy counters; kernel events start in step 6.
 */
function startFlows(w: Wiring, sources: Sources, file: LineSink | null): AgentFlows {
  const dns = dnsSettingsFrom(w.config);
  const proxy = proxySettingsFrom(w.config.proxy);
  const files = [dns.flowLog.path, proxy.flowLog.path].filter((p): p is string => typeof p === 'string');
  const flows = new AgentFlows({
    settings: observeSettingsFrom(w.config.observe),
    identities: sources.identities,
    policies: () => sources.policies.current(),
    timeoutMs: (ttl) => timeoutMsFor(ttl, dns.store.ttl),
    registry: w.registry,
    file,
    files: [...new Set(files)],
    log: w.log.child({ component: 'flows' }),
    now: () => w.clock.wallNow(),
    propose: proposeRule,
  });
  w.cleanups.add(() => flows.stop());
  return flows;
}

interface Peer {
  readonly feed: PeerFeed;
  readonly entries: PeerEntries;
}

/**
 * Step 3c: what the other agent on this node learns, shared both ways while a rolling update
 * runs two agents (REL-11, peer-feed.ts). The sockets live beside the checkpoint (the state
 * hostPath both pods mount); without a checkpoint, or with no proxy to use it, there is none.
 * Its cleanup is registered before the DNS proxy's, so it runs after it: the last answers of a
 * stopping agent still reach the other one.
 */
function peerFeed(w: Wiring): Peer | null {
  const store = dnsSettingsFrom(w.config).store;
  if (!store.checkpoint || w.options.dnsOnly) return null;
  const entries = new PeerEntries(store.limits.maxEntries);
  const feed = new PeerFeed({
    dir: path.join(path.dirname(store.checkpoint.path), 'agents'),
    peers: entries,
    clock: w.clock,
    log: w.log.child({ component: 'peer-feed' }),
    metrics: w.metrics,
    // A checkpoint restores at most maxTTL + grace; a second more for the wall-clock rounding.
    maxLifetimeMs: maxTimeoutMs(store.ttl) + 1000,
  });
  w.cleanups.add(() => feed.stop());
  return { feed, entries };
}

/** Step 4: the DNS proxy (its checkpoint restored into the datapath before its sockets open). */
async function startDns(
  w: Wiring,
  sources: Sources,
  datapath: Datapath,
  flowLog: LineSink | null,
  flows: AgentFlows,
  inUse: InUseSource | null,
  /** Serves and follows the peer feed before the first answer. */
  peer: Peer | null,
  /** A held query of a new source is answered once the kernel holds it (src/dns/unknown-hold.ts). */
  settled: () => Promise<unknown>,
): Promise<DnsProxy> {
  const settings = dnsSettingsFrom(w.config);
  const dns = await DnsProxy.start({
    settings,
    policies: sources.policies,
    identities: sources.identities,
    datapath,
    registry: w.registry,
    log: w.log.child({ component: 'dns' }),
    flowLog,
    flowObserver: flows.dnsObserver,
    clock: w.clock,
    settled,
    // A rolling update starts the new agent beside the old one on the same port (host network).
    reusePort: true,
    ...(inUse ? { inUse } : {}),
    ...(peer ? { beforeListen: (store: LearnedStore) => peer.feed.start(store) } : {}),
  });
  w.cleanups.add(() => dns.stop());
  return dns;
}

/**
 * Step 5: the proxies. Verify ports of governed sources arrive at the SNI proxy (the datapath
 * redirects them); clients with HTTPS_PROXY use the CONNECT proxy.
 */
async function startProxies(
  w: Wiring,
  sources: Sources,
  learned: LearnedView,
  flows: AgentFlows,
): Promise<void> {
  const { config, log, clock, registry } = w;
  const settings = proxySettingsFrom(config.proxy);
  const common = {
    policies: sources.policies,
    identities: sources.identities,
    registry,
    clock,
    settings,
    flowObserver: flows.proxyObserver,
  };
  const flowLog = w.options.flowLog === undefined ? proxyFlowSink(settings, config) : w.options.flowLog;
  if (settings.sni.enabled) {
    const od = originalDestinationFor(settings.originalDst);
    if (od.problem)
      log.warn(
        { [F.event]: 'proxy', method: od.method, [F.error]: od.problem },
        'original destination addon unavailable',
      );
    const sni = await SniProxy.start({
      ...common,
      learned,
      originalDestination: od.lookup,
      originalDestinationMethod: od.method,
      log: log.child({ component: 'sni-proxy' }),
      flowLog,
      inspector: startInspector(w, settings, flowLog),
    });
    w.cleanups.add(() => sni.stop(PROXY_DRAIN_MS));
  }
  if (settings.connect.enabled) {
    const upstream = upstreamFrom(dnsSettingsFrom(config).upstream, clock);
    w.cleanups.add(() => upstream.close());
    const connect = await ConnectProxy.start({
      ...common,
      resolver: new UpstreamResolver(upstream),
      log: log.child({ component: 'connect-proxy' }),
      flowLog,
    });
    w.cleanups.add(() => connect.stop(PROXY_DRAIN_MS));
  }
}

/**
 * TLS inspection, when proxy.inspect.ca is set. A CA that cannot be loaded is logged and tried
 * again every reloadSeconds: meanwhile connections that need inspection are refused (never
 * passed uninspected), and everything else works.
 */
function startInspector(
  w: Wiring,
  settings: ProxySettings,
  flowLog: LineSink | null,
): { current(): Inspector | null } {
  const s = settings.inspect;
  let current: Inspector | null = null;
  if (s === null) return { current: () => null };
  const log = w.log.child({ component: 'sni-proxy' });
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;
  const attempt = async (): Promise<void> => {
    try {
      // Loaded only when a CA is configured: the X.509 library is a large import.
      const { startInspection } = await import('../proxy/inspect/start.ts');
      const started = await startInspection({
        settings: s,
        head: settings.head,
        connectTimeoutMs: settings.connectTimeoutMs,
        idleTimeoutMs: settings.idleTimeoutMs,
        flowLog,
        flowMode: settings.flowLog.mode,
        registry: w.registry,
        log,
        clock: w.clock,
      });
      if (stopped) return started.stop();
      current = started.inspector;
      w.cleanups.add(() => started.stop());
    } catch (err) {
      log.error(
        { [F.event]: 'proxy', [F.error]: errorMessage(err) },
        'TLS inspection unavailable; inspected connections are refused',
      );
      if (!stopped) {
        timer = setTimeout(() => void attempt(), s.reloadMs);
        timer.unref();
      }
    }
  };
  void attempt();
  w.cleanups.add(() => {
    stopped = true;
    if (timer) clearTimeout(timer);
  });
  return { current: () => current };
}

/**
 * Step 6: the first full sync, then follow changes. A removed address loses its elements and
 * flows before anything else happens, so a reused IP never inherits the previous pod's access.
 */
async function followChanges(
  w: Wiring,
  sources: Sources,
  enforcer: Enforcer,
  peers: PeerEntries | null,
): Promise<void> {
  const { metrics, log } = w;
  const resync = (reason: string) =>
    enforcer.sync(reason).catch(() => {
      /* logged and counted by the enforcer; the next change retries */
    });
  w.cleanups.add(
    sources.policies.onChange((set) => {
      metrics.policies.set(set.size);
      metrics.policyReloads.inc({ result: 'ok' });
      void resync('policy');
    }),
  );
  w.cleanups.add(
    sources.identities.onChange((delta?: unknown) => {
      const removed = removedIps(delta);
      // A reused address must not inherit what the peer learned for the pod that left.
      if (peers) {
        peers.forgetSources(removed);
        metrics.peerEntries.set(peers.size);
      }
      void enforcer
        .removeSources(removed)
        .catch((err: unknown) =>
          log.error({ [F.event]: 'enforce', [F.error]: errorMessage(err) }, 'removing sources failed'),
        )
        .then(() => resync('identity'));
    }),
  );
  // Subscribed before the first full sync, which reads the policies when it starts: a change
  // that lands while it runs (the DNS proxy already answers with it) gets a follow-up sync. The
  // other way round, such a change waited for the periodic sync, up to a minute with DNS and the
  // kernel disagreeing (seen as a flaky k8s e2e test on a loaded machine).
  await enforcer.sync('startup');
  // Elements expire in the kernel on their own; this catches drift (e.g. a table edited by
  // hand) and retries a failed sync. With the datapath off there is no kernel to drift from.
  if (!w.options.dnsOnly) {
    const periodic = setInterval(() => void resync('periodic'), 60_000);
    periodic.unref();
    w.cleanups.add(() => clearInterval(periodic));
  }
  w.readiness.push({ name: 'datapath', check: () => (enforcer.syncs > 0 ? null : 'first sync not done') });
  metrics.ready.set(1);
}

/** Step 7: /metrics, /healthz, /readyz and the debug JSON, unless told not to listen. */
async function serveHealth(
  w: Wiring,
  sources: Sources,
  dns: DnsProxy,
  flows: AgentFlows,
): Promise<{ host: string; port: number } | null> {
  const listen = w.options.httpListen === undefined ? w.config.http.listen : w.options.httpListen;
  if (listen === null) return null;
  const at = httpListenFrom(listen);
  const server = new HealthServer({
    registry: w.registry,
    readiness: w.readiness,
    json: {
      '/debug/learned': () => [...(dns.store.entries() ?? [])].slice(0, 10_000),
      '/debug/policies': () => policiesSummary(sources.policies),
    },
    // /flows, /dashboard: the flow API (docs/observe.md).
    routes: [(req, res) => flows.api.handle(req, res)],
  });
  const address = await server.listen(at.host, at.port);
  if (w.options.healthSocket) await server.listenSocket(w.options.healthSocket);
  w.cleanups.add(() => server.close());
  return { host: address.address, port: address.port };
}

function running(
  w: Wiring,
  parts: Omit<RunningAgent, 'registry' | 'ready' | 'reloadPolicies' | 'stop'> & { files: PolicyFiles | null },
): RunningAgent {
  let stopped = false;
  return {
    dns: parts.dns,
    flows: parts.flows,
    datapath: parts.datapath,
    enforcer: parts.enforcer,
    registry: w.registry,
    http: parts.http,
    ready: () => w.readiness.every((c) => c.check() === null),
    reloadPolicies: async () => {
      await parts.files?.reload();
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      w.metrics.ready.set(0);
      // DNS hands over first (its sockets leave the SO_REUSEPORT group, its last checkpoint is
      // written); then the cleanups run, the proxies among them stopping to accept and draining
      // what is open, so no answer of this agent comes after its proxies stopped accepting.
      await parts.dns.stop();
      await w.cleanups.run(w.log);
      w.log.info(
        { [F.event]: 'agent', [F.reason]: 'stopped' },
        'namegate agent stopped; the kernel table stays',
      );
    },
  };
}

type IdentityPairs = ReadonlyArray<readonly [string, { readonly key?: unknown }]>;

/**
 * The addresses whose holder went away: Kubernetes identity changes carry the removed and added
 * (ip, identity) pairs; static groups carry none. An address the same workload still holds (a
 * relabel: same key, new labels) is not among them: the sync judges it by its new identity and
 * revokes only what that no longer allows, so access the relabel keeps is not cut.
 */
export function removedIps(delta: unknown): string[] {
  if (typeof delta !== 'object' || delta === null || !('removed' in delta)) return [];
  const d = delta as { removed: IdentityPairs; added?: IdentityPairs };
  const holder = new Map<string, unknown>();
  for (const [ip, identity] of d.added ?? []) holder.set(ip, identity.key);
  return d.removed
    .filter(([ip, identity]) => identity.key === undefined || holder.get(ip) !== identity.key)
    .map(([ip]) => ip);
}

function policiesSummary(policies: PolicySource): unknown {
  try {
    const set = policies.current();
    return set.policies.map((p) => ({ ...p.ref, mode: p.mode, rules: p.rules.length }));
  } catch (err) {
    return { error: errorMessage(err) };
  }
}

function flowSink(flowLog: { mode: string; path: string | null }): LineSink | null {
  return flowLog.mode === 'none' ? null : createLineSink(flowLog.path ?? undefined);
}

/** The proxies write to their own flow-log file, else to the DNS proxy's, else stdout. */
function proxyFlowSink(settings: ProxySettings, config: AgentConfig): LineSink | null {
  if (settings.flowLog.mode === 'none') return null;
  return createLineSink(settings.flowLog.path ?? config.dns.flowLog.path);
}
