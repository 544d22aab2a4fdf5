/**
 * A loopback rig for the inspecting proxy's tests: two CAs made with openssl (the inspection CA
 * clients trust, and the "public" CA the destination's certificate chains to), destination
 * servers (HTTP/1.1 + websocket, HTTP/2, gRPC) that count what reaches them, and a front that
 * reads the ClientHello like the SNI proxy does and hands the connection to an Inspector.
 * Everything listens on 127.0.0.1 (port 0); close() removes it all, files included.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { Registry } from 'prom-client';
import { type Clock, systemClock } from '../../../src/core/clock.ts';
import type { CanonicalName } from '../../../src/core/names.ts';
import { silentLogger } from '../../../src/observe/log.ts';
import { decideRequest, type GrantedRule } from '../../../src/policy/decide-request.ts';
import { type HttpRuleInput, parseHttpRule } from '../../../src/policy/http-rule.ts';
import { parseClientHello } from '../../../src/proxy/client-hello.ts';
import { CaStore } from '../../../src/proxy/inspect/ca.ts';
import { type InspectionEnd, Inspector } from '../../../src/proxy/inspect/inspector.ts';
import { LeafMinter } from '../../../src/proxy/inspect/leaf-minter.ts';
import { inspectMetrics } from '../../../src/proxy/inspect/metrics.ts';
import { RequestLog } from '../../../src/proxy/inspect/request-log.ts';
import { makeCa, makeLeaf, type PemFiles } from '../../support/openssl-certs.ts';

export type { PemFiles as CaFiles } from '../../support/openssl-certs.ts';
export { makeCa, makeLeaf } from '../../support/openssl-certs.ts';

export interface Seen {
  readonly proto: string;
  readonly method: string;
  readonly path: string;
  readonly host: string;
}

export interface RigOptions {
  /** HTTP rules per SNI; a name missing here is not inspected at all (not routed). null: a rule without inspection. */
  readonly rules: Record<string, HttpRuleInput[] | null>;
  /** The name whose destination presents an untrusted certificate. */
  readonly badCertName?: string;
  readonly mode?: 'Enforce' | 'Audit';
  readonly clock?: Clock;
}

export class Rig {
  readonly dir: string;
  readonly inspectCa: PemFiles;
  readonly publicCa: PemFiles;
  readonly seen: Seen[] = [];
  readonly lines: Array<Record<string, unknown>> = [];
  readonly ends: InspectionEnd[] = [];
  readonly registry = new Registry();
  frontPort = 0;
  h1Port = 0;
  h2Port = 0;
  badPort = 0;
  store!: CaStore;
  minter!: LeafMinter;
  readonly #servers: Array<net.Server | http2.Http2SecureServer> = [];
  readonly #sockets = new Set<net.Socket>();
  readonly #o: RigOptions;
  /** SNI -> destination port (h2 server by default; names ending in ".h1.test" go to the HTTP/1.1-only server). */
  readonly routes = new Map<string, number>();

  private constructor(o: RigOptions) {
    this.#o = o;
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'ng-inspect-'));
    this.inspectCa = makeCa(this.dir, 'inspection-ca');
    this.publicCa = makeCa(this.dir, 'public-ca');
  }

  static async start(o: RigOptions): Promise<Rig> {
    const rig = new Rig(o);
    try {
      await rig.#start();
    } catch (err) {
      await rig.close();
      throw err;
    }
    return rig;
  }

  async #start(): Promise<void> {
    const names = Object.keys(this.#o.rules);
    const leaf = makeLeaf(this.dir, this.publicCa, names, 'upstream');
    const tlsOpts = { cert: readFileSync(leaf.cert), key: readFileSync(leaf.key) };
    const record = (proto: string, method: string, p: string, host: string) =>
      this.seen.push({ proto, method, path: p, host });
    const answer = (method: string, p: string, host: string) =>
      JSON.stringify({ method, path: p, host, pad: 'x'.repeat(64) });

    // HTTP/1.1 only (with websocket echo after a 101).
    const h1 = https.createServer(tlsOpts, (req, res) => {
      record('h1', req.method ?? '', req.url ?? '', req.headers.host ?? '');
      req.resume();
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        res.end(answer(req.method ?? '', req.url ?? '', req.headers.host ?? ''));
      });
    });
    h1.on('upgrade', (req, socket: net.Socket) => {
      record('h1-upgrade', req.method ?? '', req.url ?? '', req.headers.host ?? '');
      const key = req.headers['sec-websocket-key'] ?? '';
      const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      socket.write(
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
      );
      socket.on('data', (d: Buffer) => socket.write(d)); // echo frames back (client frames are masked; tests read raw)
      socket.on('error', () => {});
    });
    // HTTP/2 (and HTTP/1.1 by ALPN fallback).
    const h2 = http2.createSecureServer({ ...tlsOpts, allowHTTP1: true }, (req, res) => {
      const host = (req.headers[':authority'] as string | undefined) ?? req.headers.host ?? '';
      record(req.httpVersion === '2.0' ? 'h2' : 'h1', req.method, req.url, host);
      if (req.headers['content-type'] === 'application/grpc') {
        // A unary gRPC echo: the request message back, status 0 in trailers.
        const chunks: Buffer[] = [];
        req.on('data', (d: Buffer) => chunks.push(d));
        req.on('end', () => {
          res.writeHead(200, { 'content-type': 'application/grpc' });
          res.addTrailers({ 'grpc-status': '0', 'grpc-message': 'OK' });
          res.end(Buffer.concat(chunks));
        });
        return;
      }
      req.resume();
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        res.end(answer(req.method, req.url, host));
      });
    });
    const bad = https.createServer(
      makeLeafOpts(makeLeaf(this.dir, null, [this.#o.badCertName ?? 'bad.example.test'], 'selfsigned')),
      (req, res) => {
        record('bad', req.method ?? '', req.url ?? '', req.headers.host ?? '');
        res.end('should never be reached');
      },
    );
    for (const s of [h1, h2, bad]) {
      s.on('connection', (sock: net.Socket) => this.#track(sock));
      this.#servers.push(s);
    }
    this.h1Port = await listen(h1);
    this.h2Port = await listen(h2);
    this.badPort = await listen(bad);
    for (const n of names) this.routes.set(n, n.endsWith('.h1.test') ? this.h1Port : this.h2Port);
    if (this.#o.badCertName) this.routes.set(this.#o.badCertName, this.badPort);

    this.store = await CaStore.open({ certFile: this.inspectCa.cert, keyFile: this.inspectCa.key });
    const clock = this.#o.clock ?? systemClock;
    this.minter = new LeafMinter(this.store, { maxEntries: 100, leafValiditySeconds: 3600, clock });
    const sink = {
      write: (l: string) => {
        this.lines.push(JSON.parse(l) as Record<string, unknown>);
      },
    };
    const inspector = new Inspector({
      minter: this.minter,
      upstreamCa: readFileSync(this.publicCa.cert, 'utf8'),
      connectTimeoutMs: 3000,
      handshakeTimeoutMs: 3000,
      idleTimeoutMs: 10_000,
      headLimits: { maxHeadBytes: 16_384, maxFields: 100 },
      maxConcurrentStreams: 100,
      requestLog: new RequestLog(sink, 'all', 'sni-proxy', Date.now),
      metrics: inspectMetrics(this.registry),
      clock,
      log: silentLogger(),
      // The original destination is name:443 as the client believes; the rig's servers listen elsewhere.
      dial: (o) => tls.connect({ ...o, port: this.routes.get(o.servername ?? '') ?? 1 }),
    });
    const grants = new Map<string, GrantedRule[]>();
    for (const [name, inputs] of Object.entries(this.#o.rules)) {
      if (inputs === null) {
        grants.set(name, [{ policy: 'test/open', rule: 0, http: null }]);
        continue;
      }
      const http = inputs.map((i) => {
        const r = parseHttpRule(i, {});
        if (!r.rule) throw new Error(JSON.stringify(r.problems));
        return r.rule;
      });
      grants.set(name, [{ policy: 'test/inspect', rule: 0, http }]);
    }
    if (this.#o.badCertName) grants.set(this.#o.badCertName, [{ policy: 'test/open', rule: 0, http: null }]);
    let ids = 0;
    const front = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => {
      this.#track(socket);
      socket.on('error', () => {});
      let held = Buffer.alloc(0);
      const onData = (d: Buffer) => {
        held = Buffer.concat([held, d]);
        const r = parseClientHello(held);
        if (r.kind === 'more') return;
        socket.off('data', onData);
        socket.pause();
        if (r.kind === 'error') return void socket.destroy();
        const sni = r.hello.sni;
        const rules = grants.get(sni);
        if (!this.routes.has(sni) || rules === undefined) return void socket.destroy();
        inspector.handle(
          socket,
          held,
          {
            id: ++ids,
            src: '127.0.0.1',
            identity: 'group:test',
            sni: sni as CanonicalName,
            dst: { address: '127.0.0.1', port: 443 },
            alpn: r.hello.alpn,
            judge: (facts) => decideRequest(rules, this.#o.mode ?? 'Enforce', facts),
          },
          (end) => this.ends.push(end),
        );
      };
      socket.on('data', onData);
      socket.resume();
    });
    this.#servers.push(front);
    this.frontPort = await listen(front);
    this.store.watch(50);
  }

  #track(s: net.Socket): void {
    this.#sockets.add(s);
    s.once('close', () => this.#sockets.delete(s));
  }

  /** curl through the front: --connect-to keeps the URL's name for SNI and Host; --cacert trusts the inspection CA. */
  async curl(
    url: string,
    extra: string[] = [],
  ): Promise<{ status: number; body: string; code: number; stderr: string }> {
    const args = [
      '-sS',
      '--max-time',
      '10',
      '--cacert',
      this.inspectCa.cert,
      '--connect-to',
      `::127.0.0.1:${this.frontPort}`,
      '-o',
      '-',
      '-w',
      '\n%{http_code}',
      ...extra,
      url,
    ];
    const r = await run('curl', args);
    const nl = r.stdout.lastIndexOf('\n');
    return {
      status: Number(r.stdout.slice(nl + 1)) || 0,
      body: r.stdout.slice(0, Math.max(0, nl)).trimEnd(),
      code: r.code,
      stderr: r.stderr,
    };
  }

  async close(): Promise<void> {
    this.store?.stop();
    for (const s of this.#sockets) s.destroy();
    await Promise.all(this.#servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A child process without blocking the event loop (the servers under test live in this process). */
export function run(
  cmd: string,
  args: string[],
  input?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString('latin1');
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

function makeLeafOpts(f: PemFiles) {
  return { cert: readFileSync(f.cert), key: readFileSync(f.key) };
}

async function listen(s: net.Server | http2.Http2SecureServer): Promise<number> {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return (s.address() as net.AddressInfo).port;
}
