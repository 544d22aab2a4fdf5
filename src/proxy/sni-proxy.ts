/**
 * The transparent SNI/Host proxy: nftables redirects governed sources' connections on verify
 * ports here (datapath verifyPort). Per connection:
 *   1. original destination (SO_ORIGINAL_DST; none -> close: never dial an address of our own
 *      choosing, NODE-01); a connection made straight to the proxy (its own address) is refused;
 *   2. the source's identity, which must be governed;
 *   3. a toCIDRs rule for the destination and port allows at once (no name needed);
 *   4. otherwise peek, holding every byte (early data included, TLS-15), under a deadline
 *      (TLS-04) and a byte cap (TLS-03): a TLS ClientHello (SNI) or an HTTP/1.x request head
 *      (Host); anything else is refused;
 *   5. verdict (verdict.ts): the name is allowed for this source and port AND the original
 *      destination IP is one this source (or a sibling address) learned for that very name;
 *   6. allowed: connect to the original destination (never re-resolved), write the held bytes,
 *      relay both ways with backpressure and half-close (relay.ts); plain HTTP keeps checking
 *      every later request on the connection (http-gate.ts);
 *      refused: a TLS alert or an HTTP error, then close; no upstream connection is ever made.
 * Audit sources: every would-be refusal is logged and counted as 'audit' and the connection
 * passes (except without an original destination, where there is nothing to pass to).
 * Errors in one connection destroy that connection only (NODE-05).
 */
import net from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Registry } from 'prom-client';
import { type ProxySection, type ProxySectionInput, proxyConfig } from '../config/proxy.ts';
import { type Clock, systemClock } from '../core/clock.ts';
import { errorMessage } from '../core/errors.ts';
import { literalLookup } from '../dns/lookup.ts';
import type { IdentityProvider } from '../identity/identity.ts';
import { F } from '../observe/fields.ts';
import type { Logger } from '../observe/log.ts';
import type { Identity, Mode } from '../policy/model.ts';
import { type ClientHello, type HelloLimits, maxPeekBytes, parseClientHello } from './client-hello.ts';
import { type LineSink, ProxyFlowLog } from './flow-log.ts';
import { GateError, HttpGate } from './http-gate.ts';
import { type HeadLimits, parseRequestHead, type RequestHead } from './http-head.ts';
import {
  admit,
  ConnectionLimiter,
  closeAll,
  type ListenAddress,
  listenAll,
  parseProxyListen,
  peerAddress,
} from './listeners.ts';
import { type ProxyMetrics, proxyMetrics } from './metrics.ts';
import type { OriginalDestination, OriginalDst } from './original-dst.ts';
import { relay } from './relay.ts';
import {
  cidrDecision,
  decideName,
  type LearnedView,
  modeOf,
  type PolicyView,
  type ProxyDecision,
  refuse,
  sourceSet,
} from './verdict.ts';

export interface SniProxyOptions {
  /** "host:port" listen addresses; default: the config's proxy.sni.listen. */
  readonly listen?: readonly string[];
  readonly policies: PolicyView;
  readonly identities: IdentityProvider;
  readonly learned: LearnedView;
  readonly originalDestination: OriginalDestination;
  readonly log: Logger;
  readonly registry: Registry;
  /** Flow lines (decision and close per connection); null: none. */
  readonly flowLog?: LineSink | null;
  readonly config?: ProxySectionInput | ProxySection;
  readonly clock?: Clock;
  /** How the upstream connection is made (tests); default net.connect to the literal address. */
  readonly dial?: (dst: OriginalDst) => net.Socket;
  /** Label of the original-destination lookup in metrics ('addon', 'conntrack', ...). */
  readonly originalDestinationMethod?: string;
}

interface Conn {
  readonly id: number;
  readonly socket: net.Socket;
  readonly src: string;
  readonly started: number;
  dst: OriginalDst | null;
  identity: Identity | null;
  mode: Mode | null;
}

/** A TLS alert record: fatal, with the given description. */
function tlsAlert(description: number): Buffer {
  return Buffer.from([21, 3, 3, 0, 2, 2, description]);
}
const ALERT_ACCESS_DENIED = 49;

const HTTP_STATUS: Record<string, number> = {
  host_not_allowed: 403,
  host_ip_mismatch: 403,
  host_port_mismatch: 403,
  host_is_ip: 403,
  h2c_upgrade: 403,
  too_large: 431,
};

function httpError(status: number, reason: string): Buffer {
  const text =
    status === 403 ? 'Forbidden' : status === 431 ? 'Request Header Fields Too Large' : 'Bad Request';
  const body = `namegate: ${reason}\n`;
  return Buffer.from(
    `HTTP/1.1 ${status} ${text}\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    'latin1',
  );
}

export class SniProxy {
  readonly #o: SniProxyOptions;
  readonly #cfg: ProxySection;
  readonly #clock: Clock;
  readonly #metrics: ProxyMetrics;
  readonly #flow: ProxyFlowLog;
  readonly #limiter: ConnectionLimiter;
  readonly #helloLimits: HelloLimits;
  readonly #headLimits: HeadLimits;
  readonly #sockets = new Set<net.Socket>();
  #servers: net.Server[] = [];
  #bound: ListenAddress[] = [];
  #ids = 0;
  #stopped = false;

  private constructor(o: SniProxyOptions) {
    this.#o = o;
    this.#cfg = proxyConfig(o.config as ProxySectionInput);
    this.#clock = o.clock ?? systemClock;
    this.#metrics = proxyMetrics(o.registry);
    this.#flow = new ProxyFlowLog(o.flowLog ?? null, this.#cfg.flowLog.mode, 'sni-proxy', () =>
      this.#clock.wallNow(),
    );
    this.#limiter = new ConnectionLimiter(this.#cfg.maxConnections, this.#cfg.maxConnectionsPerSource);
    this.#helloLimits = { maxHelloBytes: this.#cfg.maxHelloBytes, maxRecords: this.#cfg.maxHelloRecords };
    this.#headLimits = { maxHeadBytes: this.#cfg.maxHeadBytes, maxFields: this.#cfg.maxHeadFields };
    this.#metrics.watch('sni', () => this.#limiter.total);
  }

  static async start(o: SniProxyOptions): Promise<SniProxy> {
    const p = new SniProxy(o);
    const listen = (o.listen ?? p.#cfg.sni.listen).map(parseProxyListen);
    const { servers, bound } = await listenAll(listen, (s) => p.#accept(s));
    p.#servers = servers;
    p.#bound = bound;
    o.log.info({ [F.event]: 'proxy', listen: bound }, 'SNI proxy listening');
    return p;
  }

  addresses(): ListenAddress[] {
    return [...this.#bound];
  }

  /** Open client connections. */
  get active(): number {
    return this.#limiter.total;
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await closeAll(this.#servers, this.#sockets);
  }

  #accept(socket: net.Socket): void {
    const src = admit(socket, this.#limiter, this.#sockets, this.#stopped);
    if (src === null) {
      this.#metrics.count('sni', 'deny', 'limit');
      return;
    }
    const c: Conn = {
      id: ++this.#ids,
      socket,
      src,
      started: this.#clock.now(),
      dst: null,
      identity: null,
      mode: null,
    };
    this.#handle(c).catch((err: unknown) => {
      this.#o.log.error(
        { [F.event]: 'proxy', [F.connection]: c.id, [F.error]: errorMessage(err) },
        'SNI proxy connection failed',
      );
      socket.destroy();
    });
  }

  async #handle(c: Conn): Promise<void> {
    const { socket } = c;
    let dst: OriginalDst | null = null;
    try {
      dst = await this.#o.originalDestination(socket);
    } catch {
      dst = null;
    }
    this.#metrics.originalDst.inc({
      method: this.#o.originalDestinationMethod ?? 'custom',
      result: dst ? 'ok' : 'failed',
    });
    if (!dst) return this.#refuse(c, refuseHard('no_original_dst'), null, null, 'close');
    c.dst = dst;
    if (this.#isSelf(socket, dst)) return this.#refuse(c, refuseHard('loop'), null, null, 'close');

    const identity = this.#o.identities.lookup(c.src);
    if (!identity) return this.#refuse(c, refuseHard('unknown_source'), null, null, 'close');
    c.identity = identity;
    const set = this.#o.policies.current();
    c.mode = modeOf(set, identity);
    if (c.mode === null) return this.#refuse(c, refuseHard('ungoverned'), null, null, 'close');

    const byCidr = cidrDecision(set, identity, dst.address, dst.port);
    if (byCidr) return this.#pass(c, byCidr, { proto: 'tcp', name: null }, Buffer.alloc(0), null);

    const peeked = await this.#peek(c);
    if (socket.destroyed) return;
    if (peeked.kind === 'fail') {
      const d = refuse(c.mode, peeked.reason);
      if (d.verdict === 'audit')
        return this.#pass(c, d, { proto: peeked.proto, name: null }, peeked.held, null);
      return this.#refuse(c, d, peeked.proto, null, peeked.proto === 'http' ? 'http' : 'close');
    }
    const now = this.#clock.now();
    const sources = sourceSet(this.#o.identities, c.src);
    if (peeked.kind === 'tls') {
      const hello = peeked.hello;
      const d = decideName({
        set,
        identity,
        sources,
        name: hello.sni,
        ip: dst.address,
        port: dst.port,
        kind: 'tls',
        learned: this.#o.learned,
        now,
      });
      if (hello.ech) this.#metrics.ech.inc({ verdict: d.verdict });
      const info = { proto: 'tls' as const, name: hello.sni, ech: hello.ech !== null, alpn: hello.alpn };
      if (d.verdict === 'deny') return this.#refuse(c, d, 'tls', info, 'tls');
      return this.#pass(c, d, info, peeked.held, null);
    }
    // Plain HTTP: the first request decides now, every later one in the gate.
    const d = this.#checkHead(c, peeked.head, now);
    const info = { proto: 'http' as const, name: peeked.head.host.host ?? peeked.head.host.ip };
    if (d.verdict === 'deny') return this.#refuse(c, d, 'http', info, 'http');
    let gate: HttpGate | null = null;
    if (d.verdict === 'allow') {
      let first = true;
      gate = new HttpGate((head) => {
        if (first) {
          first = false; // decided above, with this very head
          return null;
        }
        const later = this.#checkHead(c, head, this.#clock.now());
        if (later.verdict === 'allow') return null;
        this.#logDecision(c, later, { proto: 'http', name: head.host.host ?? head.host.ip });
        this.#metrics.count('sni', later.verdict, later.reason);
        return later.verdict === 'audit' ? null : later.reason;
      }, this.#headLimits);
    }
    return this.#pass(c, d, info, peeked.held, gate);
  }

  /** The Host check of one request (first or later) on a plain-HTTP connection. */
  #checkHead(c: Conn, head: RequestHead, now: number): ProxyDecision {
    const dst = c.dst!;
    const identity = c.identity!;
    const set = this.#o.policies.current();
    const mode = modeOf(set, identity);
    if (mode === null) return refuseHard('ungoverned');
    if (head.method === 'CONNECT') return refuse(mode, 'malformed');
    if (head.host.host === null) return refuse(mode, 'host_is_ip');
    if ((head.host.port ?? 80) !== dst.port) return refuse(mode, 'host_port_mismatch');
    return decideName({
      set,
      identity,
      sources: sourceSet(this.#o.identities, c.src),
      name: head.host.host,
      ip: dst.address,
      port: dst.port,
      kind: 'http',
      learned: this.#o.learned,
      now,
    });
  }

  /** Our own listening socket as the destination: a direct connection, not a redirect. */
  #isSelf(socket: net.Socket, dst: OriginalDst): boolean {
    if (dst.port !== socket.localPort) return false;
    if (dst.address === peerAddress(socket.localAddress)) return true;
    for (const list of Object.values(networkInterfaces())) {
      for (const a of list ?? []) if (peerAddress(a.address) === dst.address) return true;
    }
    return false;
  }

  #peek(
    c: Conn,
  ): Promise<
    | { kind: 'tls'; hello: ClientHello; held: Buffer }
    | { kind: 'http'; head: RequestHead; held: Buffer }
    | { kind: 'fail'; reason: string; proto: 'tls' | 'http' | null; held: Buffer }
  > {
    const socket = c.socket;
    const cap = Math.max(maxPeekBytes(this.#helloLimits), this.#cfg.maxHeadBytes);
    return new Promise((resolve) => {
      let held: Buffer = Buffer.alloc(0);
      let settled = false;
      const finish = (r: Parameters<typeof resolve>[0]) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.off('data', onData);
        socket.off('end', onEnd);
        socket.off('close', onEnd);
        socket.pause();
        resolve(r);
      };
      const timer = setTimeout(
        () => finish({ kind: 'fail', reason: 'timeout', proto: protoOf(held), held }),
        this.#cfg.peekTimeoutMs,
      );
      const onEnd = () => finish({ kind: 'fail', reason: 'client_closed', proto: protoOf(held), held });
      const onData = (chunk: Buffer) => {
        held = held.length === 0 ? chunk : Buffer.concat([held, chunk]);
        const proto = protoOf(held);
        if (proto === 'tls') {
          const r = parseClientHello(held, this.#helloLimits);
          if (r.kind === 'hello') return finish({ kind: 'tls', hello: r.hello, held });
          if (r.kind === 'error') return finish({ kind: 'fail', reason: r.reason, proto, held });
        } else {
          const r = parseRequestHead(held, this.#headLimits);
          if (r.kind === 'head') return finish({ kind: 'http', head: r.head, held });
          if (r.kind === 'error')
            return finish({
              kind: 'fail',
              reason: r.reason === 'not_http' ? 'not_tls' : r.reason,
              proto,
              held,
            });
        }
        if (held.length > cap) finish({ kind: 'fail', reason: 'too_large', proto, held });
      };
      socket.on('data', onData);
      socket.once('end', onEnd);
      socket.once('close', onEnd);
      socket.resume();
    });
  }

  #logDecision(
    c: Conn,
    d: ProxyDecision,
    info: {
      proto: 'tls' | 'http' | 'tcp' | null;
      name: string | null;
      ech?: boolean;
      alpn?: readonly string[];
    },
    detail?: string,
  ): void {
    this.#flow.decision({
      conn: c.id,
      src: c.src,
      identity: c.identity?.key ?? null,
      proto: info.proto,
      name: info.name,
      dst: c.dst?.address ?? null,
      dport: c.dst?.port ?? null,
      verdict: d.verdict,
      reason: d.reason,
      policy: d.policy,
      rule: d.rule,
      ms: this.#clock.now() - c.started,
      ...(info.ech ? { ech: true } : {}),
      ...(info.alpn ? { alpn: info.alpn } : {}),
      ...(detail ? { detail } : {}),
    });
  }

  #refuse(
    c: Conn,
    d: ProxyDecision,
    proto: 'tls' | 'http' | null,
    info: { proto: 'tls' | 'http'; name: string | null; ech?: boolean; alpn?: readonly string[] } | null,
    how: 'tls' | 'http' | 'close',
  ): void {
    this.#metrics.count('sni', 'deny', d.reason);
    this.#metrics.decision.observe({ proxy: 'sni' }, (this.#clock.now() - c.started) / 1000);
    this.#logDecision(c, d, info ?? { proto, name: null });
    const socket = c.socket;
    socket.once('close', () =>
      this.#flow.close({
        conn: c.id,
        src: c.src,
        dst: c.dst?.address ?? null,
        dport: c.dst?.port ?? null,
        verdict: 'deny',
        bytesUp: 0,
        bytesDown: socket.bytesWritten,
        ms: this.#clock.now() - c.started,
      }),
    );
    if (socket.destroyed) return;
    if (how === 'tls') socket.end(tlsAlert(ALERT_ACCESS_DENIED));
    else if (how === 'http' && proto === 'http' && d.reason !== 'h2_prior_knowledge')
      socket.end(httpError(HTTP_STATUS[d.reason] ?? 400, d.reason));
    else socket.end();
    // Never read what follows a refusal; give the response a moment to leave, then drop.
    socket.pause();
    const t = setTimeout(() => socket.destroy(), 1000);
    t.unref();
    socket.once('close', () => clearTimeout(t));
  }

  #pass(
    c: Conn,
    d: ProxyDecision,
    info: {
      proto: 'tls' | 'http' | 'tcp' | null;
      name: string | null;
      ech?: boolean;
      alpn?: readonly string[];
    },
    held: Buffer,
    gate: HttpGate | null,
  ): void {
    const dst = c.dst!;
    this.#metrics.count('sni', d.verdict, d.reason);
    this.#metrics.decision.observe({ proxy: 'sni' }, (this.#clock.now() - c.started) / 1000);
    this.#logDecision(c, d, info);
    const client = c.socket;
    if (client.destroyed) return;
    const upstream = this.#o.dial
      ? this.#o.dial(dst)
      : net.connect({
          host: dst.address,
          port: dst.port,
          allowHalfOpen: true,
          noDelay: true,
          lookup: literalLookup as never,
        });
    let connected = false;
    const closeLine = (bytesUp: number, bytesDown: number, error: string | null) => {
      this.#metrics.bytes.inc({ proxy: 'sni', direction: 'up' }, bytesUp);
      this.#metrics.bytes.inc({ proxy: 'sni', direction: 'down' }, bytesDown);
      this.#flow.close({
        conn: c.id,
        src: c.src,
        dst: dst.address,
        dport: dst.port,
        verdict: d.verdict,
        bytesUp,
        bytesDown,
        ms: this.#clock.now() - c.started,
        ...(error ? { error } : {}),
      });
    };
    const timer = setTimeout(() => {
      if (connected) return;
      this.#metrics.upstreamErrors.inc({ proxy: 'sni', kind: 'timeout' });
      upstream.destroy();
      client.destroy();
      closeLine(0, 0, 'upstream: connect timeout');
    }, this.#cfg.connectTimeoutMs);
    const early = (err: Error) => {
      if (connected) return;
      clearTimeout(timer);
      connected = true; // settled
      this.#metrics.upstreamErrors.inc({ proxy: 'sni', kind: 'connect' });
      client.destroy();
      closeLine(0, 0, `upstream: ${err.message}`);
    };
    upstream.once('error', early);
    client.once('close', () => {
      if (!connected) {
        clearTimeout(timer);
        upstream.destroy();
      }
    });
    upstream.once('connect', () => {
      if (connected) return;
      connected = true;
      clearTimeout(timer);
      upstream.off('error', early);
      if (client.destroyed) {
        upstream.destroy();
        return;
      }
      if (gate) {
        gate.on('error', (err: Error) => {
          if (err instanceof GateError && err.head === null) {
            const refused = refuse(c.mode, err.reason);
            this.#metrics.count('sni', refused.verdict, refused.reason);
            this.#logDecision(c, refused, { proto: 'http', name: null }, err.message);
          }
        });
        if (held.length > 0) gate.write(held);
      } else if (held.length > 0) upstream.write(held);
      relay(client, upstream, {
        idleMs: this.#cfg.idleTimeoutMs,
        now: () => this.#clock.now(),
        ...(gate ? { upTransform: gate } : {}),
        done: (r) => closeLine(r.up, r.down, r.error),
      });
    });
  }
}

function protoOf(held: Buffer): 'tls' | 'http' | null {
  if (held.length === 0) return null;
  const b = held[0]!;
  return b === 22 || (b & 0x80) !== 0 ? 'tls' : 'http';
}

/** A refusal that audit mode does not pass (there is nothing to pass to, or no policy to audit). */
function refuseHard(reason: string): ProxyDecision {
  return { verdict: 'deny', reason, policy: null, rule: null, mode: null };
}
