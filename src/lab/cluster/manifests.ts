/**
 * What the lab cluster runs besides namegate, as Kubernetes objects (pure):
 *
 * - CoreDNS as the cluster DNS (Deployment + Service 10.96.0.10), forwarding everything outside
 *   cluster.local to the lab internet's authoritative server. It listens on 1053 so it runs as a
 *   non-root user with no capability; the Service maps 53 to it.
 * - the workloads: one test-client Deployment per lab pod (the namespaces and labels of the
 *   static lab), so examples/ select them as they select the static lab's pods. The lab CA is a
 *   ConfigMap mounted at the state dir's CA path, so the tour's `curl --cacert` works inside.
 */
import type { KubeObject } from '../../k8s/api.ts';
import { PODS, type PodSpec, statePaths } from '../plan.ts';
import type { ClusterPlan } from './plan.ts';

export const COREDNS_PORT = 1053;
export const LAB_CA_CONFIGMAP = 'namegate-lab-ca';
export const TEST_CLIENT_CONTAINER = 'client';

export interface LabImages {
  readonly coredns: string;
  readonly testClient: string;
}

export function corefile(cp: ClusterPlan): string {
  return `.:${COREDNS_PORT} {
    errors
    health :8080
    ready :8181
    kubernetes ${cp.clusterDomain} in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    prometheus :9153
    forward . ${cp.lab.upstream.ipv4}:${cp.lab.upstream.port}
    cache 30
    loop
    reload
}
`;
}

export function corednsObjects(cp: ClusterPlan, image: string): KubeObject[] {
  const ns = 'kube-system';
  const labels = { 'k8s-app': 'kube-dns' };
  return [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'coredns', namespace: ns } },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'system:coredns' },
      rules: [
        {
          apiGroups: [''],
          resources: ['endpoints', 'services', 'pods', 'namespaces'],
          verbs: ['list', 'watch'],
        },
        { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list', 'watch'] },
      ],
    } as KubeObject,
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'system:coredns' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:coredns' },
      subjects: [{ kind: 'ServiceAccount', name: 'coredns', namespace: ns }],
    } as KubeObject,
    {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'coredns', namespace: ns },
      data: { Corefile: corefile(cp) },
    } as KubeObject,
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'coredns', namespace: ns, labels },
      spec: {
        replicas: 1,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            serviceAccountName: 'coredns',
            priorityClassName: 'system-cluster-critical',
            dnsPolicy: 'Default',
            securityContext: {
              runAsNonRoot: true,
              runAsUser: 65532,
              seccompProfile: { type: 'RuntimeDefault' },
            },
            containers: [
              {
                name: 'coredns',
                image,
                imagePullPolicy: 'Never',
                args: ['-conf', '/etc/coredns/Corefile'],
                ports: [
                  { name: 'dns', containerPort: COREDNS_PORT, protocol: 'UDP' },
                  { name: 'dns-tcp', containerPort: COREDNS_PORT, protocol: 'TCP' },
                  { name: 'metrics', containerPort: 9153, protocol: 'TCP' },
                ],
                readinessProbe: { httpGet: { path: '/ready', port: 8181 }, periodSeconds: 1 },
                livenessProbe: { httpGet: { path: '/health', port: 8080 }, periodSeconds: 10 },
                securityContext: {
                  allowPrivilegeEscalation: false,
                  readOnlyRootFilesystem: true,
                  capabilities: { drop: ['ALL'] },
                },
                volumeMounts: [{ name: 'config', mountPath: '/etc/coredns', readOnly: true }],
              },
            ],
            volumes: [{ name: 'config', configMap: { name: 'coredns' } }],
          },
        },
      },
    } as KubeObject,
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'kube-dns', namespace: ns, labels },
      spec: {
        clusterIP: cp.dnsServiceIP,
        selector: labels,
        ports: [
          { name: 'dns', port: 53, targetPort: COREDNS_PORT, protocol: 'UDP' },
          { name: 'dns-tcp', port: 53, targetPort: COREDNS_PORT, protocol: 'TCP' },
          { name: 'metrics', port: 9153, targetPort: 9153, protocol: 'TCP' },
        ],
      },
    } as KubeObject,
  ];
}

export function namespaceObject(name: string, labels: Record<string, string> = {}): KubeObject {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } };
}

export function labCaConfigMap(namespace: string, caPem: string): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: LAB_CA_CONFIGMAP, namespace },
    data: { 'ca.crt': caPem },
  } as KubeObject;
}

export interface WorkloadSpec {
  readonly name: string;
  readonly namespace: string;
  readonly labels: Record<string, string>;
  readonly replicas?: number;
  /** Replaces the image's default command (pause). */
  readonly command?: readonly string[];
}

/** A Deployment of test clients: curl, dig, openssl and nc inside, pause as PID 1. */
export function testClientDeployment(cp: ClusterPlan, image: string, w: WorkloadSpec): KubeObject {
  const selector = { 'namegate.dev/lab-workload': w.name };
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: w.name, namespace: w.namespace, labels: selector },
    spec: {
      replicas: w.replicas ?? 1,
      selector: { matchLabels: selector },
      template: {
        metadata: { labels: { ...w.labels, ...selector } },
        spec: {
          // pause exits at once on SIGTERM: nothing to drain.
          terminationGracePeriodSeconds: 1,
          securityContext: { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532 },
          containers: [
            {
              name: TEST_CLIENT_CONTAINER,
              image,
              imagePullPolicy: 'Never',
              ...(w.command ? { command: [...w.command] } : {}),
              securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
              volumeMounts: [{ name: 'lab-ca', mountPath: statePaths(cp.lab).ca, readOnly: true }],
            },
          ],
          volumes: [{ name: 'lab-ca', configMap: { name: LAB_CA_CONFIGMAP } }],
        },
      },
    },
  } as KubeObject;
}

/** The static lab's pods as Deployments (same ids, namespaces and labels). */
export function labWorkloads(): WorkloadSpec[] {
  return PODS.map((p: PodSpec) => ({ name: p.id, namespace: p.namespace, labels: { ...p.labels } }));
}

/** Namespaces of the lab's workloads, with the static lab's namespace labels. */
export function labNamespaces(): KubeObject[] {
  const seen = new Map<string, Record<string, string>>();
  for (const p of PODS) seen.set(p.namespace, { ...(seen.get(p.namespace) ?? {}), ...p.namespaceLabels });
  return [...seen].map(([name, labels]) => namespaceObject(name, labels));
}
