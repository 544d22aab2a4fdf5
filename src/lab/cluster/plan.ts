/**
 * The lab as a Kubernetes node: addresses, CIDRs, ports and paths of the single-node cluster that
 * `namegate lab up --kubernetes` runs in the lab's node namespace. Pure, like the lab plan: the
 * same name gives the same plan, so `up`, `down`, tests and the CLI agree without state.
 *
 * Everything the node writes lives under <state>/k8s: the private mount namespace binds
 * node/var-lib over /var/lib, node/var-log over /var/log and node/run-containerd over
 * /run/containerd, so kubelet, containerd and the CNI plugins write nowhere else.
 */
import path from 'node:path';
import { CLUSTER_POD_CIDR, type LabPlan, labPlan, type PlanOptions } from '../plan.ts';

export interface ClusterPlan {
  readonly lab: LabPlan;
  readonly nodeName: string;
  /** The node's address: on its veth to the internet namespace (no dummy interfaces here). */
  readonly nodeIP: string;
  /** This node's pod subnet (CNI bridge cni0, host-local IPAM). */
  readonly nodePodCIDR: string;
  readonly clusterCIDR: string;
  readonly serviceCIDR: string;
  readonly apiServiceIP: string;
  readonly dnsServiceIP: string;
  readonly clusterDomain: string;
  readonly apiPort: number;
  /** cgroup (in every v1 hierarchy and the unified one) the kubelet puts pods under. */
  readonly cgroupRoot: string;
  readonly dir: string;
  readonly paths: ClusterPaths;
}

export interface ClusterPaths {
  readonly pki: string;
  readonly etcd: string;
  readonly containerdConfig: string;
  readonly containerdRoot: string;
  readonly containerdState: string;
  readonly containerdSocket: string;
  readonly cniConfDir: string;
  readonly cniIpam: string;
  readonly kubeletDir: string;
  readonly kubeletConfig: string;
  readonly kubeProxyConfig: string;
  /** Bound over /var/lib, /var/log and /run/containerd inside the node's mount namespace. */
  readonly varLib: string;
  readonly varLog: string;
  readonly runContainerd: string;
  /** Files bound over kernel sysctls the kubelet writes (they are not per namespace). */
  readonly sysctlShields: string;
  /** kubeconfigs for the components (they dial 127.0.0.1 in the node namespace). */
  readonly kubeconfigs: string;
  /** The kubeconfig for this machine's root namespace (helm, tests): dials the API relay. */
  readonly hostKubeconfig: string;
  readonly relaySocket: string;
  readonly record: string;
  readonly manifests: string;
}

export const CLUSTER_NETWORK = 'namegate-lab';

export function clusterPlan(name?: string, options: PlanOptions = {}): ClusterPlan {
  const lab = labPlan(name, { ...options, kubernetes: true });
  const dir = path.join(lab.stateDir, 'k8s');
  const node = path.join(dir, 'node');
  return {
    lab,
    nodeName: lab.nodeNetns,
    nodeIP: '10.254.0.1',
    nodePodCIDR: '10.244.0.0/24',
    clusterCIDR: CLUSTER_POD_CIDR,
    serviceCIDR: '10.96.0.0/12',
    apiServiceIP: '10.96.0.1',
    dnsServiceIP: '10.96.0.10',
    clusterDomain: 'cluster.local',
    apiPort: 6443,
    cgroupRoot: `/ngk8s-${lab.name}`,
    dir,
    paths: {
      pki: path.join(dir, 'pki'),
      etcd: path.join(dir, 'etcd'),
      containerdConfig: path.join(dir, 'containerd', 'config.toml'),
      containerdRoot: path.join(dir, 'containerd', 'root'),
      containerdState: path.join(dir, 'containerd', 'state'),
      containerdSocket: path.join(dir, 'containerd', 'containerd.sock'),
      cniConfDir: path.join(dir, 'cni', 'net.d'),
      cniIpam: path.join(dir, 'cni', 'ipam'),
      kubeletDir: path.join(dir, 'kubelet'),
      kubeletConfig: path.join(dir, 'kubelet-config.yaml'),
      kubeProxyConfig: path.join(dir, 'kube-proxy-config.yaml'),
      varLib: path.join(node, 'var-lib'),
      varLog: path.join(node, 'var-log'),
      runContainerd: path.join(node, 'run-containerd'),
      sysctlShields: path.join(node, 'sysctl'),
      kubeconfigs: path.join(dir, 'kubeconfig'),
      hostKubeconfig: path.join(dir, 'admin.kubeconfig'),
      relaySocket: path.join(dir, 'api.sock'),
      record: path.join(dir, 'cluster.json'),
      manifests: path.join(dir, 'manifests'),
    },
  };
}

/** The host-local IPAM's record of the last address it handed out (it hands out the next one). */
export function lastReservedIpFile(cp: ClusterPlan): string {
  return path.join(cp.paths.cniIpam, CLUSTER_NETWORK, 'last_reserved_ip.0');
}
