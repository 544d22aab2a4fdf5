/**
 * Helpers for the end-to-end tests: the lab with the agent, clients inside pods (curl, dig, nc,
 * ping) reduced to plain results, the kernel's sets and drop counters, the agent's metrics, flow
 * log and log, long-lived TCP connections, and polling with a deadline (never a blind sleep).
 *
 * Every lab a test brings up is removed by `downLab` (idempotent), which also checks that
 * nothing of it is left: namespaces, processes, the state dir.
 */
import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  AGENT_HTTP_LISTEN,
  agentConfigYaml,
  flowLogPath,
  type LabAgentConfig,
  labAgentConfig,
} from '../../../src/lab/agent-config.ts';
import { labExec } from '../../../src/lab/exec.ts';
import { labDown, labUp, startAgent } from '../../../src/lab/lab.ts';
import { netnsExists } from '../../../src/lab/netns.ts';
import { parseDig } from '../../../src/lab/observe.ts';
import { type LabPlan, labPlan, statePaths } from '../../../src/lab/plan.ts';
import { findTool, run } from '../../../src/lab/run.ts';
import { LAB_COMMANDS, skipUnless } from '../../support/requirements.ts';

const HOLD = fileURLToPath(new URL('./hold.ts', import.meta.url));
const IP = findTool('ip') ?? 'ip';
const EXAMPLES = fileURLToPath(new URL('../../../examples/', import.meta.url));

/** Skip reason for node:test: the suite needs root and the lab's tools (under CI: a failure). */
export const skip: string | false = skipUnless({ tools: LAB_COMMANDS });

// ---- waiting ---------------------------------------------------------------------------------

/** Poll `probe` until it returns something truthy; fail with `what` after the deadline. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | null | undefined | false> | T | null | undefined | false,
  options: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 15_000);
  const interval = options.intervalMs ?? 200;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() >= deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

// ---- the lab -----------------------------------------------------------------------------------

/**
 * A lab name of this process (lab names are 1-12 of [a-z0-9]): two runs of the same file at
 * once must not share a lab, since `lab up` recreates a lab that already exists.
 */
export function uniqueLabName(prefix: string): string {
  return `${prefix}${(process.pid % 46656).toString(36)}`.slice(0, 12);
}

/** The port of the echo server (hold.ts) in the internet namespace. */
export const ECHO_PORT = 9000;

/**
 * A policy for the payments-api pod: these names on these TCP ports (default: the echo port).
 * Tests add one to the example policies to give the pod something to hold a connection to.
 */
export function paymentsPolicy(
  name: string,
  names: readonly string[],
  ports: readonly number[] = [ECHO_PORT],
): string {
  return `apiVersion: namegate.dev/v1alpha1
kind: EgressPolicy
metadata:
  name: ${name}
  namespace: payments
spec:
  podSelector:
    matchLabels:
      app: payments-api
  egress:
    - toFQDNs:
${names.map((n) => `        - name: ${n}\n`).join('')}      ports:
${ports.map((port) => `        - port: ${port}\n          protocol: TCP\n`).join('')}`;
}

/** A temp folder with the example policies (not the agent config example) and extra files. */
export async function policyDir(extra: Readonly<Record<string, string>> = {}): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'namegate-e2e-'));
  for (const f of await readdir(EXAMPLES)) {
    if (f.endsWith('.yaml') && !f.endsWith('-config.yaml'))
      await cp(path.join(EXAMPLES, f), path.join(dir, f));
  }
  for (const [f, text] of Object.entries(extra)) await writeFile(path.join(dir, f), text);
  return dir;
}

export interface UpOptions {
  readonly policies?: readonly string[];
  /** Change the generated agent config before the agent starts (the agent always starts). */
  readonly config?: (c: LabAgentConfig) => Record<string, unknown>;
}

/**
 * The lab's config without the SNI proxy: payments-api's HTTPS then meets the IP sets alone, as
 * the datapath tests need (with the proxy, a refused 443 connection is closed by the proxy
 * instead of its SYN being dropped; sni.test.ts covers that side).
 */
export function withoutSniProxy(c: LabAgentConfig): Record<string, unknown> {
  return { ...c, proxy: { sni: { enabled: false } } };
}

/** Bring a lab up with the agent and wait until the agent is ready. */
export async function upLab(name: string, options: UpOptions = {}): Promise<LabPlan> {
  const policies = options.policies ? { policies: options.policies } : {};
  if (!options.config) {
    const { plan } = await labUp({ name, agent: 'agent', ...policies });
    await waitReady(plan);
    return plan;
  }
  const { plan } = await labUp({ name, ...policies });
  await writeAgentConfig(plan, options.config);
  await startLabAgent(plan);
  return plan;
}

export async function writeAgentConfig(
  plan: LabPlan,
  change: (c: LabAgentConfig) => Record<string, unknown>,
): Promise<void> {
  const state = JSON.parse(await readFile(statePaths(plan).stateFile, 'utf8')) as { policies: string[] };
  const config = change(labAgentConfig(plan, state.policies));
  await writeFile(statePaths(plan).agentConfig, agentConfigYaml(plan, config as unknown as LabAgentConfig));
}

/** Start (or restart) the agent in the node namespace and wait until /readyz says ready. */
export async function startLabAgent(plan: LabPlan): Promise<number> {
  const d = await startAgent(plan, 'agent');
  await waitReady(plan);
  return d.pid;
}

export async function agentPid(plan: LabPlan): Promise<number> {
  return Number((await readFile(path.join(statePaths(plan).pids, 'agent.pid'), 'utf8')).trim());
}

export function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

export async function waitReady(plan: LabPlan): Promise<void> {
  await waitFor(
    'the agent to be ready',
    async () => {
      const r = await labExec(
        plan,
        'node',
        ['curl', '-sS', '--max-time', '2', `http://${AGENT_HTTP_LISTEN}/readyz`],
        {
          timeoutMs: 5_000,
        },
      );
      return r.code === 0 && r.stdout.trim().startsWith('ready');
    },
    { timeoutMs: 30_000 },
  );
}

/** Every process whose command line names the lab's state dir, or that lives in its namespaces. */
export function labProcessesLeft(plan: LabPlan): string[] {
  const out: string[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmd.includes(plan.stateDir) || cmd.includes(`ng-${plan.name}-`)) out.push(`${d} ${cmd.trim()}`);
    } catch {
      // gone
    }
  }
  return out;
}

/** Does the root namespace hold a table inet namegate? (It never should: the lab's is in the node.) */
export async function rootHasNamegateTable(): Promise<boolean> {
  const r = await run(['nft', 'list', 'tables'], { timeoutMs: 10_000 });
  assert.equal(r.code, 0, r.stderr);
  return /^table inet namegate$/m.test(r.stdout);
}

/** `lab down`, then check that nothing of the lab is left. Idempotent. */
export async function downLab(name: string): Promise<void> {
  const plan = labPlan(name);
  await labDown({ name });
  const list = await run(['ip', 'netns', 'list'], { timeoutMs: 10_000 });
  assert.deepEqual(
    list.stdout.split('\n').filter((l) => l.startsWith(`ng-${name}-`)),
    [],
    'no namespace of the lab left',
  );
  for (const ns of plan.namespaces) assert.equal(netnsExists(ns), false, `${ns} removed`);
  assert.equal(existsSync(plan.stateDir), false, 'state dir removed');
  assert.deepEqual(labProcessesLeft(plan), [], 'no process of the lab left');
}

export async function removeDir(dir: string | undefined): Promise<void> {
  if (dir) await rm(dir, { recursive: true, force: true });
}

// ---- clients inside pods ---------------------------------------------------------------------

export interface HttpResult {
  /** curl's exit code (0: a response came back); null when killed. */
  readonly code: number | null;
  readonly status: number | null;
  readonly body: string;
  readonly remoteIp: string | null;
  readonly stderr: string;
}

export interface HttpOptions {
  readonly family?: 4 | 6;
  /** Connect here instead of resolving the name (curl --resolve). */
  readonly via?: string;
  readonly scheme?: 'https' | 'http';
  readonly connectTimeoutS?: number;
  /** Request path (default /), method (default GET) and extra header lines. */
  readonly path?: string;
  readonly method?: string;
  readonly headers?: readonly string[];
}

/**
 * For a connection expected to be dropped: the time curl waits for the handshake (a dropped SYN
 * gets no answer, so the wait is the whole budget). Expected successes get 5 s.
 */
export const DROP: HttpOptions = { connectTimeoutS: 2 };

/** curl from a pod with the lab CA; the body names the virtual host that answered. */
export async function http(
  plan: LabPlan,
  pod: string,
  name: string,
  options: HttpOptions = {},
): Promise<HttpResult> {
  const scheme = options.scheme ?? 'https';
  const port = scheme === 'https' ? 443 : 80;
  const connect = options.connectTimeoutS ?? 5;
  const argv = ['curl', '-sS', '--connect-timeout', String(connect), '--max-time', String(connect + 4)];
  argv.push('--cacert', statePaths(plan).caCert, '-w', '\n%{http_code} %{remote_ip}');
  if (options.family) argv.push(options.family === 6 ? '-6' : '-4');
  if (options.via)
    argv.push('--resolve', `${name}:${port}:${options.via.includes(':') ? `[${options.via}]` : options.via}`);
  if (options.method) argv.push('-X', options.method);
  for (const h of options.headers ?? []) argv.push('-H', h);
  argv.push(`${scheme}://${name}${options.path ?? '/'}`);
  const r = await labExec(plan, pod, argv, { timeoutMs: (connect + 8) * 1000 });
  const lines = r.stdout.split('\n');
  const last = lines.pop() ?? '';
  const [status, remote] = last.trim().split(' ');
  return {
    code: r.code,
    status: r.code === 0 && status ? Number(status) : null,
    body: lines.join('\n').trim(),
    remoteIp: remote && remote.length > 0 ? remote : null,
    stderr: r.stderr.trim(),
  };
}

/** The body every lab vhost answers with. */
export function hello(name: string): string {
  return `hello from ${name}`;
}

export function assertServed(r: HttpResult, name: string, what: string): void {
  assert.equal(r.code, 0, `${what}: curl failed (exit ${r.code}: ${r.stderr})`);
  assert.equal(r.status, 200, what);
  assert.equal(r.body, hello(name), `${what}: served by the ${name} virtual host`);
}

/** A connection that must not get through: curl times out connecting (the SYN was dropped). */
export function assertDropped(r: HttpResult, what: string): void {
  assert.notEqual(r.code, 0, `${what}: expected no response, got ${r.status} ${JSON.stringify(r.body)}`);
  // 28: operation timed out (connect timeout). Not 6 (name not resolved): the test connects by
  // address, so a failure must come from the datapath.
  assert.equal(r.code, 28, `${what}: expected a connect timeout, got curl exit ${r.code} (${r.stderr})`);
}

export interface DigResult {
  readonly status: string | null;
  readonly addresses: readonly string[];
  /** Extended DNS Error: "15 (Blocked): (...)" as dig prints it, or null. */
  readonly ede: string | null;
  /** The server dig says answered. */
  readonly server: string | null;
  readonly raw: string;
}

export interface DigOptions {
  readonly server?: string;
  readonly tcp?: boolean;
  /**
   * Seconds dig waits for an answer (default 10: long enough that only a missing answer fails,
   * never a slow machine; a check that no answer comes passes a short one, it waits all of it).
   */
  readonly timeoutS?: number;
  /** Queries dig sends before it gives up (default 1: one query, one answer or none). */
  readonly tries?: number;
  /** Send from this address of the pod (`dig -b`). */
  readonly source?: string;
}

export async function dig(
  plan: LabPlan,
  pod: string,
  name: string,
  qtype: 'A' | 'AAAA' | 'TXT' = 'A',
  options: DigOptions = {},
): Promise<DigResult> {
  const argv = ['dig', `+time=${options.timeoutS ?? 10}`, `+tries=${options.tries ?? 1}`];
  if (options.tcp) argv.push('+tcp');
  if (options.source) argv.push('-b', options.source);
  if (options.server) argv.push(`@${options.server}`);
  argv.push(name, qtype);
  // dig gives up first; the process bound is only for a dig that hangs.
  const r = await labExec(plan, pod, argv, {
    timeoutMs: 10_000 + (options.timeoutS ?? 10) * (options.tries ?? 1) * 1000,
  });
  const parsed = parseDig(r.stdout);
  return {
    status: parsed.status,
    addresses: parsed.addresses,
    ede: /^; EDE: (.*)$/m.exec(r.stdout)?.[1] ?? null,
    server: /^;; SERVER: (\S+)/m.exec(r.stdout)?.[1] ?? null,
    raw: `${r.stdout}${r.stderr}`,
  };
}

/** `nc -z`: did a TCP connection open within the timeout? */
export async function tcpConnects(
  plan: LabPlan,
  pod: string,
  ip: string,
  port: number,
  timeoutS = 2,
): Promise<boolean> {
  const r = await labExec(plan, pod, ['nc', '-z', '-w', String(timeoutS), ip, String(port)], {
    timeoutMs: (timeoutS + 5) * 1000,
  });
  return r.code === 0;
}

/** One line read from a TCP service that greets (the DoT-like listener), or "" when nothing came. */
export async function tcpGreeting(plan: LabPlan, pod: string, ip: string, port: number): Promise<string> {
  const r = await labExec(plan, pod, ['nc', '-w', '2', ip, String(port)], { timeoutMs: 8_000, input: '' });
  return r.stdout.trim();
}

/** A datagram with `nc -u`: the reply's text, or "" when none came back. */
export async function udpReply(plan: LabPlan, pod: string, ip: string, port: number): Promise<string> {
  const r = await labExec(plan, pod, ['nc', '-u', '-w', '2', ip, String(port)], {
    timeoutMs: 8_000,
    input: 'ping\n',
  });
  return r.stdout.trim();
}

/** One ICMP echo: did the reply come back? */
export async function pings(plan: LabPlan, pod: string, ip: string): Promise<boolean> {
  const r = await labExec(plan, pod, ['ping', '-n', '-c', '1', '-W', '2', ip], { timeoutMs: 8_000 });
  return r.code === 0;
}

// ---- the kernel --------------------------------------------------------------------------------

export type LearnedRole = 'allow' | 'allowall' | 'allowrange';

interface NftSetJson {
  nftables: Array<{ set?: { elem?: unknown[] } }>;
}

async function nftSet(plan: LabPlan, set: string): Promise<unknown[]> {
  const r = await run(
    ['ip', 'netns', 'exec', plan.nodeNetns, 'nft', '-j', 'list', 'set', 'inet', 'namegate', set],
    {
      timeoutMs: 10_000,
      maxBytes: 64 << 20,
    },
  );
  assert.equal(r.code, 0, `nft list set ${set}: ${r.stderr}`);
  const parsed = JSON.parse(r.stdout) as NftSetJson;
  return parsed.nftables.find((o) => o.set)?.set?.elem ?? [];
}

function valueText(v: unknown): string {
  if (typeof v === 'string' || typeof v === 'number') return String(v);
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if (Array.isArray(o['concat'])) return (o['concat'] as unknown[]).map(valueText).join(' . ');
    if (o['prefix']) {
      const p = o['prefix'] as { addr: string; len: number };
      return `${p.addr}/${p.len}`;
    }
    if (Array.isArray(o['range'])) return (o['range'] as unknown[]).map(valueText).join('-');
    if (o['elem']) return valueText((o['elem'] as Record<string, unknown>)['val']);
  }
  return JSON.stringify(v);
}

/** The keys of a learned set, e.g. "10.10.1.2 . 203.0.113.10 . tcp . 443" (timeouts left out). */
export async function learnedKeys(
  plan: LabPlan,
  family: 4 | 6,
  role: LearnedRole = 'allow',
): Promise<Set<string>> {
  return new Set((await nftSet(plan, `${role}${family}`)).map(valueText));
}

/** Every learned element of every learned set, as "<set> <key>", sorted. */
export async function learnedSnapshot(plan: LabPlan): Promise<string[]> {
  const out: string[] = [];
  for (const role of ['allow', 'allowall', 'allowrange'] as const) {
    for (const f of [4, 6] as const)
      for (const k of await learnedKeys(plan, f, role)) out.push(`${role}${f} ${k}`);
  }
  return out.sort();
}

export function element(
  source: string,
  destination: string,
  port: number,
  protocol: 'tcp' | 'udp' = 'tcp',
): string {
  return `${source} . ${destination} . ${protocol} . ${port}`;
}

export function familyOf(ip: string): 4 | 6 {
  return ip.includes(':') ? 6 : 4;
}

export async function hasElement(
  plan: LabPlan,
  source: string,
  destination: string,
  port: number,
): Promise<boolean> {
  return (await learnedKeys(plan, familyOf(source))).has(element(source, destination, port));
}

/** The packets a source's drop counter holds in the kernel (set drops4/drops6). */
export async function kernelDrops(plan: LabPlan, source: string): Promise<number> {
  let total = 0;
  for (const raw of await nftSet(plan, `drops${familyOf(source)}`)) {
    const e = (raw as { elem?: { val?: unknown; counter?: { packets?: number } } }).elem;
    if (!e) continue;
    const key = valueText(e.val);
    if (
      key === source ||
      key === `${source}/32` ||
      key === `${source}/128` ||
      key === `${source}-${source}`
    ) {
      total += e.counter?.packets ?? 0;
    }
  }
  return total;
}

export async function conntrackCount(plan: LabPlan, args: readonly string[]): Promise<number> {
  const r = await run(['ip', 'netns', 'exec', plan.nodeNetns, 'conntrack', '-L', ...args], {
    timeoutMs: 10_000,
  });
  const m = /(\d+) flow entries have been shown/.exec(r.stderr);
  assert.ok(m, `conntrack -L ${args.join(' ')}: ${r.stderr}`);
  return Number(m[1]);
}

// ---- the agent -----------------------------------------------------------------------------------

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]!] = l[2]!.replaceAll('\\"', '"').replaceAll('\\\\', '\\');
    }
    out.push({ name: m[1]!, labels, value: Number(m[4]) });
  }
  return out;
}

/** The agent's /metrics, fetched inside the node namespace. */
export async function metrics(plan: LabPlan): Promise<Sample[]> {
  const r = await labExec(
    plan,
    'node',
    ['curl', '-sS', '--max-time', '3', `http://${AGENT_HTTP_LISTEN}/metrics`],
    {
      timeoutMs: 8_000,
    },
  );
  assert.equal(r.code, 0, `GET /metrics: ${r.stderr}`);
  return parseMetrics(r.stdout);
}

/** Sum of the samples of one metric whose labels include `labels`. */
export function sum(
  samples: readonly Sample[],
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number {
  return samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((n, s) => n + s.value, 0);
}

/** The per-source drop counter metric of one source address (the label names it, or its /32 or /128). */
export function droppedMetric(samples: readonly Sample[], source: string, mode: 'Enforce' | 'Audit'): number {
  const names = new Set([source, `${source}/32`, `${source}/128`]);
  return samples
    .filter(
      (s) =>
        s.name === 'namegate_datapath_dropped_packets_total' &&
        names.has(s.labels['source'] ?? '') &&
        s.labels['mode'] === mode,
    )
    .reduce((n, s) => n + s.value, 0);
}

export async function debugLearned(
  plan: LabPlan,
): Promise<Array<{ source: string; name: string; ip: string; expiresAt: number }>> {
  const r = await labExec(
    plan,
    'node',
    ['curl', '-sS', '--max-time', '3', `http://${AGENT_HTTP_LISTEN}/debug/learned`],
    {
      timeoutMs: 8_000,
    },
  );
  assert.equal(r.code, 0, `GET /debug/learned: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

export type LogLine = Record<string, unknown>;

function readJsonLines(file: string): LogLine[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const out: LogLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as LogLine);
    } catch {
      // a line being written
    }
  }
  return out;
}

export function flowLog(plan: LabPlan): LogLine[] {
  return readJsonLines(flowLogPath(plan));
}

export function agentLog(plan: LabPlan): LogLine[] {
  return readJsonLines(path.join(statePaths(plan).logs, 'agent.log'));
}

/** Wait for a flow-log line (one JSON line per DNS query) matching every field given. */
export function waitForFlow(
  plan: LabPlan,
  fields: Readonly<Record<string, unknown>>,
  after = 0,
): Promise<LogLine> {
  return waitFor(`a flow-log line ${JSON.stringify(fields)}`, () =>
    flowLog(plan)
      .slice(after)
      .find((l) => Object.entries(fields).every(([k, v]) => JSON.stringify(l[k]) === JSON.stringify(v))),
  );
}

/** Wait for an agent log line matching `match`, among lines after the first `after`. */
export function waitForLog(
  plan: LabPlan,
  what: string,
  match: (l: LogLine) => boolean,
  after = 0,
): Promise<LogLine> {
  return waitFor(what, () => agentLog(plan).slice(after).find(match));
}

// ---- long-lived connections ----------------------------------------------------------------------

/** The echo server of hold.ts in the internet namespace (default: on every address). */
export class EchoServer {
  readonly port: number;
  readonly #child: ChildProcessWithoutNullStreams;

  private constructor(child: ChildProcessWithoutNullStreams, port: number) {
    this.#child = child;
    this.port = port;
  }

  static async start(plan: LabPlan, port: number, host = '::'): Promise<EchoServer> {
    const child = spawn(IP, [
      'netns',
      'exec',
      plan.inetNetns,
      process.execPath,
      HOLD,
      'server',
      host,
      String(port),
    ]);
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const s = new EchoServer(child, port);
    try {
      await waitFor(`the echo server on port ${port}`, () => {
        if (child.exitCode !== null) throw new Error(`echo server exited: ${out}`);
        return out.includes('listening');
      });
    } catch (err) {
      s.stop();
      throw err;
    }
    return s;
  }

  stop(): void {
    if (this.#child.exitCode === null) this.#child.kill('SIGKILL');
  }
}

/** A TCP connection held open from a pod to the echo server (hold.ts client). */
export class HeldConnection {
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #lines: string[] = [];
  #partial = '';
  #counter = 0;
  readonly what: string;

  private constructor(child: ChildProcessWithoutNullStreams, what: string) {
    this.#child = child;
    this.what = what;
    child.stdout.on('data', (d: Buffer) => {
      this.#partial += d.toString();
      let i = this.#partial.indexOf('\n');
      while (i >= 0) {
        this.#lines.push(this.#partial.slice(0, i));
        this.#partial = this.#partial.slice(i + 1);
        i = this.#partial.indexOf('\n');
      }
    });
    child.stderr.resume();
  }

  /** Connect; throws when the connection does not open within a few seconds. */
  static async open(plan: LabPlan, pod: string, ip: string, port: number): Promise<HeldConnection> {
    const netns = plan.pods.find((p) => p.id === pod)?.netns;
    assert.ok(netns, `pod ${pod}`);
    const child = spawn(IP, ['netns', 'exec', netns, process.execPath, HOLD, 'client', ip, String(port)]);
    const c = new HeldConnection(child, `${pod} -> ${ip}:${port}`);
    try {
      await waitFor(
        `the connection ${c.what} to open`,
        () => {
          const closed = c.#lines.find((l) => l.startsWith('closed'));
          if (closed) throw new Error(`${c.what}: ${closed}`);
          return c.#lines.includes('connected');
        },
        { timeoutMs: 8_000 },
      );
    } catch (err) {
      c.close();
      throw err;
    }
    return c;
  }

  /** Send a line and wait for its echo: true when the flow still passes both ways. */
  async ping(timeoutMs = 3_000): Promise<boolean> {
    const token = `ping-${++this.#counter}-${process.pid}`;
    if (this.#child.exitCode !== null || this.#lines.some((l) => l.startsWith('closed'))) return false;
    this.#child.stdin.write(`${token}\n`);
    try {
      await waitFor(`the echo of ${token} on ${this.what}`, () => this.#lines.includes(token), {
        timeoutMs,
        intervalMs: 50,
      });
      return true;
    } catch {
      return false;
    }
  }

  get closedReason(): string | null {
    return this.#lines.find((l) => l.startsWith('closed')) ?? null;
  }

  close(): void {
    if (this.#child.exitCode === null) this.#child.kill('SIGKILL');
  }
}

/** Close everything of these in an after hook, whatever happened. */
export function closeAll(items: Array<{ close?: () => void; stop?: () => void }>): void {
  for (const i of items.splice(0)) {
    try {
      i.close?.();
      i.stop?.();
    } catch {
      // already gone
    }
  }
}
