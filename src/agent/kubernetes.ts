/**
 * Identities and policies from the Kubernetes API, for the agent (a DaemonSet pod governs the
 * pods of its own node). The agent waits until both have synced before its first sync, so it
 * never programs the kernel from a partial view.
 */
import type { Registry } from 'prom-client';
import type { IdentityProvider } from '../identity/identity.ts';
import { KubeApi, loadKubeConfig } from '../k8s/api.ts';
import { KubeIdentityProvider } from '../k8s/identity.ts';
import { k8sMetrics } from '../k8s/metrics.ts';
import { KubePolicySource } from '../k8s/policy-source.ts';
import type { KubernetesSettings } from '../k8s/settings.ts';
import type { Logger } from '../observe/log.ts';
import type { PolicySource } from '../policy/source.ts';

export interface KubernetesSources {
  readonly identities: IdentityProvider;
  readonly policies: PolicySource;
  notReadyReason(): string | null;
  stop(): Promise<void>;
}

export async function kubernetesSources(
  k8s: KubernetesSettings,
  registry: Registry,
  log: Logger,
): Promise<KubernetesSources> {
  const api = new KubeApi(loadKubeConfig(k8s.kubeconfig ?? undefined), { userAgent: 'namegate-agent' });
  const metrics = k8sMetrics(registry);
  const common = {
    api,
    logger: log.child({ component: 'k8s' }),
    metrics,
    stallMs: k8s.stallMs,
    watchTimeoutSeconds: k8s.watchTimeoutSeconds,
  };
  const identities = new KubeIdentityProvider({ ...common, nodeName: k8s.nodeName });
  const policies = new KubePolicySource({ ...common, config: k8s });
  identities.start();
  policies.start();
  await Promise.all([identities.synced, policies.synced]);
  return {
    identities,
    policies,
    notReadyReason: () => identities.notReadyReason() ?? policies.notReadyReason(),
    stop: async () => {
      await Promise.all([identities.stop(), policies.stop()]);
    },
  };
}
