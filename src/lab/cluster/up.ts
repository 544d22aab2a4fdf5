/**
 * Bringing the lab's node up as a one-node Kubernetes cluster, after `lab up` has made the
 * namespaces and the internet (see lab.ts). In order:
 *
 * 1. `prepareCluster` (before anything is created): the binaries from scripts/build-test-bins.sh
 *    and the images from scripts/image/build.ts, built when missing, cached otherwise.
 * 2. PKI, configs, the cgroup root, the node holder (private PID and mount namespaces).
 * 3. containerd and etcd, then kube-apiserver; meanwhile the images are imported into
 *    containerd. Two relays carry the API server's port to this machine's loopback for helm, the
 *    tests and the user (admin.kubeconfig).
 * 4. kube-controller-manager, kube-scheduler, kubelet, kube-proxy (nftables mode); the node
 *    becomes Ready; CoreDNS is applied and becomes Ready.
 *
 * Installing namegate with helm, the workloads and the example policies is `install.ts`.
 */
import { execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ErrorCode, NamegateError } from '../../core/errors.ts';
import type { LabPlan } from '../plan.ts';
import { statePaths } from '../plan.ts';
import { type Daemon, isAlive, logTail, startDaemon } from '../processes.ts';
import { findTool, must } from '../run.ts';
import { waitListening } from '../sockets.ts';
import { apply } from './apply.ts';
import {
  COMPONENT_BINARIES,
  cniConflist,
  componentKubeconfig,
  containerdConfig,
  daemonArgv,
  kubeconfig,
  kubeletConfig,
  kubeProxyConfig,
} from './configs.ts';
import { adminApi, waitFor, waitNodeReady, waitRolledOut } from './kube.ts';
import { corednsObjects } from './manifests.ts';
import { createCgroups, inNode, startHolder, startNodeDaemon } from './node.ts';
import { identities, makeClusterPki } from './pki.ts';
import { type ClusterPlan, clusterPlan } from './plan.ts';

const exec = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const RELAY = fileURLToPath(new URL('../relay.ts', import.meta.url));
export const FIELD_MANAGER = 'namegate-lab';

export type Progress = (message: string) => void;

export interface ImageRecord {
  readonly key: string;
  readonly ref: string;
  readonly digest: string;
  readonly archive: string;
  readonly archiveSize: number;
  readonly reused: boolean;
}

export interface Prepared {
  readonly bins: Record<string, string>;
  readonly images: Record<string, ImageRecord>;
}

/** What `lab up --kubernetes` recorded: read by down, status, tour and tests. */
export interface ClusterRecord {
  readonly version: 1;
  readonly apiRelayPort: number;
  readonly images: Record<string, ImageRecord>;
  readonly startedAt: string;
  /** Milliseconds per bring-up step. */
  readonly timings: Record<string, number>;
}

/** Debian packages the node needs (command or file -> package); scripts/deps.sh installs them. */
export const NODE_TOOLS: Readonly<Record<string, string>> = {
  containerd: 'containerd',
  ctr: 'containerd',
  runc: 'runc',
  'containerd-shim-runc-v2': 'containerd',
  nsenter: 'util-linux',
  unshare: 'util-linux',
  '/usr/lib/cni/bridge': 'containernetworking-plugins',
  '/usr/lib/cni/host-local': 'containernetworking-plugins',
  '/usr/lib/cni/portmap': 'containernetworking-plugins',
  '/usr/lib/cni/loopback': 'containernetworking-plugins',
};

export function requireNodeTools(): void {
  const missing = Object.entries(NODE_TOOLS).filter(([t]) =>
    t.startsWith('/') ? !existsSync(t) : findTool(t) === null,
  );
  if (missing.length > 0) {
    throw new NamegateError(
      ErrorCode.CommandFailed,
      `missing for the Kubernetes node: ${missing.map(([t]) => t).join(', ')} (Debian packages: ${[...new Set(missing.map(([, p]) => p))].join(' ')}); run make deps`,
    );
  }
}

const BINARIES = [...COMPONENT_BINARIES, 'pause', 'helm'];
const IMAGES = ['namegate', 'pause', 'coredns', 'test-client'];

/** Build (or find in the caches) every binary and image the node needs. */
export async function prepareCluster(progress: Progress): Promise<Prepared> {
  requireNodeTools();
  progress(
    'building or finding the Kubernetes binaries (scripts/build-test-bins.sh; the first time takes minutes)',
  );
  const out = await exec(path.join(ROOT, 'scripts/build-test-bins.sh'), BINARIES, { maxBuffer: 1 << 20 });
  const bins: Record<string, string> = {};
  for (const line of out.stdout.split('\n')) {
    const m = /^([a-z-]+)=(.+)$/.exec(line.trim());
    if (m) bins[m[1]!] = m[2]!;
  }
  bins['containerd'] = findTool('containerd') ?? 'containerd';
  progress('building or finding the images (scripts/image/build.ts)');
  const img = await exec(process.execPath, [path.join(ROOT, 'scripts/image/build.ts'), '--json', ...IMAGES], {
    maxBuffer: 16 << 20,
  });
  const images: Record<string, ImageRecord> = {};
  for (const r of JSON.parse(img.stdout) as ImageRecord[]) images[r.key] = r;
  return { bins, images };
}

async function writeConfigs(cp: ClusterPlan, prepared: Prepared, relayPort: number): Promise<void> {
  const p = cp.paths;
  for (const dir of [
    p.kubeconfigs,
    p.cniConfDir,
    p.cniIpam,
    p.kubeletDir,
    p.etcd,
    p.manifests,
    path.dirname(p.containerdConfig),
  ])
    await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(p.containerdConfig, containerdConfig(cp, prepared.images['pause']!.ref));
  await writeFile(path.join(p.cniConfDir, '10-namegate-lab.conflist'), cniConflist(cp));
  await writeFile(p.kubeletConfig, kubeletConfig(cp));
  await writeFile(p.kubeProxyConfig, kubeProxyConfig(cp));
  const local = `https://127.0.0.1:${cp.apiPort}`;
  for (const id of identities(cp)) {
    if (id.kind !== 'client' || id.file === 'apiserver-kubelet-client') continue;
    await writeFile(componentKubeconfig(cp, id.file), kubeconfig(cp, id.file, local), { mode: 0o600 });
  }
  await writeFile(p.hostKubeconfig, kubeconfig(cp, 'admin', `https://127.0.0.1:${relayPort}`), {
    mode: 0o600,
  });
}

/**
 * The relay in this machine's root namespace: 127.0.0.1:<free port> -> the Unix socket. Its pid
 * file is under pids/host/, out of lab down's namespace sweep (that sweep ends every process
 * sharing a pid-file process's network namespace, which must never be the root namespace).
 */
async function startHostRelay(cp: ClusterPlan): Promise<number> {
  const s = statePaths(cp.lab);
  const log = path.join(s.logs, 'apirelay-host.log');
  await mkdir(path.join(s.pids, 'host'), { recursive: true });
  const fd = openSync(log, 'a');
  let pid: number | undefined;
  try {
    const child = spawn(process.execPath, [RELAY, 'tcp:127.0.0.1:0', `unix:${cp.paths.relaySocket}`], {
      detached: true,
      stdio: ['ignore', fd, fd],
    });
    child.unref();
    pid = child.pid;
  } finally {
    closeSync(fd);
  }
  if (pid === undefined) throw new NamegateError(ErrorCode.CommandFailed, 'could not start the API relay');
  await writeFile(path.join(s.pids, 'host', 'apirelay.pid'), `${pid}\n`);
  return waitFor('the API relay listening', 10_000, async () => {
    if (!isAlive(pid)) throw new Error(await logTail(log));
    const m = /listening tcp:127\.0\.0\.1:(\d+)/.exec(await readFile(log, 'utf8'));
    return m ? Number(m[1]) : undefined;
  });
}

/** Import an OCI archive into containerd's k8s.io namespace (what the kubelet sees). */
async function importImage(cp: ClusterPlan, holder: number, archive: string): Promise<void> {
  await must(
    inNode(holder, [
      findTool('ctr') ?? 'ctr',
      '--address',
      cp.paths.containerdSocket,
      '-n',
      'k8s.io',
      'images',
      'import',
      archive,
    ]),
    { timeoutMs: 180_000 },
  );
}

async function timed<T>(
  timings: Record<string, number>,
  key: string,
  progress: Progress,
  what: string,
  fn: () => Promise<T>,
): Promise<T> {
  const start = performance.now();
  progress(`${what}...`);
  const out = await fn();
  timings[key] = Math.round(performance.now() - start);
  progress(`  ok (${timings[key]} ms)`);
  return out;
}

async function waitSocket(file: string, daemon: Daemon, timeoutMs: number): Promise<void> {
  await waitFor(`${daemon.name} socket ${file}`, timeoutMs, async () => {
    if (!isAlive(daemon.pid)) throw new Error(`${daemon.name} exited:\n${await logTail(daemon.log)}`);
    return existsSync(file) ? true : undefined;
  });
}

/** Start the node and its control plane; returns the daemons' pids for the lab state. */
export async function startCluster(
  lab: LabPlan,
  prepared: Prepared,
  progress: Progress,
): Promise<{ pids: Record<string, number>; record: ClusterRecord }> {
  const cp = clusterPlan(lab.name, { stateRoot: path.dirname(lab.stateDir) });
  const timings: Record<string, number> = {};
  const bins = prepared.bins;
  const argv = daemonArgv(cp, {
    etcd: bins['etcd']!,
    'kube-apiserver': bins['kube-apiserver']!,
    'kube-controller-manager': bins['kube-controller-manager']!,
    'kube-scheduler': bins['kube-scheduler']!,
    kubelet: bins['kubelet']!,
    'kube-proxy': bins['kube-proxy']!,
    containerd: bins['containerd']!,
  });
  const pids: Record<string, number> = {};
  const keep = (d: Daemon): Daemon => {
    pids[d.name] = d.pid;
    return d;
  };

  await timed(timings, 'pki', progress, 'making the cluster PKI', () => makeClusterPki(cp));
  await mkdir(path.dirname(cp.paths.relaySocket), { recursive: true });
  const relayPort = await startHostRelay(cp);
  await writeConfigs(cp, prepared, relayPort);
  // The node's network: bridge traffic passes the node's netfilter hooks (kube-proxy, namegate).
  await must([
    'ip',
    'netns',
    'exec',
    lab.nodeNetns,
    'sysctl',
    '-q',
    '-w',
    'net.bridge.bridge-nf-call-iptables=1',
  ]);
  await createCgroups(cp);
  const holder = await timed(timings, 'holder', progress, 'opening the node namespaces (PID, mount)', () =>
    startHolder(cp, bins['pause']!),
  );
  pids['node'] = holder;

  const containerd = keep(await startNodeDaemon(cp, holder, 'containerd', argv['containerd']!));
  const etcd = keep(await startNodeDaemon(cp, holder, 'etcd', argv['etcd']!));
  await waitSocket(cp.paths.containerdSocket, containerd, 30_000);
  const imports = timed(timings, 'images', progress, 'importing the images into containerd', async () => {
    for (const key of IMAGES) await importImage(cp, holder, prepared.images[key]!.archive);
  });
  await waitListening(lab.nodeNetns, ['tcp 127.0.0.1:2379'], [etcd], 30_000);
  const apiserver = keep(await startNodeDaemon(cp, holder, 'kube-apiserver', argv['kube-apiserver']!));
  const relay = keep(
    await startDaemon(lab, {
      name: 'apirelay',
      netns: lab.nodeNetns,
      argv: [process.execPath, RELAY, `unix:${cp.paths.relaySocket}`, `tcp:127.0.0.1:${cp.apiPort}`],
    }),
  );
  const api = adminApi(cp, { timeoutMs: 5000 });
  await timed(timings, 'apiserver', progress, 'waiting for kube-apiserver', () =>
    waitFor('kube-apiserver ready', 90_000, async () => {
      for (const d of [apiserver, relay, etcd])
        if (!isAlive(d.pid)) throw new Error(`${d.name} exited:\n${await logTail(d.log)}`);
      const r = await api.text('GET', '/readyz');
      return r.status === 200 ? true : undefined;
    }),
  );
  for (const name of ['kube-controller-manager', 'kube-scheduler', 'kubelet', 'kube-proxy']) {
    keep(await startNodeDaemon(cp, holder, name, argv[name]!));
  }
  await imports;
  await timed(timings, 'node', progress, `waiting for node ${cp.nodeName} to be Ready`, () =>
    waitNodeReady(api, cp),
  );
  await timed(timings, 'coredns', progress, 'starting CoreDNS (the cluster DNS)', async () => {
    for (const obj of corednsObjects(cp, prepared.images['coredns']!.ref))
      await apply(api, obj, { fieldManager: FIELD_MANAGER });
    await waitRolledOut(api, 'Deployment', 'kube-system', 'coredns');
  });
  const record: ClusterRecord = {
    version: 1,
    apiRelayPort: relayPort,
    images: prepared.images,
    startedAt: new Date().toISOString(),
    timings,
  };
  await writeFile(cp.paths.record, `${JSON.stringify(record, null, 2)}\n`);
  return { pids, record };
}

export function readClusterRecord(cp: ClusterPlan): ClusterRecord | null {
  try {
    return JSON.parse(readFileSync(cp.paths.record, 'utf8')) as ClusterRecord;
  } catch {
    return null;
  }
}
