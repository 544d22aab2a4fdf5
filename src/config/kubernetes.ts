/**
 * The `kubernetes:` section of the agent's config file. The agent config (src/config/) embeds
 * this schema; when the section is absent the agent does not talk to Kubernetes at all.
 */
import { z } from 'zod';
import { ErrorCode, NamegateError } from '../core/errors.ts';

export const DialectsSchema = z
  .strictObject({
    cilium: z
      .boolean()
      .default(false)
      .describe('Read CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy.'),
    istio: z.boolean().default(false).describe('Read Istio ServiceEntry.'),
    npep: z
      .boolean()
      .default(false)
      .describe('Read AdminNetworkPolicy and ClusterNetworkPolicy domainNames.'),
    gke: z.boolean().default(false).describe('Read GKE FQDNNetworkPolicy.'),
  })
  .describe('Foreign policy kinds to read from the API (each only while its CRD is installed).');

export const KubernetesConfigSchema = z.strictObject({
  kubeconfig: z
    .string()
    .optional()
    .describe(
      'Path of a kubeconfig; absent: $KUBECONFIG, ~/.kube/config, then the in-cluster service account.',
    ),
  nodeName: z
    .string()
    .min(1)
    .optional()
    .describe('The node whose pods this agent governs; defaults to $NODE_NAME (the downward API).'),
  dialects: DialectsSchema.default({ cilium: false, istio: false, npep: false, gke: false }),
  istioRegistryOnly: z
    .boolean()
    .default(false)
    .describe(
      "Istio's outboundTrafficPolicy is REGISTRY_ONLY: ServiceEntries are the allow list. Otherwise (ALLOW_ANY) they are read in Audit mode.",
    ),
  stallSeconds: z
    .number()
    .int()
    .min(5)
    .max(3600)
    .default(150)
    .describe('Restart a watch that has carried nothing, not even a bookmark, for this long.'),
  watchTimeoutSeconds: z.number().int().min(30).max(3600).default(300),
});

export type KubernetesConfig = z.output<typeof KubernetesConfigSchema>;
export type KubernetesConfigInput = z.input<typeof KubernetesConfigSchema>;

/** Parse the section and fill nodeName from the environment; throws with field paths when invalid. */
export function resolveKubernetesConfig(
  input: unknown,
  env: NodeJS.ProcessEnv = process.env,
): KubernetesConfig & { nodeName: string } {
  const parsed = KubernetesConfigSchema.parse(input ?? {});
  const nodeName = parsed.nodeName ?? env['NODE_NAME'];
  if (!nodeName) {
    throw new NamegateError(
      ErrorCode.ConfigInvalid,
      'kubernetes.nodeName: not set and $NODE_NAME is empty (set it from spec.nodeName)',
    );
  }
  return { ...parsed, nodeName };
}
