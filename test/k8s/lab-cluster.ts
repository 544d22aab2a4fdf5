/**
 * The lab joined to a real control plane, for the end-to-end test and the k8s benchmark:
 *
 * - `startApiBridge` carries the API server's loopback port (root network namespace) into the
 *   lab's node namespace through two relays joined by a Unix socket (src/lab/relay.ts),
 *   so the agent in the node namespace dials https://127.0.0.1:<port> and no route or firewall
 *   rule changes anywhere;
 * - `agentKubeconfig` rewrites a ServiceAccount kubeconfig (TokenRequest token) to that port;
 * - `kubeAgentConfig` / `startKubeAgent` run the real agent (`namegate agent`, nftables) in the
 *   node namespace with identities and policies from the API;
 * - `chartRbac` renders the chart's ServiceAccounts and RBAC with helm;
 * - probes: `dnsAnswer` (dig from a pod), `curlFrom`, `kernelState` (the nft sets), `agentMetric`.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import type { KubeObject } from '../../src/k8s/api.ts';
import { labAgentConfig } from '../../src/lab/agent-config.ts';
import { type ExecResult, labExec, targetNetns } from '../../src/lab/exec.ts';
import { startAgent } from '../../src/lab/lab.ts';
import { helloBody } from '../../src/lab/nginx-config.ts';
import type { LabPlan } from '../../src/lab/plan.ts';
import { statePaths } from '../../src/lab/plan.ts';
import { type Daemon, isAlive, logTail, startDaemon } from '../../src/lab/processes.ts';
import { findTool } from '../../src/lab/run.ts';
import { waitListening } from '../../src/lab/sockets.ts';
import type { TestApiServer } from './apiserver.ts';
import { testBinary } from './apiserver.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BRIDGE = path.join(ROOT, 'src/lab/relay.ts');
export const CHART = path.join(ROOT, 'deploy/helm/namegate');
/** The chart's release namespace in these tests. */
export const RELEASE_NAMESPACE = 'namegate-system';
/** Port the API server appears on inside the node namespace (its own loopback: no clash). */
export const BRIDGE_PORT = 6443;

/** Files of this run that belong with the lab (removed by lab down with the state dir). */
export function k8sDir(plan: LabPlan): string {
  const dir = path.join(plan.stateDir, 'k8s');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

/** `helm template` of the chart: the ServiceAccounts, (Cluster)Roles and bindings. */
export function chartRbac(set: readonly string[] = []): KubeObject[] {
  const out = execFileSync(
    testBinary('helm'),
    ['template', 'namegate', CHART, '--namespace', RELEASE_NAMESPACE, ...set.flatMap((s) => ['--set', s])],
    { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
  );
  const kinds = new Set(['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding']);
  return parseAllDocuments(out)
    .map((d) => d.toJS() as KubeObject | null)
    .filter((d): d is KubeObject => d !== null && kinds.has(d.kind ?? ''));
}

export interface ApiBridge {
  readonly port: number;
  stop(): Promise<void>;
}

async function stopChild(child: ChildProcess, timeoutMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(timer);
}

/** End a lab daemon we started (by its pid), SIGKILL after a bound. */
export async function stopDaemon(d: Daemon, timeoutMs = 10_000): Promise<void> {
  if (!isAlive(d.pid)) return;
  process.kill(d.pid, 'SIGTERM');
  const timer = setTimeout(() => {
    if (isAlive(d.pid)) process.kill(d.pid, 'SIGKILL');
  }, timeoutMs);
  await d.exited;
  clearTimeout(timer);
}

function waitLine(child: ChildProcess, prefix: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(
      () => reject(new Error(`relay: no "${prefix}" within ${timeoutMs} ms`)),
      timeoutMs,
    );
    child.stdout?.on('data', (b: Buffer) => {
      seen += b.toString();
      if (seen.includes(prefix)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`relay exited with code ${code} before listening`));
    });
  });
}

/**
 * Make the API server reachable at 127.0.0.1:<port> inside the lab's node namespace. The relay in
 * the node namespace is a lab daemon (pid file, log, ended by lab down as well); the one in the
 * root namespace is our child and gets no pid file: lab down ends every process sharing the
 * network namespace of a pid-file process, and that must never be the root namespace.
 */
export async function startApiBridge(
  plan: LabPlan,
  server: TestApiServer,
  port = BRIDGE_PORT,
): Promise<ApiBridge> {
  const socket = path.join(k8sDir(plan), 'api.sock');
  const outside = spawn(process.execPath, [BRIDGE, `unix:${socket}`, `tcp:127.0.0.1:${server.apiPort}`], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let inside: Daemon | null = null;
  const stop = async (): Promise<void> => {
    if (inside) await stopDaemon(inside);
    await stopChild(outside);
  };
  try {
    await waitLine(outside, 'listening', 10_000);
    inside = await startDaemon(plan, {
      name: 'apibridge',
      netns: plan.nodeNetns,
      argv: [process.execPath, BRIDGE, `tcp:127.0.0.1:${port}`, `unix:${socket}`],
    });
    await waitListening(plan.nodeNetns, [`tcp 127.0.0.1:${port}`], [inside], 10_000);
  } catch (err) {
    await stop();
    throw err;
  }
  return { port, stop };
}

/** A copy of a kubeconfig (from serviceAccountConfig) that dials the bridge instead. */
export function agentKubeconfig(
  plan: LabPlan,
  server: TestApiServer,
  kubeconfigPath: string,
  port = BRIDGE_PORT,
): string {
  const text = readFileSync(kubeconfigPath, 'utf8');
  const from = `server: ${server.url}`;
  if (!text.includes(from)) throw new Error(`${kubeconfigPath} does not name ${server.url}`);
  const file = path.join(k8sDir(plan), `${path.basename(kubeconfigPath, '.kubeconfig')}-bridged.kubeconfig`);
  writeFileSync(file, text.replace(from, `server: https://127.0.0.1:${port}`), { mode: 0o600 });
  return file;
}

export interface KubeSection {
  readonly kubeconfig: string;
  readonly nodeName: string;
  readonly dialects?: { cilium?: boolean; istio?: boolean; npep?: boolean; gke?: boolean };
}

/**
 * The lab's agent config with identities and policies from the API: no static source groups and
 * no policy files, and a `kubernetes:` section.
 */
export function kubeAgentConfig(plan: LabPlan, kube: KubeSection): Record<string, unknown> {
  const base = Object.entries(labAgentConfig(plan, [])).filter(([k]) => k !== 'sources' && k !== 'policies');
  return { ...Object.fromEntries(base), kubernetes: { ...kube } };
}

/** Write the config and start `namegate agent` in the node namespace; ready when DNS listens. */
export async function startKubeAgent(plan: LabPlan, config: Record<string, unknown>): Promise<Daemon> {
  await writeFile(
    statePaths(plan).agentConfig,
    `# namegate agent for lab ${plan.name}, identities and policies from the Kubernetes API\n${stringify(config)}`,
  );
  try {
    return await startAgent(plan, 'agent');
  } catch (err) {
    // The readiness wait only says "not listening"; the agent's log says why (403, TLS, ...).
    if (err instanceof Error) err.message += `\n--- end of the agent log ---\n${await agentLog(plan, 20)}`;
    throw err;
  }
}

export function agentLog(plan: LabPlan, lines = 40): Promise<string> {
  return logTail(path.join(statePaths(plan).logs, 'agent.log'), lines);
}

/**
 * Revocations the agent reported done (log reason `revoked`: elements and their flows gone)
 * that name `source`, over the whole agent log.
 */
export async function agentRevocations(plan: LabPlan, source: string): Promise<number> {
  const text = await readFile(path.join(statePaths(plan).logs, 'agent.log'), 'utf8').catch(() => '');
  let n = 0;
  for (const line of text.split('\n')) {
    if (!line.includes('"revoked"')) continue;
    try {
      const entry = JSON.parse(line) as { reason?: unknown; sources?: unknown };
      if (entry.reason === 'revoked' && Array.isArray(entry.sources) && entry.sources.includes(source)) n++;
    } catch {
      // a line cut by a concurrent write: not counted
    }
  }
  return n;
}

export interface DnsAnswer {
  /** NOERROR, REFUSED, NXDOMAIN, ... or TIMEOUT when nothing answered. */
  readonly status: string;
  readonly answers: readonly string[];
}

/** Ask the pod's resolver (the agent, through resolv.conf and the DNS redirect). */
export async function dnsAnswer(
  plan: LabPlan,
  pod: string,
  name: string,
  type = 'A',
  /** dig's wait; more than dns.unknownHoldMs (2 s) for an address the agent does not know. */
  timeS = 1,
): Promise<DnsAnswer> {
  const r = await labExec(
    plan,
    pod,
    ['dig', `+time=${timeS}`, '+tries=1', '+noall', '+comments', '+answer', name, type],
    { timeoutMs: 5000 + timeS * 1000 },
  );
  return parseDig(r.stdout);
}

/** `dig +noall +comments +answer` output: the status and the answers' data. */
export function parseDig(stdout: string): DnsAnswer {
  const status = /status: ([A-Z]+)/.exec(stdout)?.[1] ?? 'TIMEOUT';
  const answers = stdout
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith(';'))
    .map((l) => l.trim().split(/\s+/).at(-1) ?? '');
  return { status, answers };
}

export interface CurlOptions {
  /** Connect to this address instead of resolving (curl --resolve). */
  readonly ip?: string;
  readonly family?: 4 | 6;
  readonly scheme?: 'https' | 'http';
  readonly connectTimeoutS?: number;
}

/** curl from a pod: HTTPS with the lab CA. code 0 = success, 28 = timeout (dropped). */
export function curlFrom(plan: LabPlan, pod: string, name: string, o: CurlOptions = {}): Promise<ExecResult> {
  const scheme = o.scheme ?? 'https';
  const port = scheme === 'https' ? 443 : 80;
  const connect = o.connectTimeoutS ?? 2;
  const argv = [
    'curl',
    '-sS',
    '--connect-timeout',
    String(connect),
    '--max-time',
    String(connect + 3),
    '--cacert',
    statePaths(plan).caCert,
  ];
  if (o.family) argv.push(`-${o.family}`);
  if (o.ip) argv.push('--resolve', `${name}:${port}:${o.ip.includes(':') ? `[${o.ip}]` : o.ip}`);
  argv.push(`${scheme}://${name}/`);
  return labExec(plan, pod, argv, { timeoutMs: (connect + 5) * 1000 });
}

/**
 * One TLS connection from a pod, held open (openssl s_client), carrying HTTP/1.1 requests: to show
 * that an established flow ends when its element is revoked, not only new connections.
 */
export class PodConnection {
  readonly #child: ChildProcess;
  readonly #name: string;
  #out = '';

  private constructor(child: ChildProcess, name: string) {
    this.#child = child;
    this.#name = name;
    child.stdout?.on('data', (b: Buffer) => {
      this.#out += b.toString();
    });
    // A write after the client exited (the server closed): EPIPE, which `closed` reports.
    child.stdin?.on('error', () => undefined);
  }

  static open(plan: LabPlan, pod: string, name: string, ip: string): PodConnection {
    const target = ip.includes(':') ? `[${ip}]:443` : `${ip}:443`;
    const argv = [
      'netns',
      'exec',
      targetNetns(plan, pod),
      'openssl',
      's_client',
      '-quiet',
      '-connect',
      target,
      '-servername',
      name,
      '-CAfile',
      statePaths(plan).caCert,
      '-verify_return_error',
    ];
    return PodConnection.spawn(findTool('ip') ?? 'ip', argv, name);
  }

  /** The same over any command that runs openssl s_client in the pod (nsenter on a real node). */
  static spawn(command: string, argv: readonly string[], name: string): PodConnection {
    const child = spawn(command, argv, { stdio: ['pipe', 'pipe', 'ignore'] });
    return new PodConnection(child, name);
  }

  /** Send one request without waiting: the returned function tells whether its answer came. */
  send(): () => boolean {
    const want = helloBody(this.#name);
    const from = this.#out.length;
    this.#child.stdin?.write(`GET / HTTP/1.1\r\nHost: ${this.#name}\r\n\r\n`);
    return () => this.#out.slice(from).includes(want);
  }

  /** The client exited: the server closed the connection (or it broke). */
  get closed(): boolean {
    return this.#child.exitCode !== null || this.#child.signalCode !== null;
  }

  /** Send one request on the connection; true when the answer came within timeoutMs. */
  async request(timeoutMs: number): Promise<boolean> {
    const want = helloBody(this.#name);
    const from = this.#out.length;
    this.#child.stdin?.write(`GET / HTTP/1.1\r\nHost: ${this.#name}\r\n\r\n`);
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      if (this.#out.slice(from).includes(want)) return true;
      if (this.#child.exitCode !== null || this.#child.signalCode !== null) return false;
      await new Promise((r) => setTimeout(r, 20));
    }
    return false;
  }

  close(): Promise<void> {
    return stopChild(this.#child);
  }
}

export interface KernelElement {
  readonly set: string;
  readonly source: string;
  readonly destination: string;
  readonly protocol: string;
  readonly port: number | null;
}

export interface KernelState {
  /** Learned elements (allow, allowall, allowrange; both families). */
  readonly learned: readonly KernelElement[];
  /** Governed sources by mode. */
  readonly enforce: ReadonlySet<string>;
  readonly audit: ReadonlySet<string>;
}

/** The agent's nft table in the node namespace, read with `nft -j`. */
export async function kernelState(plan: LabPlan, table = 'namegate'): Promise<KernelState> {
  const r = await labExec(plan, 'node', ['nft', '-j', 'list', 'table', 'inet', table], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`nft list table: ${r.stderr.trim()}`);
  const doc = JSON.parse(r.stdout) as {
    nftables: Array<{ set?: { name: string; elem?: unknown[] } }>;
  };
  const learned: KernelElement[] = [];
  const enforce = new Set<string>();
  const audit = new Set<string>();
  for (const item of doc.nftables) {
    const set = item.set;
    if (!set) continue;
    for (const raw of set.elem ?? []) {
      const value = unwrap(raw);
      if (/^(enforce|audit)[46]$/.test(set.name)) {
        if (typeof value === 'string') (set.name.startsWith('enforce') ? enforce : audit).add(value);
        continue;
      }
      if (!/^allow(all|range)?[46]$/.test(set.name)) continue;
      const parts = (value as { concat?: unknown[] }).concat ?? [];
      const [source, destination, protocol, port] = parts;
      learned.push({
        set: set.name,
        source: String(source),
        destination: String(destination),
        protocol: String(protocol),
        port: typeof port === 'number' ? port : null,
      });
    }
  }
  return { learned, enforce, audit };
}

/** An nft JSON element: {elem: {val: ...}} with timeouts, or the bare value. */
function unwrap(raw: unknown): unknown {
  if (raw && typeof raw === 'object' && 'elem' in raw) return (raw as { elem: { val: unknown } }).elem.val;
  return raw;
}

/** Sum of a metric's samples on the agent's /metrics whose labels include `labels`. */
export async function agentMetric(
  plan: LabPlan,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const r = await labExec(plan, 'node', ['curl', '-sS', '--max-time', '3', 'http://127.0.0.1:9253/metrics'], {
    timeoutMs: 5000,
  });
  if (r.code !== 0) throw new Error(`agent /metrics: ${r.stderr.trim()}`);
  let sum = 0;
  for (const line of r.stdout.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const text = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => text.includes(`${k}="${v}"`))) sum += Number(m[3]);
  }
  return sum;
}

/**
 * Poll `probe` (no sleep beyond a short yield: each probe runs a process in a namespace) until
 * it holds; resolve with the milliseconds since `start`. Throws after `timeoutMs`.
 */
export async function msUntil(
  start: number,
  what: string,
  probe: () => Promise<boolean>,
  timeoutMs = 15_000,
): Promise<number> {
  let last: unknown = null;
  for (;;) {
    try {
      if (await probe()) return performance.now() - start;
      last = null;
    } catch (err) {
      last = err;
    }
    if (performance.now() - start > timeoutMs) {
      throw new Error(
        `${what}: not seen within ${timeoutMs} ms${last ? ` (last error: ${String(last)})` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}
