/**
 * The `kubernetes:` section: when present, identities are the pods of this node and policies
 * come from the API (native and the enabled foreign kinds); when absent the agent does not talk
 * to Kubernetes at all. kubernetesSettingsFrom() builds the KubernetesSettings.
 */
import { z } from 'zod';
import { ErrorCode, NamegateError } from '../core/errors.ts';
import { FOREIGN_DIALECTS, type ForeignDialect, IMPORTERS } from '../formats/registry.ts';
import type { KubernetesSettings } from '../k8s/settings.ts';

/** One switch per foreign dialect of the registry, all off by default. */
export const DialectsSchema = z
  .strictObject(
    Object.fromEntries(
      IMPORTERS.map((i) => [i.dialect, z.boolean().default(false).describe(`Read ${i.summary}.`)]),
    ) as Record<ForeignDialect, z.ZodDefault<z.ZodBoolean>>,
  )
  .describe('Foreign policy kinds to read from the API (each only while its CRD is installed).');

const NO_DIALECTS = Object.fromEntries(FOREIGN_DIALECTS.map((d) => [d, false])) as Record<
  ForeignDialect,
  boolean
>;

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
  dialects: DialectsSchema.default(NO_DIALECTS),
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

/** The Kubernetes sources' settings from the section (nodeName from $NODE_NAME when absent). */
export function kubernetesSettingsFrom(
  section: KubernetesConfigInput,
  env: NodeJS.ProcessEnv = process.env,
): KubernetesSettings {
  const k = resolveKubernetesConfig(section, env);
  return {
    kubeconfig: k.kubeconfig ?? null,
    nodeName: k.nodeName,
    dialects: k.dialects,
    istioRegistryOnly: k.istioRegistryOnly,
    stallMs: k.stallSeconds * 1000,
    watchTimeoutSeconds: k.watchTimeoutSeconds,
  };
}
