/**
 * Bringing a lab up, down and reporting on it. `up` records what it is about to create in
 * state.json before creating anything, so `down` after a crash at any point knows what to remove;
 * `down` also works from the plan alone (names are deterministic), is idempotent, and leaves no
 * namespace, process, /etc/netns entry or state dir behind.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCode, errorMessage, NamegateError } from '../core/errors.ts';
import { agentConfigYaml, labAgentConfig } from './agent-config.ts';
import { makeCertificates } from './certs.ts';
import { removeClusterCgroups, stopCluster } from './cluster/down.ts';
import { knotConfig, zoneFile } from './knot-config.ts';
import type { ListenersConfig } from './listeners.ts';
import { createTopology, deleteTopology, netnsExists } from './netns.ts';
import { helloBody, nginxConfig, nginxSockets } from './nginx-config.ts';
import { type LabPlan, labPlan, type PlanOptions, statePaths } from './plan.ts';
import {
  type Daemon,
  describePid,
  labProcesses,
  ownedPid,
  pidFiles,
  startDaemon,
  stopLabProcesses,
} from './processes.ts';
import { findTool, inNetns, must, requireRoot, requireTools, run } from './run.ts';
import { waitListening } from './sockets.ts';

export type Progress = (message: string) => void;

export type AgentCommand = 'agent' | 'dns';
export const AGENT_COMMANDS: readonly AgentCommand[] = ['agent', 'dns'];

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const DEFAULT_POLICIES: readonly string[] = [path.join(REPO_ROOT, 'examples')];
const LISTENERS_SCRIPT = fileURLToPath(new URL('./listeners.ts', import.meta.url));
const CLI_MAIN = fileURLToPath(new URL('../cli/main.ts', import.meta.url));

export interface LabState {
  readonly version: 1;
  readonly name: string;
  readonly phase: 'creating' | 'up';
  readonly createdAt: string;
  readonly namespaces: readonly string[];
  readonly policies: readonly string[];
  readonly daemons: Readonly<Record<string, number>>;
}

export interface UpOptions extends PlanOptions {
  readonly name?: string;
  readonly policies?: readonly string[];
  /**
   * Also start namegate in the node namespace with the generated config: `agent` (the whole
   * agent) or `dns` (the DNS proxy alone, with a recording datapath: nothing is enforced).
   */
  readonly agent?: AgentCommand;
  /**
   * The node is a one-node Kubernetes cluster (src/lab/cluster) and the pods are real pods;
   * `agent` then installs namegate with helm, with the workloads and example policies.
   */
  readonly kubernetes?: boolean;
  readonly progress?: Progress;
}

export interface UpResult {
  readonly plan: LabPlan;
  readonly recreated: boolean;
  readonly agentConfigPath: string;
}

const quiet: Progress = () => {};

export async function readState(plan: LabPlan): Promise<LabState | null> {
  try {
    const parsed = JSON.parse(await readFile(statePaths(plan).stateFile, 'utf8')) as LabState;
    return parsed && parsed.version === 1 && Array.isArray(parsed.namespaces) ? parsed : null;
  } catch {
    return null;
  }
}

async function writeState(plan: LabPlan, state: LabState): Promise<void> {
  // Write then rename: a crash leaves the old state or the new one, never half a file.
  const file = statePaths(plan).stateFile;
  await writeFile(`${file}.tmp`, `${JSON.stringify(state, null, 2)}\n`);
  await rename(`${file}.tmp`, file);
}

/** Does anything of this lab exist (a namespace, or its state dir)? */
export function labExists(plan: LabPlan): boolean {
  return existsSync(plan.stateDir) || plan.namespaces.some(netnsExists);
}

async function timed<T>(progress: Progress, what: string, fn: () => Promise<T>): Promise<T> {
  const start = performance.now();
  progress(`${what}...`);
  const out = await fn();
  progress(`  ok (${Math.round(performance.now() - start)} ms)`);
  return out;
}

function absolute(paths: readonly string[]): string[] {
  return paths.map((p) => path.resolve(p));
}

export async function labUp(options: UpOptions = {}): Promise<UpResult> {
  requireRoot('namegate lab up');
  requireTools();
  const progress = options.progress ?? quiet;
  const plan = labPlan(options.name, options);
  const policies = absolute(
    options.policies && options.policies.length > 0 ? options.policies : DEFAULT_POLICIES,
  );
  for (const p of policies) {
    if (!existsSync(p)) throw new NamegateError(ErrorCode.UsageInvalid, `--policies: ${p} does not exist`);
  }
  // The cluster's binaries and images first: a missing build fails before anything exists.
  const cluster = options.kubernetes ? await import('./cluster/up.ts') : null;
  const prepared = cluster
    ? await timed(progress, 'preparing the Kubernetes node', () => cluster.prepareCluster(progress))
    : null;
  const recreated = labExists(plan);
  if (recreated) {
    progress(`lab ${plan.name} exists: removing it to recreate it from scratch`);
    await labDown({ name: plan.name, ...(options.stateRoot ? { stateRoot: options.stateRoot } : {}) });
  }
  const paths = statePaths(plan);
  const state: LabState = {
    version: 1,
    name: plan.name,
    phase: 'creating',
    createdAt: new Date().toISOString(),
    namespaces: plan.namespaces,
    policies,
    daemons: {},
  };
  await mkdir(plan.stateDir, { recursive: true, mode: 0o700 });
  await writeState(plan, state);
  try {
    await timed(progress, `creating namespaces ${plan.namespaces.join(', ')}`, () => createTopology(plan));
    const secret = randomBytes(32).toString('base64');
    await timed(progress, 'writing the lab CA, certificates, zone and server configs', async () => {
      await makeCertificates(plan);
      await mkdir(path.join(paths.knot, 'run'), { recursive: true });
      await mkdir(path.join(paths.knot, 'db'), { recursive: true });
      await mkdir(path.join(paths.nginx, 'tmp'), { recursive: true });
      await writeFile(paths.tsigKey, `${secret}\n`, { mode: 0o600 });
      await writeFile(paths.knotConf, knotConfig(plan, secret), { mode: 0o600 });
      await writeFile(paths.zoneFile, zoneFile(plan));
      await writeFile(paths.nginxConf, nginxConfig(plan));
      await writeFile(paths.listenersConf, `${JSON.stringify(listenersConfig(plan), null, 2)}\n`);
    });
    const daemons = await timed(
      progress,
      'starting knotd, nginx and the escape listeners in the internet namespace',
      () => startInternet(plan),
    );
    await timed(progress, 'checking a pod reaches knot and nginx', () => verify(plan));
    const config = labAgentConfig(plan, policies);
    await writeFile(paths.agentConfig, agentConfigYaml(plan, config));
    const pids: Record<string, number> = {};
    for (const d of daemons) pids[d.name] = d.pid;
    const command = options.agent;
    if (cluster && prepared) {
      const started = await cluster.startCluster(plan, prepared, progress);
      Object.assign(pids, started.pids);
      if (command)
        await (await import('./cluster/install.ts')).installLab(plan, started.record, policies, progress);
    } else if (command) {
      const agent = await timed(progress, `starting namegate ${command} in the node namespace`, () =>
        startAgent(plan, command),
      );
      pids[agent.name] = agent.pid;
    }
    await writeState(plan, { ...state, phase: 'up', daemons: pids });
    return { plan, recreated, agentConfigPath: paths.agentConfig };
  } catch (err) {
    progress(`lab up failed (${errorMessage(err).split('\n')[0]}); removing what was created`);
    await labDown({ name: plan.name, ...(options.stateRoot ? { stateRoot: options.stateRoot } : {}) }).catch(
      () => {},
    );
    throw err;
  }
}

export function listenersConfig(plan: LabPlan): ListenersConfig {
  const quic = plan.sites.flatMap((s) => [...s.ipv4, ...s.spare4, ...s.ipv6, ...s.spare6]);
  const other = [plan.otherResolver.ipv4, plan.otherResolver.ipv6];
  return {
    quic: { port: plan.quicPort, addresses: quic },
    dot: { port: plan.dotPort, addresses: other },
    dns: {
      port: plan.otherResolver.port,
      addresses: other,
      answer4: plan.otherResolverAnswer.ipv4,
      answer6: plan.otherResolverAnswer.ipv6,
    },
  };
}

function sock(proto: 'tcp' | 'udp', ip: string, port: number): string {
  return `${proto} ${ip.includes(':') ? `[${ip}]` : ip}:${port}`;
}

/** The sockets that must be bound in the internet namespace once its daemons are ready. */
export function internetSockets(plan: LabPlan): string[] {
  const out: string[] = [];
  for (const ip of [plan.upstream.ipv4, plan.upstream.ipv6]) {
    out.push(sock('udp', ip, plan.upstream.port), sock('tcp', ip, plan.upstream.port));
  }
  for (const s of nginxSockets(plan)) out.push(`tcp ${s}`);
  const l = listenersConfig(plan);
  for (const ip of l.quic.addresses) out.push(sock('udp', ip, l.quic.port));
  for (const ip of l.dot.addresses) out.push(sock('tcp', ip, l.dot.port));
  for (const ip of l.dns.addresses) out.push(sock('udp', ip, l.dns.port), sock('tcp', ip, l.dns.port));
  return out;
}

function tool(name: string): string {
  return findTool(name) ?? name;
}

async function startInternet(plan: LabPlan): Promise<Daemon[]> {
  const p = statePaths(plan);
  const daemons: Daemon[] = [];
  daemons.push(
    await startDaemon(plan, {
      name: 'knotd',
      netns: plan.inetNetns,
      argv: [tool('knotd'), '-c', p.knotConf],
    }),
  );
  daemons.push(
    await startDaemon(plan, {
      name: 'nginx',
      netns: plan.inetNetns,
      argv: [tool('nginx'), '-e', path.join(p.logs, 'nginx-error.log'), '-p', p.nginx, '-c', p.nginxConf],
    }),
  );
  daemons.push(
    await startDaemon(plan, {
      name: 'listeners',
      netns: plan.inetNetns,
      argv: [process.execPath, LISTENERS_SCRIPT, p.listenersConf],
    }),
  );
  await waitListening(plan.inetNetns, internetSockets(plan), daemons, 20_000);
  return daemons;
}

/** With no agent, everything routes: a pod reaches knot directly and nginx by address. */
async function verify(plan: LabPlan): Promise<void> {
  // A Kubernetes lab has no static pods yet: check from the node.
  const from = plan.pods.at(-1)?.netns ?? plan.nodeNetns;
  const site = plan.sites[0]!;
  const name = site.names[0]!;
  const dig = await must(
    inNetns(from, ['dig', `@${plan.upstream.ipv4}`, '+short', '+time=2', '+tries=2', name, 'A']),
    { timeoutMs: 10_000 },
  );
  if (dig.stdout.trim() !== site.ipv4[0]) {
    throw new NamegateError(
      ErrorCode.CommandFailed,
      `knot answered ${JSON.stringify(dig.stdout.trim())} for ${name}`,
    );
  }
  const curl = await must(
    inNetns(from, [
      'curl',
      '-sS',
      '--max-time',
      '5',
      '--cacert',
      statePaths(plan).caCert,
      '--resolve',
      `${name}:443:${site.ipv4[0]}`,
      `https://${name}/`,
    ]),
    { timeoutMs: 10_000 },
  );
  if (curl.stdout.trim() !== helloBody(name)) {
    throw new NamegateError(
      ErrorCode.CommandFailed,
      `nginx answered ${JSON.stringify(curl.stdout.trim())} for ${name}`,
    );
  }
}

/**
 * Start `namegate <agent|dns> --config <state>/agent.yaml` in the node namespace (pid file
 * "agent", log logs/agent.log); ready when its DNS listens on the resolver address.
 */
export async function startAgent(plan: LabPlan, command: AgentCommand = 'agent'): Promise<Daemon> {
  const p = statePaths(plan);
  const agent = await startDaemon(plan, {
    name: 'agent',
    netns: plan.nodeNetns,
    // The same V8 flag bin/namegate gives the agent (short young-generation GC pauses).
    argv: [process.execPath, '--max-semi-space-size=2', CLI_MAIN, command, '--config', p.agentConfig],
  });
  await waitListening(plan.nodeNetns, [sock('udp', plan.resolver.ipv4, plan.resolver.port)], [agent], 30_000);
  return agent;
}

export interface DownOptions extends PlanOptions {
  readonly name?: string;
  readonly progress?: Progress;
}

export interface DownResult {
  readonly plan: LabPlan;
  readonly processes: readonly number[];
  readonly namespaces: readonly string[];
  readonly stateDirRemoved: boolean;
}

export async function labDown(options: DownOptions = {}): Promise<DownResult> {
  requireRoot('namegate lab down');
  const progress = options.progress ?? quiet;
  const plan = labPlan(options.name, options);
  const state = await readState(plan);
  // Names from state.json too: a lab made by another version may have had other pods.
  const names = [...new Set([...plan.namespaces, ...(state?.namespaces ?? [])])].filter((n) =>
    n.startsWith(`ng-${plan.name}-`),
  );
  for (const what of await stopCluster(plan)) progress(`ended ${what}`);
  const processes = await stopLabProcesses(plan, names);
  if (processes.length > 0) progress(`ended ${processes.length} processes: ${processes.join(' ')}`);
  const namespaces = await deleteTopology(names);
  if (namespaces.length > 0) progress(`deleted namespaces ${namespaces.join(', ')}`);
  const cgroups = await removeClusterCgroups(plan);
  if (cgroups > 0) progress(`removed ${cgroups} cgroups`);
  const stateDirRemoved = existsSync(plan.stateDir);
  await rm(plan.stateDir, { recursive: true, force: true });
  if (stateDirRemoved) progress(`removed ${plan.stateDir}`);
  const left = names.filter(netnsExists);
  if (left.length > 0) {
    throw new NamegateError(
      ErrorCode.CommandFailed,
      `namespaces still exist after lab down: ${left.join(', ')}`,
    );
  }
  return { plan, processes, namespaces, stateDirRemoved };
}

export interface NamespaceStatus {
  readonly name: string;
  readonly exists: boolean;
  readonly processes: readonly string[];
}

export interface DaemonStatus {
  readonly name: string;
  readonly pid: number;
  readonly running: boolean;
}

export interface LabStatus {
  readonly plan: LabPlan;
  readonly exists: boolean;
  readonly state: LabState | null;
  readonly namespaces: readonly NamespaceStatus[];
  readonly daemons: readonly DaemonStatus[];
  /** Every live lab process, including ones without a pid file (nginx workers, shells). */
  readonly processes: readonly string[];
}

export async function labStatus(options: PlanOptions & { readonly name?: string } = {}): Promise<LabStatus> {
  const plan = labPlan(options.name, options);
  const state = await readState(plan);
  const namespaces: NamespaceStatus[] = [];
  for (const ns of plan.namespaces) {
    const exists = netnsExists(ns);
    let processes: string[] = [];
    if (exists) {
      const r = await run(['ip', 'netns', 'pids', ns], { timeoutMs: 5000 });
      processes = r.stdout
        .split('\n')
        .filter((l) => /^\d+$/.test(l.trim()))
        .map((l) => describePid(Number(l)));
    }
    namespaces.push({ name: ns, exists, processes });
  }
  const daemons: DaemonStatus[] = [];
  for (const [name, pid] of await pidFiles(plan)) daemons.push({ name, pid, running: ownedPid(plan, pid) });
  const processes = (await labProcesses(plan, plan.namespaces)).map(describePid);
  return { plan, exists: labExists(plan), state, namespaces, daemons, processes };
}
