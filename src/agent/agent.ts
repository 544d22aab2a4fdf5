/**
 * The agent: wires identity, policy, the DNS proxy, the datapath and the HTTP listener into one
 * process. Production wiring happens here only; every part can be replaced through the options
 * (tests pass a recording datapath, a Kubernetes identity provider, ...).
 *
 * Startup order (each step needs the one before):
 *   1. policies load (files or the API); invalid first load -> no start (fail closed: the kernel
 *      keeps what an earlier agent programmed, new DNS fails because nothing answers)
 *   2. identities (static groups or pods from the API, synced)
 *   3. the datapath opens and reconciles the static state by difference (never a flush)
 *   4. the DNS proxy restores its checkpoint into the kernel, then opens its sockets
 *   5. the enforcer's first sync; only then /readyz says ready
 * Shutdown (SIGTERM): the DNS proxy writes a last checkpoint and closes; the kernel table stays,
 * so learned and established traffic keeps flowing and new DNS fails closed until the next start.
 */
import { pino } from 'pino';
import type { Registry } from 'prom-client';
import { dnsGuardFrom, nftConfigFrom, unknownSourcesWarning } from '../config/datapath.ts';
import type { AgentConfig } from '../config/schema.ts';
import { type Clock, systemClock } from '../core/clock.ts';
import { errorMessage } from '../core/errors.ts';
import type { Datapath } from '../datapath/datapath.ts';
import { DatapathMetrics } from '../datapath/metrics.ts';
import { NftDatapath } from '../datapath/nft-driver.ts';
import { RecordingDatapath } from '../datapath/recording.ts';
import type { LineSink } from '../dns/flow-log.ts';
import { DnsProxy, upstreamFrom } from '../dns/proxy.ts';
import { Enforcer } from '../enforce/enforcer.ts';
import type { IdentityProvider } from '../identity/identity.ts';
import { StaticGroups } from '../identity/static-groups.ts';
import { F } from '../observe/fields.ts';
import { HealthServer, type ReadinessCheck } from '../observe/http.ts';
import { createLogger, type Logger } from '../observe/log.ts';
import { createRegistry } from '../observe/metrics.ts';
import type { PolicySource } from '../policy/source.ts';
import { ConnectProxy } from '../proxy/connect-proxy.ts';
import { originalDestinationFor } from '../proxy/original-dst.ts';
import { UpstreamResolver } from '../proxy/resolver.ts';
import { SniProxy } from '../proxy/sni-proxy.ts';
import { kubernetesSources } from './kubernetes.ts';
import { parseListen } from './listen.ts';
import { createAgentMetrics } from './metrics.ts';
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
  /** Flow log sink; default: stdout or dns.flowLog.path. */
  readonly flowLog?: LineSink | null;
  /** Override http.listen ("host:port"; port 0 picks one); null: no HTTP listener. */
  readonly httpListen?: string | null;
}

export interface RunningAgent {
  readonly dns: DnsProxy;
  readonly datapath: Datapath;
  readonly enforcer: Enforcer;
  readonly registry: Registry;
  /** Where /metrics, /healthz and /readyz answer, when listening. */
  readonly http: { host: string; port: number } | null;
  ready(): boolean;
  stop(): Promise<void>;
}

export async function startAgent(options: AgentOptions): Promise<RunningAgent> {
  const { config } = options;
  const clock = options.clock ?? systemClock;
  const log = options.log ?? createLogger('agent');
  const registry = options.registry ?? createRegistry({ defaultMetrics: true });
  const metrics = createAgentMetrics(registry);
  const cleanups: Array<() => Promise<void> | void> = [];
  const readiness: ReadinessCheck[] = [];

  try {
    // 1 + 2: policies and identities.
    let policies = options.policies;
    let identities = options.identities;
    if (config.kubernetes && (!policies || !identities)) {
      const kube = await kubernetesSources(config.kubernetes, registry, log);
      cleanups.push(() => kube.stop());
      readiness.push({ name: 'kubernetes', check: () => kube.notReadyReason() });
      policies ??= kube.policies;
      identities ??= kube.identities;
    }
    if (!policies) {
      const files = new PolicyFiles({
        paths: config.policies,
        logger: log.child({ component: 'policy' }),
        onRejected: () => metrics.policyReloads.inc({ result: 'rejected' }),
      });
      const first = await files.reload();
      if (!first.ok) {
        throw new Error(`policies are invalid (${first.errors.length} problem(s) logged); not starting`);
      }
      await files.watch();
      cleanups.push(() => files.close());
      policies = files;
    }
    identities ??= new StaticGroups(config.sources);
    metrics.policies.set(policies.current().size);

    // 3: the datapath.
    let datapath = options.datapath;
    if (!datapath) {
      if (config.datapath.driver === 'recording') {
        datapath = new RecordingDatapath(clock);
      } else {
        const dnsPorts = config.dns.listen.map((l) => parseListen(l).port);
        const sniPort = config.proxy.sni.enabled ? parseListen(config.proxy.sni.listen[0] ?? '').port : null;
        const dpMetrics = new DatapathMetrics(registry);
        const nft = await NftDatapath.open({
          config: nftConfigFrom(
            config.datapath,
            dnsPorts[0] ?? 53,
            sniPort,
            dnsGuardFrom(config.datapath, dnsPorts, config.dns.limits),
          ),
          executor: config.datapath.executor,
          clock,
          logger: log.child({ component: 'datapath' }),
          metrics: dpMetrics,
        });
        dpMetrics.readDrops = () => nft.readDropCounters();
        datapath = nft;
      }
    }
    const dp = datapath;
    cleanups.push(() => dp.close());
    const unknownWarning = options.datapath ? null : unknownSourcesWarning(config);
    if (unknownWarning)
      log.warn({ [F.event]: 'datapath', [F.reason]: unknownWarning.reason }, unknownWarning.message);

    let dns: DnsProxy | null = null;
    const enforcer = new Enforcer({
      datapath: dp,
      store: () => dns?.store ?? null,
      identities,
      policies,
      clock,
      log: log.child({ component: 'enforce' }),
      metrics,
    });
    await enforcer.sync('startup-static');

    // 4: DNS.
    dns = await DnsProxy.start({
      config,
      policies,
      identities,
      datapath: dp,
      registry,
      log: log.child({ component: 'dns' }),
      flowLog: options.flowLog === undefined ? defaultFlowLog(config) : options.flowLog,
      clock,
      // A rolling update starts the new agent beside the old one on the same port (host network).
      reusePort: true,
    });
    const proxy = dns;
    cleanups.push(() => proxy.stop());

    // The proxies: verify ports of governed sources arrive at the SNI proxy (the datapath
    // redirects them), clients with HTTPS_PROXY use the CONNECT proxy.
    const proxyFlow = options.flowLog === undefined ? proxyFlowLog(config) : options.flowLog;
    if (config.proxy.sni.enabled) {
      const od = originalDestinationFor(config.proxy.originalDst);
      if (od.problem)
        log.warn(
          { [F.event]: 'proxy', method: od.method, [F.error]: od.problem },
          'original destination addon unavailable',
        );
      const sni = await SniProxy.start({
        policies,
        identities,
        learned: proxy.store,
        originalDestination: od.lookup,
        originalDestinationMethod: od.method,
        log: log.child({ component: 'sni-proxy' }),
        registry,
        flowLog: proxyFlow,
        clock,
        config: config.proxy,
      });
      cleanups.push(() => sni.stop());
    }
    if (config.proxy.connect.enabled) {
      const upstream = upstreamFrom(config, clock);
      cleanups.push(() => upstream.close());
      const connect = await ConnectProxy.start({
        policies,
        identities,
        resolver: new UpstreamResolver(upstream),
        log: log.child({ component: 'connect-proxy' }),
        registry,
        flowLog: proxyFlow,
        clock,
        config: config.proxy,
      });
      cleanups.push(() => connect.stop());
    }

    // 5: the first full sync, then follow changes.
    await enforcer.sync('startup');
    const resync = (reason: string) =>
      enforcer.sync(reason).catch(() => {
        /* logged and counted by the enforcer; the next change retries */
      });
    const offPolicy = policies.onChange((set) => {
      metrics.policies.set(set.size);
      metrics.policyReloads.inc({ result: 'ok' });
      void resync('policy');
    });
    cleanups.push(offPolicy);
    const offIdentity = identities.onChange((delta?: unknown) => {
      const removed = removedIps(delta);
      // A removed address loses its elements and flows before anything else happens, so a
      // reused IP never inherits the previous pod's access.
      void enforcer
        .removeSources(removed)
        .catch((err: unknown) =>
          log.error({ [F.event]: 'enforce', [F.error]: errorMessage(err) }, 'removing sources failed'),
        )
        .then(() => resync('identity'));
    });
    cleanups.push(offIdentity);
    // Elements expire in the kernel on their own; this catches drift (e.g. a table edited by
    // hand) and retries a failed sync.
    const periodic = setInterval(() => void resync('periodic'), 60_000);
    periodic.unref();
    cleanups.push(() => clearInterval(periodic));

    readiness.push({ name: 'datapath', check: () => (enforcer.syncs > 0 ? null : 'first sync not done') });
    metrics.ready.set(1);

    let http: { host: string; port: number } | null = null;
    const listen = options.httpListen === undefined ? config.http.listen : options.httpListen;
    if (listen !== null) {
      const at = parseListen(listen);
      const server = new HealthServer({
        registry,
        readiness,
        json: {
          '/debug/learned': () => [...(proxy.store.entries() ?? [])].slice(0, 10_000),
          '/debug/policies': () => policiesSummary(policies),
        },
      });
      const address = await server.listen(at.host, at.port);
      http = { host: address.address, port: address.port };
      cleanups.push(() => server.close());
    }
    log.info({ [F.event]: 'agent', [F.reason]: 'started', http }, 'namegate agent running');

    let stopped = false;
    return {
      dns: proxy,
      datapath: dp,
      enforcer,
      registry,
      http,
      ready: () => readiness.every((c) => c.check() === null),
      stop: async () => {
        if (stopped) return;
        stopped = true;
        metrics.ready.set(0);
        await runCleanups(cleanups, log);
        log.info(
          { [F.event]: 'agent', [F.reason]: 'stopped' },
          'namegate agent stopped; the kernel table stays',
        );
      },
    };
  } catch (err) {
    await runCleanups(cleanups, log);
    throw err;
  }
}

async function runCleanups(cleanups: Array<() => Promise<void> | void>, log: Logger): Promise<void> {
  for (const c of cleanups.reverse()) {
    try {
      await c();
    } catch (err) {
      log.warn({ [F.event]: 'agent', [F.error]: errorMessage(err) }, 'cleanup step failed');
    }
  }
  cleanups.length = 0;
}

/** Kubernetes identity changes carry the removed (ip, identity) pairs; static groups carry none. */
function removedIps(delta: unknown): string[] {
  if (typeof delta !== 'object' || delta === null || !('removed' in delta)) return [];
  const removed = (delta as { removed: ReadonlyArray<readonly [string, unknown]> }).removed;
  return removed.map(([ip]) => ip);
}

function policiesSummary(policies: PolicySource): unknown {
  try {
    const set = policies.current();
    return set.policies.map((p) => ({ ...p.ref, mode: p.mode, rules: p.rules.length }));
  } catch (err) {
    return { error: errorMessage(err) };
  }
}

function proxyFlowLog(config: AgentConfig): LineSink | null {
  if (config.proxy.flowLog.mode === 'none') return null;
  return createFlowSink(config.proxy.flowLog.path ?? config.dns.flowLog.path);
}

function defaultFlowLog(config: AgentConfig): LineSink | null {
  if (config.dns.flowLog.mode === 'none') return null;
  return createFlowSink(config.dns.flowLog.path);
}

function createFlowSink(path: string | undefined): LineSink {
  // Synchronous writes: one line per query, in order, and nothing lost when the process dies;
  // `tail -f` on the file shows each query as it happens.
  return pino.destination({ dest: path ?? 1, sync: true, ...(path ? { mkdir: true, append: true } : {}) });
}
