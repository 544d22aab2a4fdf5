/**
 * The explicit proxy for clients configured with HTTPS_PROXY / HTTP_PROXY. Per connection, one
 * request head (strict, bounded, with a deadline) decides:
 *   - `CONNECT host:port` opens a tunnel; `GET http://host/...` (absolute-form) is forwarded as
 *     one request with `Connection: close` (CON-10). Anything else gets 400.
 *   - The authority must be a name (canonicalized once, here); an IP literal is refused unless a
 *     toCIDRs rule of the source allows it (CON-01). The source must be allowed (name, port) by
 *     policy (CON-04). Unknown sources are refused by default.
 *   - The proxy resolves the name itself through the trusted upstream and dials exactly an
 *     address it checked (CON-06): never one in a denied range unless a toCIDRs rule covers it
 *     (CON-05), never an address of this host (CON-07).
 *   - On TLS ports the tunnel's first bytes must be a ClientHello whose SNI is the CONNECT host
 *     (CON-09); a nested CONNECT or plain bytes fail that check too.
 *   - A refused request is answered and the connection closed: pipelined bytes after it are never
 *     read as another request (CON-08). Answers carry a reason code only: no internal address,
 *     no upstream error text (CON-13).
 * Its own upstream connections come from the node: they are not governed by the datapath, and
 * no DNS learning is needed.
 */
import net from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Registry } from 'prom-client';
import { type ProxySection, type ProxySectionInput, proxyConfig } from '../config/proxy.ts';
import { type Clock, systemClock } from '../core/clock.ts';
import { errorMessage } from '../core/errors.ts';
import { classifyAddress } from '../core/ip.ts';
import type { CanonicalName } from '../core/names.ts';
import { literalLookup } from '../dns/lookup.ts';
import type { IdentityProvider } from '../identity/identity.ts';
import { F } from '../observe/fields.ts';
import type { Logger } from '../observe/log.ts';
import type { CompiledPolicies } from '../policy/compile.ts';
import { cidrCovers, decide, decideAddress } from '../policy/decide.ts';
import { type Identity, type Mode, type PolicyRef, policyRefText } from '../policy/model.ts';
import { type HelloLimits, parseClientHello } from './client-hello.ts';
import { type LineSink, ProxyFlowLog } from './flow-log.ts';
import { HttpGate } from './http-gate.ts';
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
import { relay } from './relay.ts';
import type { NameResolver } from './resolver.ts';
import type { PolicyView, ProxyDecision } from './verdict.ts';

export interface ConnectProxyOptions {
  /** "host:port" listen addresses; default: the config's proxy.connect.listen. */
  readonly listen?: readonly string[];
  readonly policies: PolicyView;
  readonly identities: IdentityProvider;
  readonly resolver: NameResolver;
  readonly log: Logger;
  readonly registry: Registry;
  readonly flowLog?: LineSink | null;
  readonly config?: ProxySectionInput | ProxySection;
  readonly clock?: Clock;
  /** Addresses that count as this host's own besides its interfaces' (tests). */
  readonly ownAddresses?: readonly string[];
}

interface Conn {
  readonly id: number;
  readonly socket: net.Socket;
  readonly src: string;
  readonly started: number;
  identity: Identity | null;
  name: string | null;
  port: number | null;
  dst: string | null;
}

const STATUS_TEXT: Record<number, string> = {
  200: 'Connection Established',
  400: 'Bad Request',
  403: 'Forbidden',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
  504: 'Gateway Timeout',
};

function response(status: number, reason: string): Buffer {
  const body = `namegate: ${reason}\n`;
  return Buffer.from(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    'latin1',
  );
}

/** Hop-by-hop and proxy fields never forwarded upstream (RFC 9110 7.6.1). */
const HOP_FIELDS = new Set([
  'connection',
  'proxy-connection',
  'keep-alive',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'upgrade',
]);

/** The request as sent upstream: origin-form target, hop-by-hop fields dropped, one request. */
export function rewriteRequest(head: RequestHead): Buffer {
  const m = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*(.*)$/.exec(head.target);
  let path = m?.[1] ?? '/';
  if (path === '' || path.startsWith('?')) path = `/${path}`;
  if (path.startsWith('#')) path = '/';
  const listed = new Set<string>();
  for (const [k, v] of head.fields) {
    if (k === 'connection') for (const t of v.split(',')) listed.add(t.trim().toLowerCase());
  }
  const lines = [`${head.method} ${path} HTTP/${head.version}`];
  for (const [k, v] of head.fields) {
    if (HOP_FIELDS.has(k) || listed.has(k)) continue;
    lines.push(`${k}: ${v}`);
  }
  lines.push('connection: close', '', '');
  return Buffer.from(lines.join('\r\n'), 'latin1');
}

class Refusal {
  readonly status: number;
  readonly reason: string;
  readonly d: ProxyDecision;
  constructor(status: number, reason: string, mode: Mode | null = null, d?: ProxyDecision) {
    this.status = status;
    this.reason = reason;
    this.d = d ?? { verdict: 'deny', reason, policy: null, rule: null, mode };
  }
}

export class ConnectProxy {
  readonly #o: ConnectProxyOptions;
  readonly #cfg: ProxySection;
  readonly #clock: Clock;
  readonly #metrics: ProxyMetrics;
  readonly #flow: ProxyFlowLog;
  readonly #limiter: ConnectionLimiter;
  readonly #headLimits: HeadLimits;
  readonly #helloLimits: HelloLimits;
  readonly #sockets = new Set<net.Socket>();
  readonly #tlsPorts: ReadonlySet<number>;
  #own = new Set<string>();
  #servers: net.Server[] = [];
  #bound: ListenAddress[] = [];
  #ids = 0;
  #stopped = false;

  private constructor(o: ConnectProxyOptions) {
    this.#o = o;
    this.#cfg = proxyConfig(o.config as ProxySectionInput);
    this.#clock = o.clock ?? systemClock;
    this.#metrics = proxyMetrics(o.registry);
    this.#flow = new ProxyFlowLog(o.flowLog ?? null, this.#cfg.flowLog.mode, 'connect-proxy', () =>
      this.#clock.wallNow(),
    );
    this.#limiter = new ConnectionLimiter(this.#cfg.maxConnections, this.#cfg.maxConnectionsPerSource);
    this.#headLimits = { maxHeadBytes: this.#cfg.maxHeadBytes, maxFields: this.#cfg.maxHeadFields };
    this.#helloLimits = { maxHelloBytes: this.#cfg.maxHelloBytes, maxRecords: this.#cfg.maxHelloRecords };
    this.#tlsPorts = new Set(this.#cfg.connect.tlsPorts);
    this.#metrics.watch('connect', () => this.#limiter.total);
  }

  static async start(o: ConnectProxyOptions): Promise<ConnectProxy> {
    const p = new ConnectProxy(o);
    const listen = (o.listen ?? p.#cfg.connect.listen).map(parseProxyListen);
    const { servers, bound } = await listenAll(listen, (s) => p.#accept(s));
    p.#servers = servers;
    p.#bound = bound;
    p.#refreshOwn();
    o.log.info({ [F.event]: 'proxy', listen: bound }, 'CONNECT proxy listening');
    return p;
  }

  addresses(): ListenAddress[] {
    return [...this.#bound];
  }

  get active(): number {
    return this.#limiter.total;
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await closeAll(this.#servers, this.#sockets);
  }

  /** This host's addresses (CON-07); refreshed now and then, interfaces change rarely. */
  #refreshOwn(): void {
    const own = new Set<string>(this.#o.ownAddresses ?? []);
    for (const list of Object.values(networkInterfaces())) {
      for (const a of list ?? []) {
        const ip = peerAddress(a.address);
        if (ip) own.add(ip);
      }
    }
    for (const b of this.#bound) {
      const ip = peerAddress(b.host);
      if (ip) own.add(ip);
    }
    this.#own = own;
  }

  #accept(socket: net.Socket): void {
    const src = admit(socket, this.#limiter, this.#sockets, this.#stopped);
    if (src === null) {
      this.#metrics.count('connect', 'deny', 'limit');
      return;
    }
    const c: Conn = {
      id: ++this.#ids,
      socket,
      src,
      started: this.#clock.now(),
      identity: null,
      name: null,
      port: null,
      dst: null,
    };
    this.#handle(c).catch((err: unknown) => {
      this.#o.log.error(
        { [F.event]: 'proxy', [F.connection]: c.id, [F.error]: errorMessage(err) },
        'CONNECT proxy connection failed',
      );
      socket.destroy();
    });
  }

  async #handle(c: Conn): Promise<void> {
    const got = await this.#readHead(c.socket);
    if (got.kind === 'fail') {
      const status = got.reason === 'too_large' ? 431 : 400;
      return this.#refuse(c, new Refusal(got.reason === 'timeout' ? 408 : status, got.reason));
    }
    const { head, rest } = got;
    const outcome = this.#decide(c, head);
    if (outcome instanceof Refusal) return this.#refuse(c, outcome);
    const { name, port, decision } = outcome;

    let addresses: string[];
    if (outcome.ip !== null) addresses = [outcome.ip];
    else {
      let resolved: Array<{ ip: string }>;
      try {
        resolved = await this.#o.resolver.resolve(name!);
      } catch {
        this.#metrics.upstreamErrors.inc({ proxy: 'connect', kind: 'resolve' });
        return this.#refuse(c, new Refusal(502, 'resolve_failed', decision.mode));
      }
      if (resolved.length === 0) return this.#refuse(c, new Refusal(502, 'no_address', decision.mode));
      addresses = [];
      let lastReason = 'denied_address';
      for (const a of resolved) {
        const why = this.#addressProblem(c.identity, a.ip);
        if (why === null) addresses.push(a.ip);
        else lastReason = why;
      }
      if (addresses.length === 0) return this.#refuse(c, new Refusal(403, lastReason, decision.mode));
    }
    if (c.socket.destroyed) return;

    const upstream = await this.#dial(addresses, port);
    if (!upstream) {
      this.#metrics.upstreamErrors.inc({ proxy: 'connect', kind: 'connect' });
      return this.#refuse(c, new Refusal(502, 'upstream_unreachable', decision.mode));
    }
    c.dst = upstream.remoteAddress ?? null;
    if (c.socket.destroyed) {
      upstream.destroy();
      return;
    }

    if (head.method === 'CONNECT') {
      c.socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      let held = rest;
      if (this.#tlsPorts.has(port) && outcome.ip === null) {
        const sni = await this.#peekSni(c.socket, rest);
        if (sni.kind === 'fail' || sni.name !== name) {
          upstream.destroy();
          const reason = sni.kind === 'fail' ? sni.reason : 'sni_mismatch';
          const d: ProxyDecision = { ...decision, verdict: 'deny', reason };
          this.#metrics.count('connect', 'deny', reason);
          this.#log(c, d, sni.kind === 'ok' ? `tunnel SNI ${sni.name}` : undefined);
          c.socket.destroy();
          return;
        }
        held = sni.held;
      }
      this.#metrics.count('connect', decision.verdict, decision.reason);
      this.#metrics.decision.observe({ proxy: 'connect' }, (this.#clock.now() - c.started) / 1000);
      this.#log(c, decision);
      if (held.length > 0) upstream.write(held);
      this.#relay(c, upstream, decision.verdict, null);
      return;
    }

    // Absolute-form request: one request, rewritten, then only its body.
    this.#metrics.count('connect', decision.verdict, decision.reason);
    this.#metrics.decision.observe({ proxy: 'connect' }, (this.#clock.now() - c.started) / 1000);
    this.#log(c, decision);
    const gate = new HttpGate(() => null, this.#headLimits, undefined, { single: true });
    gate.afterHead(head);
    upstream.write(rewriteRequest(head));
    if (rest.length > 0) gate.write(rest);
    this.#relay(c, upstream, decision.verdict, gate);
  }

  /** Policy for the request's authority; a Refusal, or what to dial. */
  #decide(
    c: Conn,
    head: RequestHead,
  ): Refusal | { name: CanonicalName | null; ip: string | null; port: number; decision: ProxyDecision } {
    let authority = head.targetAuthority;
    if (head.method === 'CONNECT') {
      if (head.body.kind !== 'none') return new Refusal(400, 'malformed');
    } else if (authority === null || head.scheme !== 'http') {
      return new Refusal(400, 'not_a_proxy_request');
    }
    authority = authority!;
    const port = authority.port ?? 80;
    c.name = authority.host ?? authority.ip;
    c.port = port;

    const identity = this.#o.identities.lookup(c.src) ?? null;
    c.identity = identity;
    const set: CompiledPolicies = this.#o.policies.current();
    const mode = identity ? set.selection(identity).mode : null;
    if (!identity && this.#cfg.connect.unknownSources === 'deny') return new Refusal(403, 'unknown_source');

    if (authority.ip !== null) {
      // CON-01: an address, not a name. Only a toCIDRs rule can allow it.
      const ip = authority.ip;
      if (identity && mode !== null) {
        const d = decideAddress(set, identity, ip, 'TCP', port);
        if (d.verdict === 'deny') return new Refusal(403, 'ip_literal', mode);
        const decision = toDecision(d.verdict, d.verdict === 'allow' ? d.reason : 'ip_literal', mode, d);
        return { name: null, ip, port, decision };
      }
      const why = this.#addressProblem(null, ip);
      if (why !== null) return new Refusal(403, why, null);
      return { name: null, ip, port, decision: toDecision('allow', 'ungoverned', null, null) };
    }
    const name = authority.host!;
    if (!identity || mode === null) {
      return { name, ip: null, port, decision: toDecision('allow', 'ungoverned', null, null) };
    }
    const d = decide(set, identity, name, 'TCP', port);
    if (d.verdict === 'deny')
      return new Refusal(403, 'name_not_allowed', mode, toDecision('deny', 'name_not_allowed', mode, d));
    return {
      name,
      ip: null,
      port,
      decision: toDecision(d.verdict, d.verdict === 'allow' ? d.reason : 'name_not_allowed', mode, d),
    };
  }

  /** Why `ip` may not be dialled for this source (CON-05, CON-07), or null. */
  #addressProblem(identity: Identity | null, ip: string): string | null {
    if (this.#own.has(ip)) return 'own_address';
    if (classifyAddress(ip) === 'public') return null;
    if (identity && cidrCovers(this.#o.policies.current(), identity, ip)) return null;
    return 'denied_address';
  }

  async #dial(addresses: readonly string[], port: number): Promise<net.Socket | null> {
    for (const ip of addresses.slice(0, 2)) {
      const s = await new Promise<net.Socket | null>((resolve) => {
        const sock = net.connect({
          host: ip,
          port,
          allowHalfOpen: true,
          noDelay: true,
          lookup: literalLookup as never,
        });
        const timer = setTimeout(() => {
          sock.destroy();
          resolve(null);
        }, this.#cfg.connectTimeoutMs);
        sock.once('connect', () => {
          clearTimeout(timer);
          sock.removeAllListeners('error');
          sock.on('error', () => {});
          resolve(sock);
        });
        sock.once('error', () => {
          clearTimeout(timer);
          sock.destroy();
          resolve(null);
        });
      });
      if (s) return s;
    }
    return null;
  }

  #readHead(
    socket: net.Socket,
  ): Promise<{ kind: 'ok'; head: RequestHead; rest: Buffer } | { kind: 'fail'; reason: string }> {
    return new Promise((resolve) => {
      let held: Buffer = Buffer.alloc(0);
      let settled = false;
      const finish = (r: Parameters<typeof resolve>[0]) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.off('data', onData);
        socket.off('end', onEnd);
        socket.pause();
        resolve(r);
      };
      const timer = setTimeout(() => finish({ kind: 'fail', reason: 'timeout' }), this.#cfg.peekTimeoutMs);
      const onEnd = () => finish({ kind: 'fail', reason: 'client_closed' });
      const onData = (chunk: Buffer) => {
        held = held.length === 0 ? chunk : Buffer.concat([held, chunk]);
        const r = parseRequestHead(held, this.#headLimits);
        if (r.kind === 'head') finish({ kind: 'ok', head: r.head, rest: held.subarray(r.head.headBytes) });
        else if (r.kind === 'error') finish({ kind: 'fail', reason: r.reason });
      };
      socket.on('data', onData);
      socket.once('end', onEnd);
      socket.resume();
    });
  }

  /** The tunnel's ClientHello: its SNI, with every byte held. */
  #peekSni(
    socket: net.Socket,
    first: Buffer,
  ): Promise<{ kind: 'ok'; name: string; held: Buffer } | { kind: 'fail'; reason: string }> {
    return new Promise((resolve) => {
      let held: Buffer = first;
      let settled = false;
      const finish = (r: Parameters<typeof resolve>[0]) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.off('data', onData);
        socket.off('end', onEnd);
        socket.pause();
        resolve(r);
      };
      const check = () => {
        if (held.length === 0) return;
        const r = parseClientHello(held, this.#helloLimits);
        if (r.kind === 'hello') finish({ kind: 'ok', name: r.hello.sni, held });
        else if (r.kind === 'error') finish({ kind: 'fail', reason: r.reason });
      };
      const timer = setTimeout(() => finish({ kind: 'fail', reason: 'timeout' }), this.#cfg.peekTimeoutMs);
      const onEnd = () => finish({ kind: 'fail', reason: 'client_closed' });
      const onData = (chunk: Buffer) => {
        held = held.length === 0 ? chunk : Buffer.concat([held, chunk]);
        check();
      };
      check();
      if (settled) return;
      socket.on('data', onData);
      socket.once('end', onEnd);
      socket.resume();
    });
  }

  #log(c: Conn, d: ProxyDecision, detail?: string): void {
    this.#flow.decision({
      conn: c.id,
      src: c.src,
      identity: c.identity?.key ?? null,
      proto: 'connect',
      name: c.name,
      dst: c.dst,
      dport: c.port,
      verdict: d.verdict,
      reason: d.reason,
      policy: d.policy,
      rule: d.rule,
      ms: this.#clock.now() - c.started,
      ...(detail ? { detail } : {}),
    });
  }

  #refuse(c: Conn, r: Refusal): void {
    // Audit sources pass what policy alone refuses; address, parse and upstream problems never pass.
    this.#metrics.count('connect', 'deny', r.reason);
    this.#metrics.decision.observe({ proxy: 'connect' }, (this.#clock.now() - c.started) / 1000);
    this.#log(c, r.d);
    const socket = c.socket;
    socket.once('close', () =>
      this.#flow.close({
        conn: c.id,
        src: c.src,
        dst: c.dst,
        dport: c.port,
        verdict: 'deny',
        bytesUp: 0,
        bytesDown: socket.bytesWritten,
        ms: this.#clock.now() - c.started,
      }),
    );
    if (socket.destroyed) return;
    // CON-08: answer and close; whatever the client pipelined after the head is never read.
    socket.pause();
    socket.end(response(r.status, r.reason));
    const t = setTimeout(() => socket.destroy(), 1000);
    t.unref();
    socket.once('close', () => clearTimeout(t));
  }

  #relay(c: Conn, upstream: net.Socket, verdict: ProxyDecision['verdict'], gate: HttpGate | null): void {
    relay(c.socket, upstream, {
      idleMs: this.#cfg.idleTimeoutMs,
      now: () => this.#clock.now(),
      ...(gate ? { upTransform: gate } : {}),
      done: (r) => {
        this.#metrics.bytes.inc({ proxy: 'connect', direction: 'up' }, r.up);
        this.#metrics.bytes.inc({ proxy: 'connect', direction: 'down' }, r.down);
        this.#flow.close({
          conn: c.id,
          src: c.src,
          dst: c.dst,
          dport: c.port,
          verdict,
          bytesUp: r.up,
          bytesDown: r.down,
          ms: this.#clock.now() - c.started,
          ...(r.error ? { error: r.error } : {}),
        });
      },
    });
  }
}

function toDecision(
  verdict: ProxyDecision['verdict'],
  reason: string,
  mode: Mode | null,
  d: { policy: PolicyRef | null; rule: number | null } | null,
): ProxyDecision {
  return { verdict, reason, policy: d?.policy ? policyRefText(d.policy) : null, rule: d?.rule ?? null, mode };
}
