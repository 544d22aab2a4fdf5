/**
 * The wiring of `namegate sync` (its composition root, as src/agent/agent.ts is the agent's):
 * from the config file to a running Syncer with its policy source, resolver, targets and the
 * HTTP listener (/metrics, /healthz, /readyz, /status). Settings are mapped from the config's
 * sections here, once; the parts below take only their own settings.
 */
import type { Registry } from 'prom-client';
import { datapathSettingsFrom } from '../config/datapath.ts';
import { dnsSettingsFrom } from '../config/dns.ts';
import { httpListenFrom } from '../config/http.ts';
import { kubernetesSettingsFrom } from '../config/kubernetes.ts';
import type { AgentConfig } from '../config/schema.ts';
import { sourceGroupsFrom } from '../config/sources.ts';
import { syncSettingsFrom } from '../config/sync.ts';
import { type Clock, systemClock } from '../core/clock.ts';
import { ErrorCode, NamegateError } from '../core/errors.ts';
import type { Datapath } from '../datapath/datapath.ts';
import { DatapathMetrics } from '../datapath/metrics.ts';
import { NftDatapath } from '../datapath/nft-driver.ts';
import { upstreamFrom } from '../dns/proxy.ts';
import { resolveName } from '../dns/resolve.ts';
import { StaticGroups } from '../identity/static-groups.ts';
import { KubeApi, loadKubeConfig } from '../k8s/api.ts';
import { k8sMetrics } from '../k8s/metrics.ts';
import { KubePolicySource } from '../k8s/policy-source.ts';
import { F } from '../observe/fields.ts';
import { HealthServer } from '../observe/http.ts';
import type { Logger } from '../observe/log.ts';
import { createRegistry } from '../observe/metrics.ts';
import type { Policy } from '../policy/model.ts';
import { createSyncMetrics } from '../sync/metrics.ts';
import type { OwnerRef } from '../sync/netpol-plan.ts';
import { NetworkPolicyWriter } from '../sync/netpol-writer.ts';
import { type PolicyFeed, Syncer, type SyncTargets } from '../sync/syncer.ts';
import { Cleanups } from './cleanups.ts';
import { PolicyFiles } from './policy-files.ts';

export interface StartSyncOptions {
  readonly config: AgentConfig;
  readonly log: Logger;
  readonly clock?: Clock;
  readonly registry?: Registry;
  /** Override http.listen; null: no HTTP listener. */
  readonly httpListen?: string | null;
  /** A datapath for the nftables target (tests); default: NftDatapath from the datapath section. */
  readonly datapath?: Datapath;
  /** Do not follow changes (--once): no policy watch, no loop. */
  readonly once?: boolean;
}

export interface RunningSync {
  readonly syncer: Syncer;
  readonly registry: Registry;
  readonly http: { host: string; port: number } | null;
  /** Read the policy files again now (SIGHUP); no-op when policies come from the API. */
  reloadPolicies(): Promise<void>;
  stop(): Promise<void>;
}

export async function startSync(options: StartSyncOptions): Promise<RunningSync> {
  const { config, log } = options;
  const section = config.sync;
  if (!section) throw new NamegateError(ErrorCode.ConfigInvalid, 'the config has no `sync` section');
  const clock = options.clock ?? systemClock;
  const registry = options.registry ?? createRegistry({ defaultMetrics: true });
  const cleanups = new Cleanups();
  const run = () => cleanups.run(log);
  try {
    // Policies: the API when a kubernetes section is present (owners known), else the files.
    let policies: PolicyFeed;
    let ownerOf: ((p: Policy) => OwnerRef | null) | undefined;
    let api: KubeApi | null = null;
    let files: PolicyFiles | null = null;
    // The sync reads no pods: the node name the agent's settings require is not used.
    const kube = config.kubernetes
      ? kubernetesSettingsFrom(config.kubernetes, {
          ...process.env,
          NODE_NAME: process.env['NODE_NAME'] ?? 'none',
        })
      : null;
    if (kube || section.targets.networkPolicy) {
      api = new KubeApi(loadKubeConfig(kube?.kubeconfig ?? undefined), { userAgent: 'namegate-sync' });
    }
    if (kube && api) {
      const source = new KubePolicySource({
        api,
        logger: log.child({ component: 'k8s' }),
        metrics: k8sMetrics(registry),
        config: kube,
        stallMs: kube.stallMs,
        watchTimeoutSeconds: kube.watchTimeoutSeconds,
      });
      source.start();
      cleanups.add(() => source.stop());
      await source.synced;
      policies = source;
      ownerOf = (policy) => {
        for (const e of source.evaluated()) {
          if (e.uid && e.policies.includes(policy))
            return { apiVersion: e.apiVersion, kind: e.kind, name: e.name, uid: e.uid };
        }
        return null;
      };
    } else {
      files = new PolicyFiles({ paths: config.policies, logger: log.child({ component: 'policy' }) });
      const first = await files.reload();
      if (!first.ok)
        throw new NamegateError(
          ErrorCode.PolicyInvalid,
          `policies are invalid (${first.errors.length} problem(s) logged); not starting`,
        );
      const watched = files;
      if (!options.once) {
        await watched.watch();
        cleanups.add(() => watched.close());
      }
      policies = watched;
    }

    const targets: {
      -readonly [K in keyof SyncTargets]: SyncTargets[K];
    } = {};
    const t = section.targets;
    if (t.networkPolicy && api) {
      targets.networkPolicy = {
        writer: new NetworkPolicyWriter(api, t.networkPolicy.fieldManager),
        settings: t.networkPolicy,
        ...(ownerOf ? { ownerOf } : {}),
      };
    }
    if (t.nftables) {
      let datapath = options.datapath;
      if (!datapath) {
        const dpMetrics = new DatapathMetrics(registry);
        const settings = datapathSettingsFrom(config);
        const nft = await NftDatapath.open({
          // No DNS proxy and no SNI proxy run beside the sync: DNS is not redirected, verify
          // ports are not redirected, and no flood guard guards a proxy that is not there.
          config: { ...settings.nft, dns: { kind: 'none' }, verifyPort: null, dnsGuard: null },
          executor: settings.executor,
          clock,
          logger: log.child({ component: 'datapath' }),
          metrics: dpMetrics,
        });
        dpMetrics.readDrops = () => nft.readDropCounters();
        datapath = nft;
      }
      const dp = datapath;
      cleanups.add(() => dp.close());
      targets.nftables = { datapath: dp };
    }
    if (t.aws) targets.aws = t.aws;
    if (t.gcp) targets.gcp = t.gcp;

    const upstream = upstreamFrom(dnsSettingsFrom(config).upstream, clock);
    cleanups.add(() => upstream.close());
    const syncer = new Syncer({
      settings: syncSettingsFrom(section, config.ttl),
      policies,
      groups: new StaticGroups(sourceGroupsFrom(config.sources)),
      resolve: (name) => resolveName(upstream, name),
      targets,
      clock,
      log,
      metrics: createSyncMetrics(registry),
    });
    cleanups.add(() => syncer.stop());

    let http: { host: string; port: number } | null = null;
    const listen = options.httpListen === undefined ? config.http.listen : options.httpListen;
    if (listen !== null) {
      const at = httpListenFrom(listen);
      const server = new HealthServer({
        registry,
        readiness: [{ name: 'sync', check: () => (syncer.ready() ? null : 'targets not written yet') }],
        json: { '/status': () => syncer.status() },
      });
      const address = await server.listen(at.host, at.port);
      http = { host: address.address, port: address.port };
      cleanups.add(() => server.close());
    }
    if (!options.once) syncer.start();
    log.info(
      { [F.event]: 'sync', [F.reason]: 'started', targets: Object.keys(targets), http },
      'namegate sync running',
    );
    const reloadable = files;
    return {
      syncer,
      registry,
      http,
      reloadPolicies: async () => {
        await reloadable?.reload();
      },
      stop: run,
    };
  } catch (err) {
    await run();
    throw err;
  }
}
