/**
 * What the agent's Kubernetes sources are built with: where the API is, which node's pods this
 * agent governs, which foreign kinds it reads, and the watch timings. src/config/kubernetes.ts
 * builds it from the `kubernetes` section (nodeName from $NODE_NAME when the file has none).
 */
export interface KubernetesSettings {
  /** A kubeconfig path; null: $KUBECONFIG, ~/.kube/config, then the in-cluster service account. */
  readonly kubeconfig: string | null;
  readonly nodeName: string;
  /** Foreign dialects to read, by name (src/formats/registry.ts). */
  readonly dialects: Readonly<Record<string, boolean>>;
  /** Istio's REGISTRY_ONLY: ServiceEntries are the allow list; otherwise they are read in Audit mode. */
  readonly istioRegistryOnly: boolean;
  /** Restart a watch that carried nothing, not even a bookmark, for this long. */
  readonly stallMs: number;
  readonly watchTimeoutSeconds: number;
}
