/**
 * Test helpers for the proxies on loopback (no root): policies, identities, a learned view,
 * recording backends on 127.0.0.x, a raw client, and the flow lines a proxy wrote.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { promisify } from 'node:util';
import { Registry } from 'prom-client';
import { type ProxySectionInput, proxySettings } from '../../../src/config/proxy.ts';
import { validateNative } from '../../../src/formats/native.ts';
import { type SourceGroup, StaticGroups } from '../../../src/identity/static-groups.ts';
import { silentLogger } from '../../../src/observe/log.ts';
import { CompiledPolicies } from '../../../src/policy/compile.ts';
import type { Policy } from '../../../src/policy/model.ts';
import type { Inspector } from '../../../src/proxy/inspect/inspector.ts';
import type { OriginalDst } from '../../../src/proxy/original-dst.ts';
import { SniProxy } from '../../../src/proxy/sni-proxy.ts';
import type { LearnedView } from '../../../src/proxy/verdict.ts';

export function policy(spec: object, name = 'p', mode: 'Enforce' | 'Audit' = 'Enforce'): Policy {
  const result = validateNative({
    apiVersion: 'namegate.dev/v1alpha1',
    kind: 'ClusterEgressPolicy',
    metadata: { name },
    spec: { mode, ...spec },
  });
  if (!result.policy) throw new Error(JSON.stringify(result.errors));
  return result.policy;
}

export const GROUPS: SourceGroup[] = [
  { name: 'local', namespace: 'default', labels: { app: 'web' }, cidrs: ['127.0.0.1/32', '::1/128'] },
];

/** (source, name, ip) triples a source "learned". */
export class Learned implements LearnedView {
  readonly #set = new Set<string>();
  add(source: string, name: string, ip: string): this {
    this.#set.add(`${source}|${name}|${ip}`);
    return this;
  }
  holds(source: string, name: string, ip: string): boolean {
    return this.#set.has(`${source}|${name}|${ip}`);
  }
}

export interface Backend {
  readonly port: number;
  /** Every connection's received bytes, in accept order. */
  readonly received: Buffer[];
  readonly connections: net.Socket[];
  /** Resolves with the bytes of connection i once it ended or `n` bytes arrived. */
  bytes(i: number, n: number): Promise<Buffer>;
  /** Everything connection i carried: resolves once it ended (FIN) or closed. */
  whole(i: number): Promise<Buffer>;
}

/** A TCP server on 127.0.0.1 and 127.0.0.2 (one port) replying "pong:<n>" to each chunk. */
export async function backend(t: TestContext, opts: { reply?: boolean } = {}): Promise<Backend> {
  const received: Buffer[] = [];
  const connections: net.Socket[] = [];
  const waiters: Array<() => void> = [];
  const onConn = (s: net.Socket) => {
    const i = received.length;
    received.push(Buffer.alloc(0));
    connections.push(s);
    s.on('error', () => {});
    s.on('data', (d: Buffer) => {
      received[i] = Buffer.concat([received[i]!, d]);
      if (opts.reply !== false) s.write(`pong:${d.length};`);
      for (const w of waiters.splice(0)) w();
    });
    s.on('end', () => {
      s.end();
      for (const w of waiters.splice(0)) w();
    });
    s.on('close', () => {
      for (const w of waiters.splice(0)) w();
    });
  };
  const a = net.createServer({ allowHalfOpen: true }, onConn);
  await new Promise<void>((r) => a.listen(0, '127.0.0.1', r));
  const port = (a.address() as net.AddressInfo).port;
  const b = net.createServer({ allowHalfOpen: true }, onConn);
  await new Promise<void>((r) => b.listen(port, '127.0.0.2', r));
  t.after(() => {
    for (const c of connections) c.destroy();
    a.close();
    b.close();
  });
  const bytes = async (i: number, n: number) => {
    for (;;) {
      const got = received[i];
      const c = connections[i];
      if (got && (got.length >= n || c?.readableEnded || c?.destroyed)) return got;
      await new Promise<void>((r) => waiters.push(r));
    }
  };
  return { port, received, connections, bytes, whole: (i) => bytes(i, Number.POSITIVE_INFINITY) };
}

export interface ProxyHarness {
  readonly proxy: SniProxy;
  readonly port: number;
  readonly lines: Array<Record<string, unknown>>;
  readonly registry: Registry;
  /** The original destination the next connections get (null: none). */
  dst: OriginalDst | null;
  policies: CompiledPolicies;
}

export async function sniProxy(
  t: TestContext,
  opts: {
    policies: Policy[];
    learned: LearnedView;
    dst: OriginalDst | null;
    config?: ProxySectionInput;
    groups?: SourceGroup[];
    originalDestination?: (s: net.Socket) => OriginalDst | null | Promise<OriginalDst | null>;
    dial?: (dst: OriginalDst) => net.Socket;
    listen?: string[];
    inspector?: Inspector | null;
  },
): Promise<ProxyHarness> {
  const lines: Array<Record<string, unknown>> = [];
  const registry = new Registry();
  const h = { dst: opts.dst, policies: new CompiledPolicies(opts.policies) } as {
    dst: OriginalDst | null;
    policies: CompiledPolicies;
  };
  const proxy = await SniProxy.start({
    policies: { current: () => h.policies },
    identities: new StaticGroups(opts.groups ?? GROUPS),
    learned: opts.learned,
    originalDestination: opts.originalDestination ?? (() => h.dst),
    log: silentLogger(),
    registry,
    flowLog: { write: (l: string) => lines.push(JSON.parse(l)) },
    ...(opts.dial ? { dial: opts.dial } : {}),
    ...(opts.inspector !== undefined ? { inspector: { current: () => opts.inspector ?? null } } : {}),
    settings: proxySettings({
      ...opts.config,
      sni: { listen: opts.listen ?? ['127.0.0.1:0'], ...opts.config?.sni },
    }),
  });
  t.after(() => proxy.stop());
  const harness: ProxyHarness = {
    proxy,
    port: proxy.addresses()[0]!.port,
    lines,
    registry,
    get dst() {
      return h.dst;
    },
    set dst(v) {
      h.dst = v;
    },
    get policies() {
      return h.policies;
    },
    set policies(v) {
      h.policies = v;
    },
  };
  return harness;
}

export interface ClientResult {
  readonly data: Buffer;
  /** The connection ended or was reset. */
  readonly closed: boolean;
}

/**
 * Connect to `port`, send each chunk (waiting for the previous write), optionally half-close,
 * and collect what comes back until the server closes or `until` bytes arrived.
 */
export function client(
  port: number,
  chunks: Buffer[],
  opts: { host?: string; end?: boolean; until?: number; localAddress?: string } = {},
): Promise<ClientResult> {
  return new Promise((resolve) => {
    const s = net.connect({
      port,
      host: opts.host ?? '127.0.0.1',
      allowHalfOpen: true,
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
    });
    const got: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      s.destroy();
      resolve({ data: Buffer.concat(got), closed });
    };
    s.on('data', (d: Buffer) => {
      got.push(d);
      size += d.length;
      if (opts.until !== undefined && size >= opts.until) finish(false);
    });
    s.on('end', () => finish(true));
    s.on('close', () => finish(true));
    s.on('error', () => finish(true));
    s.on('connect', async () => {
      for (const c of chunks) {
        await new Promise<void>((r) => s.write(c, () => r()));
        // Let each chunk leave as its own segment.
        await new Promise((r) => setImmediate(r));
      }
      if (opts.end) s.end();
    });
  });
}

/**
 * Wait until `cond` holds: a state the component reaches, checked every few milliseconds. A
 * wait, never a proof of absence; its bound only turns a hang into a failure naming `what`
 * (counted in checks, so a loaded machine stretches it rather than failing early).
 */
export async function until<T>(what: string, cond: () => T | undefined | null | false): Promise<T> {
  for (let i = 0; i < 6000; i++) {
    const v = cond();
    if (v !== undefined && v !== null && v !== false) return v;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`never happened: ${what}`);
}

/** Wait until `lines` has a line matching `pred`. */
export async function line(
  lines: Array<Record<string, unknown>>,
  pred: (l: Record<string, unknown>) => boolean,
): Promise<Record<string, unknown>> {
  try {
    return await until('a matching flow line', () => lines.find(pred));
  } catch {
    throw new Error(`no such line in ${JSON.stringify(lines)}`);
  }
}

export const decisionLine = (lines: Array<Record<string, unknown>>) =>
  line(lines, (l) => l['event'] === 'proxy');
export const closeLine = (lines: Array<Record<string, unknown>>) =>
  line(lines, (l) => l['event'] === 'proxy_close');

const run = promisify(execFile);

/** A self-signed certificate for `names` (openssl), in a temp dir removed after the test. */
export async function certificate(t: TestContext, names: string[]): Promise<{ cert: Buffer; key: Buffer }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'ng-proxy-cert-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const key = path.join(dir, 'k.pem');
  const cert = path.join(dir, 'c.pem');
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-days',
    '1',
    '-subj',
    `/CN=${names[0]}`,
    '-addext',
    `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`,
    '-keyout',
    key,
    '-out',
    cert,
  ]);
  return { cert: await readFile(cert), key: await readFile(key) };
}
