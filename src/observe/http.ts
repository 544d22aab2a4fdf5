/**
 * The agent's HTTP listener: /metrics (Prometheus), /healthz (the process serves requests) and
 * /readyz (ready only after the first reconcile, and while every readiness check passes).
 * Read-only and small; anything else is a 404.
 */
import { rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface ReadinessCheck {
  readonly name: string;
  /** null when ready, else why not. */
  check(): string | null;
}

export interface HealthServerOptions {
  readonly registry: Registry;
  readonly readiness: readonly ReadinessCheck[];
  /** Extra read-only JSON endpoints, e.g. /debug/learned. */
  readonly json?: Readonly<Record<string, () => unknown>>;
  /** Other routes (the flow API): each answers the request and returns true, or returns false. */
  readonly routes?: ReadonlyArray<(req: IncomingMessage, res: ServerResponse) => boolean>;
}

export class HealthServer {
  readonly #server: Server;
  readonly #extra: Server[] = [];
  readonly #options: HealthServerOptions;

  constructor(options: HealthServerOptions) {
    this.#options = options;
    this.#server = this.#create();
  }

  #create(): Server {
    const server = createServer({ requestTimeout: 10_000, headersTimeout: 5_000 }, (req, res) => {
      for (const route of this.#options.routes ?? []) if (route(req, res)) return;
      void this.#handle(req.method ?? 'GET', (req.url ?? '/').split('?')[0] ?? '/').then(
        ({ status, type, body }) => {
          res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
          res.end(body);
        },
        (err: unknown) => {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(`error: ${err instanceof Error ? err.message : String(err)}\n`);
        },
      );
    });
    server.maxConnections = 64;
    return server;
  }

  async #handle(method: string, url: string): Promise<{ status: number; type: string; body: string }> {
    if (method !== 'GET' && method !== 'HEAD')
      return { status: 405, type: 'text/plain', body: 'method not allowed\n' };
    if (url === '/metrics') {
      return {
        status: 200,
        type: this.#options.registry.contentType,
        body: await this.#options.registry.metrics(),
      };
    }
    if (url === '/healthz') return { status: 200, type: 'text/plain', body: 'ok\n' };
    if (url === '/readyz') {
      const failing = this.#options.readiness
        .map((c) => [c.name, c.check()] as const)
        .filter(([, why]) => why !== null)
        .map(([name, why]) => `${name}: ${why}`);
      return failing.length === 0
        ? { status: 200, type: 'text/plain', body: 'ready\n' }
        : { status: 503, type: 'text/plain', body: `not ready\n${failing.join('\n')}\n` };
    }
    const json = this.#options.json?.[url];
    if (json) return { status: 200, type: 'application/json', body: `${JSON.stringify(json(), null, 2)}\n` };
    return { status: 404, type: 'text/plain', body: 'not found\n' };
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      // reusePort: during a rolling update the new agent binds beside the old one (host network).
      this.#server.listen({ port, host, reusePort: true }, () =>
        resolve(this.#server.address() as AddressInfo),
      );
    });
  }

  /**
   * Also answer on a Unix socket. On the host network every agent on a node shares the health
   * port (SO_REUSEPORT), so an HTTP probe may reach another pod's agent; a socket in the pod's
   * own volume reaches only this one (the chart's readiness probe, observe/probe-socket.ts).
   */
  listenSocket(path: string): Promise<void> {
    const server = this.#create();
    this.#extra.push(server);
    rmSync(path, { force: true });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ path }, () => resolve());
    });
  }

  close(): Promise<void> {
    for (const s of this.#extra) s.close();
    return new Promise((resolve) => {
      this.#server.closeAllConnections();
      this.#server.close(() => resolve());
    });
  }
}
