/**
 * The configuration files and command lines of the node's daemons, as pure functions of the
 * plan and the binaries' paths. Each setting that departs from upstream defaults says why: most
 * keep the node inside its namespaces and the lab's state dir (cgroupfs driver on a cgroup v1
 * host, no oom_score_adj below 0, kube-proxy leaving global conntrack limits alone).
 */
import path from 'node:path';
import { stringify } from 'yaml';
import { pkiFile } from './pki.ts';
import { CLUSTER_NETWORK, type ClusterPlan } from './plan.ts';

export interface Binaries {
  readonly etcd: string;
  readonly 'kube-apiserver': string;
  readonly 'kube-controller-manager': string;
  readonly 'kube-scheduler': string;
  readonly kubelet: string;
  readonly 'kube-proxy': string;
  readonly containerd: string;
}

export const COMPONENT_BINARIES = [
  'etcd',
  'kube-apiserver',
  'kube-controller-manager',
  'kube-scheduler',
  'kubelet',
  'kube-proxy',
] as const;

export const PAUSE_IMAGE_NAME = 'localhost/namegate-lab/pause';

/** containerd 1.6, config version 2: private root, state and socket; CRI for the kubelet. */
export function containerdConfig(cp: ClusterPlan, pauseRef: string): string {
  const p = cp.paths;
  return `# containerd for namegate lab ${cp.lab.name}; written by namegate lab up --kubernetes
version = 2
root = "${p.containerdRoot}"
state = "${p.containerdState}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "${p.containerdSocket}"

[ttrpc]
  address = "${p.containerdSocket}.ttrpc"

[debug]
  level = "warn"

[plugins."io.containerd.internal.v1.opt"]
  path = "${path.join(p.containerdRoot, 'opt')}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${pauseRef}"
  # Pod network namespaces are pinned under the state dir: the node's mount namespace is private.
  netns_mounts_under_state_dir = true
  # CAP_SYS_RESOURCE is not in this machine's bounding set: nothing may lower oom_score_adj.
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # PID 1 is not systemd here: the cgroupfs driver, as the kubelet's.
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${p.cniConfDir}"
`;
}

/** bridge (cni0, the pods' gateway) + host-local + portmap; containerd adds loopback itself. */
export function cniConflist(cp: ClusterPlan): string {
  return `${JSON.stringify(
    {
      cniVersion: '1.0.0',
      name: CLUSTER_NETWORK,
      plugins: [
        {
          type: 'bridge',
          bridge: 'cni0',
          isGateway: true,
          // No NAT: the internet namespace routes the pod network back, and servers see pod IPs.
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            ranges: [[{ subnet: cp.nodePodCIDR }]],
            routes: [{ dst: '0.0.0.0/0' }],
            dataDir: cp.paths.cniIpam,
          },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    },
    null,
    2,
  )}\n`;
}

export function kubeconfig(cp: ClusterPlan, user: string, server: string): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      { name: 'namegate-lab', cluster: { server, 'certificate-authority': pkiFile(cp, 'ca', 'crt') } },
    ],
    users: [
      {
        name: user,
        user: { 'client-certificate': pkiFile(cp, user, 'crt'), 'client-key': pkiFile(cp, user, 'key') },
      },
    ],
    contexts: [{ name: `namegate-lab-${cp.lab.name}`, context: { cluster: 'namegate-lab', user } }],
    'current-context': `namegate-lab-${cp.lab.name}`,
  });
}

export function componentKubeconfig(cp: ClusterPlan, user: string): string {
  return path.join(cp.paths.kubeconfigs, `${user}.kubeconfig`);
}

export function kubeletConfig(cp: ClusterPlan): string {
  return stringify({
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    // PID 1 is not systemd, and /sys/fs/cgroup is a v1 hybrid.
    cgroupDriver: 'cgroupfs',
    cgroupRoot: cp.cgroupRoot,
    failCgroupV1: false,
    failSwapOn: false,
    // CAP_SYS_RESOURCE is missing: the kubelet must not try to lower its own score.
    oomScoreAdj: 0,
    containerRuntimeEndpoint: `unix://${cp.paths.containerdSocket}`,
    imageServiceEndpoint: `unix://${cp.paths.containerdSocket}`,
    // Pods get the cluster DNS only; nothing from this machine's resolv.conf.
    resolvConf: '',
    clusterDNS: [cp.dnsServiceIP],
    clusterDomain: cp.clusterDomain,
    readOnlyPort: 0,
    authentication: {
      anonymous: { enabled: false },
      webhook: { enabled: true },
      x509: { clientCAFile: pkiFile(cp, 'ca', 'crt') },
    },
    authorization: { mode: 'Webhook' },
    tlsCertFile: pkiFile(cp, 'kubelet-serving', 'crt'),
    tlsPrivateKeyFile: pkiFile(cp, 'kubelet-serving', 'key'),
    // A busy shared machine: evict only when truly out of room, never garbage-collect images.
    evictionHard: {
      'memory.available': '100Mi',
      'nodefs.available': '1%',
      'nodefs.inodesFree': '1%',
      'imagefs.available': '1%',
    },
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    serializeImagePulls: false,
    // Pod status reaches the API (and so the agent) sooner under load.
    kubeAPIQPS: 100,
    kubeAPIBurst: 200,
    maxPods: 110,
  });
}

export function kubeProxyConfig(cp: ClusterPlan): string {
  return stringify({
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    mode: 'nftables',
    clientConnection: { kubeconfig: componentKubeconfig(cp, 'kube-proxy') },
    hostnameOverride: cp.nodeName,
    clusterCIDR: cp.clusterCIDR,
    bindAddress: '0.0.0.0',
    healthzBindAddress: '127.0.0.1:10256',
    metricsBindAddress: '127.0.0.1:10249',
    // 0: leave nf_conntrack_max and the hash size (global, not per namespace) as they are.
    conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
  });
}

/** The command line of each daemon (they run in the node's network, mount and PID namespaces). */
export function daemonArgv(cp: ClusterPlan, bins: Binaries): Record<string, string[]> {
  const pki = (stem: string, ext: 'crt' | 'key' | 'pub') => pkiFile(cp, stem, ext);
  const kc = (user: string) => componentKubeconfig(cp, user);
  return {
    containerd: [bins.containerd, '--config', cp.paths.containerdConfig],
    etcd: [
      bins.etcd,
      '--name=node',
      `--data-dir=${cp.paths.etcd}`,
      '--listen-client-urls=http://127.0.0.1:2379',
      '--advertise-client-urls=http://127.0.0.1:2379',
      '--listen-peer-urls=http://127.0.0.1:2380',
      '--initial-advertise-peer-urls=http://127.0.0.1:2380',
      '--initial-cluster=node=http://127.0.0.1:2380',
      '--listen-metrics-urls=http://127.0.0.1:2381',
      '--unsafe-no-fsync=true',
      '--log-level=warn',
    ],
    'kube-apiserver': [
      bins['kube-apiserver'],
      '--etcd-servers=http://127.0.0.1:2379',
      '--bind-address=0.0.0.0',
      `--secure-port=${cp.apiPort}`,
      `--advertise-address=${cp.nodeIP}`,
      `--tls-cert-file=${pki('apiserver', 'crt')}`,
      `--tls-private-key-file=${pki('apiserver', 'key')}`,
      `--client-ca-file=${pki('ca', 'crt')}`,
      '--authorization-mode=Node,RBAC',
      '--enable-admission-plugins=NodeRestriction',
      `--service-account-issuer=https://kubernetes.default.svc.${cp.clusterDomain}`,
      `--service-account-key-file=${pki('sa', 'pub')}`,
      `--service-account-signing-key-file=${pki('sa', 'key')}`,
      `--service-cluster-ip-range=${cp.serviceCIDR}`,
      `--kubelet-client-certificate=${pki('apiserver-kubelet-client', 'crt')}`,
      `--kubelet-client-key=${pki('apiserver-kubelet-client', 'key')}`,
      `--kubelet-certificate-authority=${pki('ca', 'crt')}`,
      '--kubelet-preferred-address-types=InternalIP',
      '--allow-privileged=true',
      `--cert-dir=${path.join(cp.dir, 'apiserver-certs')}`,
      '--profiling=false',
    ],
    'kube-controller-manager': [
      bins['kube-controller-manager'],
      `--kubeconfig=${kc('kube-controller-manager')}`,
      `--authentication-kubeconfig=${kc('kube-controller-manager')}`,
      `--authorization-kubeconfig=${kc('kube-controller-manager')}`,
      `--root-ca-file=${pki('ca', 'crt')}`,
      `--service-account-private-key-file=${pki('sa', 'key')}`,
      '--use-service-account-credentials=true',
      '--leader-elect=false',
      '--bind-address=127.0.0.1',
      '--secure-port=10257',
      '--kube-api-qps=100',
      '--kube-api-burst=200',
      '--concurrent-deployment-syncs=10',
      '--concurrent-replicaset-syncs=10',
    ],
    'kube-scheduler': [
      bins['kube-scheduler'],
      `--kubeconfig=${kc('kube-scheduler')}`,
      `--authentication-kubeconfig=${kc('kube-scheduler')}`,
      `--authorization-kubeconfig=${kc('kube-scheduler')}`,
      '--leader-elect=false',
      '--bind-address=127.0.0.1',
      '--secure-port=10259',
    ],
    kubelet: [
      bins.kubelet,
      `--config=${cp.paths.kubeletConfig}`,
      `--kubeconfig=${kc('kubelet')}`,
      `--root-dir=${cp.paths.kubeletDir}`,
      `--hostname-override=${cp.nodeName}`,
      `--node-ip=${cp.nodeIP}`,
      '--v=1',
    ],
    'kube-proxy': [bins['kube-proxy'], `--config=${cp.paths.kubeProxyConfig}`, '--v=1'],
  };
}
