/**
 * What the SNI/Host proxy and the CONNECT proxy share around their per-connection logic:
 * listening, admitting a connection (caps, error handler, its record), and the three ways a
 * connection ends: refused (counted, logged, answered, closed), relayed (bytes counted, a close
 * line when both sides are done) or failed upstream. Each proxy keeps only what is its own: how
 * it finds the destination and the name, and which checks it runs.
 */
import net from 'node:net';
import type { Registry } from 'prom-client';
import { type Clock, systemClock } from '../core/clock.ts';
import { errorMessage } from '../core/errors.ts';
import type { HostPort } from '../core/host-port.ts';
import { literalLookup } from '../core/literal-lookup.ts';
import { F } from '../observe/fields.ts';
import type { LineSink } from '../observe/line-sink.ts';
import type { Logger } from '../observe/log.ts';
import type { Identity } from '../policy/model.ts';
import { type DecisionRecord, ProxyFlowLog, type ProxyFlowObserver } from './flow-log.ts';
import type { HttpGate } from './http-gate.ts';
import { admit, ConnectionLimiter, closeAll, type ListenAddress, listenAll } from './listeners.ts';
import { type ProxyKind, type ProxyMetrics, proxyMetrics } from './metrics.ts';
import { relay } from './relay.ts';
import type { RetryGate } from './retry-gate.ts';
import type { ProxySettings } from './settings.ts';
import type { ProxyDecision } from './verdict.ts';

/** One client connection and what is known about it so far (what its flow lines carry). */
export interface ProxyConn {
  readonly id: number;
  readonly socket: net.Socket;
  readonly src: string;
  readonly started: number;
  identity: Identity | null;
  proto: DecisionRecord['proto'];
  /** The name the client claimed (SNI, Host, CONNECT authority). */
  name: string | null;
  dst: string | null;
  dport: number | null;
}

/** Extra fields of a decision line. */
export interface DecisionExtra {
  readonly ech?: boolean;
  readonly alpn?: readonly string[];
  readonly detail?: string;
  /** The connection goes to TLS inspection (its requests get proxy_request lines). */
  readonly inspect?: boolean;
}

/** What a proxy is started with that the server needs too. */
export interface ProxyServerOptions {
  readonly settings: ProxySettings;
  readonly registry: Registry;
  readonly log: Logger;
  readonly flowLog?: LineSink | null;
  /** Every decision and its line, whatever the flow log's mode (the agent's flow hub). */
  readonly flowObserver?: ProxyFlowObserver | null;
  readonly clock?: Clock;
}

/** A dial either connects or says why not ('timeout', or the socket's error). */
export type Dialed =
  | { readonly socket: net.Socket }
  | { readonly failed: 'timeout' | 'connect'; readonly message: string };

/** How long a refused client gets for the answer to leave before its socket is destroyed. */
const REFUSAL_LINGER_MS = 1000;

export class ProxyServer {
  readonly metrics: ProxyMetrics;
  readonly #o: Required<ProxyServerOptions> & { readonly kind: ProxyKind };
  readonly #flow: ProxyFlowLog;
  readonly #limiter: ConnectionLimiter;
  /** The decision-time histogram of this proxy, its label bound once. */
  readonly #decisionSeconds: { observe(v: number): void };
  readonly #sockets = new Set<net.Socket>();
  #servers: net.Server[] = [];
  #bound: ListenAddress[] = [];
  #ids = 0;
  #stopped = false;

  constructor(kind: ProxyKind, options: ProxyServerOptions) {
    const o = {
      ...options,
      kind,
      flowLog: options.flowLog ?? null,
      flowObserver: options.flowObserver ?? null,
      clock: options.clock ?? systemClock,
    };
    this.#o = o;
    this.metrics = proxyMetrics(o.registry);
    const component = o.kind === 'sni' ? 'sni-proxy' : 'connect-proxy';
    this.#flow = new ProxyFlowLog(
      o.flowLog,
      o.settings.flowLog.mode,
      component,
      () => o.clock.wallNow(),
      o.flowObserver,
    );
    this.#limiter = new ConnectionLimiter(o.settings.maxConnections, o.settings.maxConnectionsPerSource);
    this.metrics.watch(o.kind, () => this.#limiter.total);
    this.#decisionSeconds = this.metrics.decision.labels(o.kind);
  }

  get clock(): Clock {
    return this.#o.clock;
  }

  /** Listen on every address; each admitted connection goes to `handle` (errors there close it). */
  async listen(
    addresses: readonly HostPort[],
    handle: (c: ProxyConn) => Promise<void>,
  ): Promise<ListenAddress[]> {
    const { servers, bound } = await listenAll(addresses, (s) => this.#accept(s, handle));
    this.#servers = servers;
    this.#bound = bound;
    return this.addresses();
  }

  addresses(): ListenAddress[] {
    return [...this.#bound];
  }

  /** Open client connections. */
  get active(): number {
    return this.#limiter.total;
  }

  /**
   * Stop accepting; open connections get up to `drainMs` to finish (0: cut at once). The agent
   * drains on shutdown so a rolling update resets no request in flight.
   */
  async stop(drainMs = 0): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    const open = this.#sockets.size;
    const cut = await closeAll(this.#servers, this.#sockets, drainMs);
    if (drainMs > 0)
      this.#o.log.info(
        { [F.event]: 'proxy', [F.reason]: cut > 0 ? 'drain_deadline' : 'drained', open, cut, drainMs },
        cut > 0
          ? 'proxy stopped; connections still open at the drain deadline were cut'
          : 'proxy stopped; drained',
      );
  }

  #accept(socket: net.Socket, handle: (c: ProxyConn) => Promise<void>): void {
    const { kind, clock, log } = this.#o;
    const src = admit(socket, this.#limiter, this.#sockets, this.#stopped);
    if (src === null) {
      this.metrics.count(kind, 'deny', 'limit');
      return;
    }
    const c: ProxyConn = {
      id: ++this.#ids,
      socket,
      src,
      started: clock.now(),
      identity: null,
      proto: kind === 'connect' ? 'connect' : null,
      name: null,
      dst: null,
      dport: null,
    };
    handle(c).catch((err: unknown) => {
      log.error(
        { [F.event]: 'proxy', [F.connection]: c.id, [F.error]: errorMessage(err) },
        `${kind === 'sni' ? 'SNI' : 'CONNECT'} proxy connection failed`,
      );
      socket.destroy();
    });
  }

  /** The connection's verdict: counted, its decision time observed, its flow line written. */
  decided(c: ProxyConn, d: ProxyDecision, extra: DecisionExtra = {}): void {
    this.#decisionSeconds.observe((this.#o.clock.now() - c.started) / 1000);
    this.noted(c, d, extra);
  }

  /** A decision that is not the connection's first (a later request, a tunnel check): counted and logged. */
  noted(c: ProxyConn, d: ProxyDecision, extra: DecisionExtra = {}): void {
    this.metrics.count(this.#o.kind, d.verdict, d.reason);
    this.#flow.decision({
      conn: c.id,
      src: c.src,
      identity: c.identity?.key ?? null,
      proto: c.proto,
      name: c.name,
      dst: c.dst,
      dport: c.dport,
      verdict: d.verdict,
      reason: d.reason,
      policy: d.policy,
      rule: d.rule,
      ms: this.#o.clock.now() - c.started,
      ...(extra.ech ? { ech: true } : {}),
      ...(extra.alpn ? { alpn: extra.alpn } : {}),
      ...(extra.detail ? { detail: extra.detail } : {}),
      ...(extra.inspect ? { inspect: true } : {}),
    });
  }

  /**
   * Refuse the connection: counted as a denial, logged, answered with `answer` (or just closed)
   * and never read again (whatever the client sent after the refused part is not looked at);
   * its close line follows when the socket closes.
   */
  refuse(c: ProxyConn, d: ProxyDecision, answer: Buffer | null, extra: DecisionExtra = {}): void {
    this.decided(c, d, extra);
    const socket = c.socket;
    socket.once('close', () => this.closed(c, 'deny', 0, socket.bytesWritten, null, false));
    if (socket.destroyed) return;
    socket.pause();
    if (answer) socket.end(answer);
    else socket.end();
    const t = setTimeout(() => socket.destroy(), REFUSAL_LINGER_MS);
    t.unref();
    socket.once('close', () => clearTimeout(t));
  }

  /**
   * Relay both ways until both sides are done; then the close line. An HTTP gate checks what
   * goes up; a retry gate (TLS) holds what goes up until the server's first message is known,
   * and sees the server's bytes through a tap beside the relay until it settles.
   */
  relay(
    c: ProxyConn,
    upstream: net.Socket,
    verdict: ProxyDecision['verdict'],
    gate: HttpGate | RetryGate | null,
  ): void {
    relay(c.socket, upstream, {
      idleMs: this.#o.settings.idleTimeoutMs,
      now: () => this.#o.clock.now(),
      ...(gate ? { upTransform: gate } : {}),
      done: (r) => this.closed(c, verdict, r.up, r.down, r.error),
    });
    if (gate && 'serverData' in gate) {
      // Added after the relay's own listener, so the socket is already flowing into the client.
      const tap = (chunk: Buffer) => {
        gate.serverData(chunk);
        if (gate.settled) upstream.off('data', tap);
      };
      upstream.on('data', tap);
    }
  }

  /** The connection's close line; relayed bytes are counted too. */
  closed(
    c: ProxyConn,
    verdict: ProxyDecision['verdict'],
    up: number,
    down: number,
    error: string | null,
    countBytes = true,
  ): void {
    if (countBytes) {
      this.metrics.bytes.inc({ proxy: this.#o.kind, direction: 'up' }, up);
      this.metrics.bytes.inc({ proxy: this.#o.kind, direction: 'down' }, down);
    }
    this.#flow.close({
      conn: c.id,
      src: c.src,
      dst: c.dst,
      dport: c.dport,
      verdict,
      bytesUp: up,
      bytesDown: down,
      ms: this.#o.clock.now() - c.started,
      ...(error ? { error } : {}),
    });
  }

  /**
   * Connect to an address (never a name) within the connect timeout. `client` closing first
   * abandons the attempt. The socket is returned with a no-op error handler: the relay owns it.
   */
  dial(open: () => net.Socket, client: net.Socket): Promise<Dialed | null> {
    return new Promise((resolve) => {
      let sock: net.Socket;
      try {
        sock = open();
      } catch (err) {
        resolve({ failed: 'connect', message: errorMessage(err) });
        return;
      }
      let settled = false;
      const settle = (r: Dialed | null) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        client.off('close', onClientClose);
        resolve(r);
      };
      const timer = setTimeout(() => {
        sock.destroy();
        settle({ failed: 'timeout', message: 'connect timeout' });
      }, this.#o.settings.connectTimeoutMs);
      const onClientClose = () => {
        sock.destroy();
        settle(null);
      };
      client.once('close', onClientClose);
      sock.once('error', (err: Error) => {
        sock.destroy();
        settle({ failed: 'connect', message: err.message });
      });
      sock.once('connect', () => {
        sock.removeAllListeners('error');
        sock.on('error', () => {});
        settle({ socket: sock });
      });
    });
  }
}

/** A socket to an IP literal: no lookup ever happens, half-close is kept for the relay. */
export function connectLiteral(address: string, port: number): net.Socket {
  return net.connect({
    host: address,
    port,
    allowHalfOpen: true,
    noDelay: true,
    lookup: literalLookup as never,
  });
}
