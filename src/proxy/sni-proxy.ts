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
 *      inspected (every rule allowing the name says verify: Inspect): TLS goes to the inspector
 *      (inspect/inspector.ts), which judges each request inside it; plain HTTP requests are
 *      judged against the same HTTP rules here;
 *      refused: a TLS alert or an HTTP error, then close; no upstream connection is ever made.
 * Audit sources: every would-be refusal is logged and counted as 'audit' and the connection
 * passes (except without an original destination, where there is nothing to pass to).
 * Errors in one connection destroy that connection only (NODE-05).
 */
import type net from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Registry } from 'prom-client';
import type { Clock } from '../core/clock.ts';
import type { CanonicalName } from '../core/names.ts';
import type { IdentityProvider } from '../identity/identity.ts';
import { F } from '../observe/fields.ts';
import type { LineSink } from '../observe/line-sink.ts';
import type { Logger } from '../observe/log.ts';
import { inspectionFor } from '../policy/inspection.ts';
import type { Mode } from '../policy/model.ts';
import type { CurrentPolicies } from '../policy/source.ts';
import { type ClientHello, maxPeekBytes, parseClientHello } from './client-hello.ts';
import { GateError, HttpGate } from './http-gate.ts';
import { parseRequestHead, type RequestHead } from './http-head.ts';
import type { Inspector } from './inspect/inspector.ts';
import { factsFromHead } from './inspect/request-facts.ts';
import { requestJudge } from './inspect/request-judge.ts';
import { type ListenAddress, peerAddress } from './listeners.ts';
import type { OriginalDestination, OriginalDst } from './original-dst.ts';
import { type PeekStep, peek } from './peek.ts';
import { ALERT_ACCESS_DENIED, httpResponse, tlsAlert } from './responses.ts';
import { RetryGate } from './retry-gate.ts';
import { connectLiteral, type ProxyConn, ProxyServer } from './server.ts';
import type { ProxySettings } from './settings.ts';
import {
  cidrDecision,
  decideName,
  type LearnedView,
  modeOf,
  type ProxyDecision,
  refuse,
  sourceSet,
} from './verdict.ts';

export interface SniProxyOptions {
  /** Listens on settings.sni.listen. */
  readonly settings: ProxySettings;
  readonly policies: CurrentPolicies;
  readonly identities: IdentityProvider;
  readonly learned: LearnedView;
  readonly originalDestination: OriginalDestination;
  readonly log: Logger;
  readonly registry: Registry;
  /** Flow lines (decision and close per connection); null: none. */
  readonly flowLog?: LineSink | null;
  readonly clock?: Clock;
  /** How the upstream connection is made (tests); default a connection to the literal address. */
  readonly dial?: (dst: OriginalDst) => net.Socket;
  /** Label of the original-destination lookup in metrics ('addon', 'conntrack', ...). */
  readonly originalDestinationMethod?: string;
  /** TLS inspection (verify: Inspect); current() null: no usable CA, such connections are refused. */
  readonly inspector?: { current(): Inspector | null };
}

/** A connection of this proxy: the common record plus its original destination and mode. */
interface SniConn extends ProxyConn {
  original: OriginalDst | null;
  mode: Mode | null;
}

/** What the peek found: a ClientHello, an HTTP request head, or why neither. */
type Claim = { kind: 'tls'; hello: ClientHello; consumed: number } | { kind: 'http'; head: RequestHead };

const HTTP_STATUS: Record<string, number> = {
  path_not_allowed: 403,
  method_not_allowed: 403,
  header_not_allowed: 403,
  http_host_not_allowed: 403,
  websocket_not_allowed: 403,
  upgrade_not_allowed: 403,
  no_matching_rule: 403,
  host_not_allowed: 403,
  host_ip_mismatch: 403,
  host_port_mismatch: 403,
  host_is_ip: 403,
  h2c_upgrade: 403,
  too_large: 431,
};

export class SniProxy {
  readonly #o: SniProxyOptions;
  readonly #s: ProxySettings;
  readonly #server: ProxyServer;
  #listenPorts: ReadonlySet<number> = new Set();

  private constructor(o: SniProxyOptions) {
    this.#o = o;
    this.#s = o.settings;
    this.#server = new ProxyServer('sni', o);
  }

  static async start(o: SniProxyOptions): Promise<SniProxy> {
    const p = new SniProxy(o);
    const bound = await p.#server.listen(o.settings.sni.listen, (c) =>
      p.#handle({ ...c, original: null, mode: null }),
    );
    p.#listenPorts = new Set(bound.map((a) => a.port));
    o.log.info({ [F.event]: 'proxy', listen: bound }, 'SNI proxy listening');
    return p;
  }

  addresses(): ListenAddress[] {
    return this.#server.addresses();
  }

  /** Open client connections. */
  get active(): number {
    return this.#server.active;
  }

  /** Stop accepting; open connections get up to `drainMs` to finish (0: cut at once). */
  stop(drainMs = 0): Promise<void> {
    return this.#server.stop(drainMs);
  }

  async #handle(c: SniConn): Promise<void> {
    const dst = await this.#originalDestination(c);
    if (!dst) return this.#refuse(c, refuseHard('no_original_dst'));
    if (this.#isSelf(c.socket, dst)) return this.#refuse(c, refuseHard('loop'));

    const identity = this.#o.identities.lookup(c.src);
    if (!identity) return this.#refuse(c, refuseHard('unknown_source'));
    c.identity = identity;
    const set = this.#o.policies.current();
    c.mode = modeOf(set, identity);
    if (c.mode === null) return this.#refuse(c, refuseHard('ungoverned'));

    const byCidr = cidrDecision(set, identity, dst.address, dst.port);
    if (byCidr) {
      c.proto = 'tcp';
      return this.#pass(c, byCidr, Buffer.alloc(0), null);
    }

    const peeked = await this.#peekClaim(c);
    if (c.socket.destroyed) return;
    c.proto = protoOf(peeked.held);
    if (peeked.kind === 'fail') {
      const d = refuse(c.mode, peeked.reason);
      if (d.verdict === 'audit') return this.#pass(c, d, peeked.held, null);
      return this.#refuse(c, d);
    }
    const claim = peeked.value;
    if (claim.kind === 'tls') return this.#decideTls(c, claim.hello, claim.consumed, peeked.held);
    return this.#decideHttp(c, claim.head, peeked.held);
  }

  /** The redirected connection's original destination (counted by lookup method and result). */
  async #originalDestination(c: SniConn): Promise<OriginalDst | null> {
    let dst: OriginalDst | null = null;
    try {
      dst = await this.#o.originalDestination(c.socket);
    } catch {
      dst = null;
    }
    this.#server.metrics.originalDst.inc({
      method: this.#o.originalDestinationMethod ?? 'custom',
      result: dst ? 'ok' : 'failed',
    });
    if (dst) {
      c.original = dst;
      c.dst = dst.address;
      c.dport = dst.port;
    }
    return dst;
  }

  /**
   * TLS: the SNI name must be allowed and the destination learned for it; a second hello after a
   * HelloRetryRequest must name the same server (retry-gate.ts).
   */
  #decideTls(c: SniConn, hello: ClientHello, consumed: number, held: Buffer): Promise<void> | void {
    const d = this.#decideName(c, hello.sni, 'tls', this.#server.clock.now());
    if (hello.ech) this.#server.metrics.ech.inc({ verdict: d.verdict });
    c.name = hello.sni;
    const extra = { ech: hello.ech !== null, alpn: hello.alpn };
    if (d.verdict === 'deny') return this.#refuse(c, d, extra);
    if (this.#inspected(c, hello.sni)) return this.#inspect(c, d, hello, held, extra);
    const gate = new RetryGate({
      sni: hello.sni,
      limits: this.#s.hello,
      timeoutMs: this.#s.peekTimeoutMs,
      enforce: d.verdict === 'allow',
      onRefusal: (r) => this.#server.noted(c, refuse(c.mode, r.reason), { detail: r.message }),
    });
    return this.#pass(c, d, held, gate, extra, consumed);
  }

  /** Does every rule allowing this name and port ask for inspection (and not pass it through)? */
  #inspected(c: SniConn, name: CanonicalName): boolean {
    return inspectionFor(this.#o.policies.current(), c.identity!, name, c.original!.port).inspect;
  }

  /** Hand an allowed TLS connection to the inspector; without one, refuse it (fail closed). */
  #inspect(
    c: SniConn,
    d: ProxyDecision,
    hello: ClientHello,
    held: Buffer,
    extra: { ech: boolean; alpn: readonly string[] },
  ): Promise<void> | void {
    const inspector = this.#o.inspector?.current() ?? null;
    if (!inspector) {
      const refused = refuse(c.mode, 'inspection_unavailable');
      if (refused.verdict === 'deny') return this.#refuse(c, refused, extra);
      return this.#pass(c, refused, held, null, extra);
    }
    this.#server.decided(c, d, { ...extra, inspect: true });
    const dst = c.original!;
    inspector.handle(
      c.socket,
      held,
      {
        id: c.id,
        src: c.src,
        identity: c.identity?.key ?? null,
        sni: hello.sni,
        dst,
        alpn: hello.alpn,
        judge: requestJudge(() => this.#o.policies.current(), c.identity!, c.mode!, hello.sni, dst.port),
      },
      (end) => this.#server.closed(c, d.verdict, end.bytesUp, end.bytesDown, end.error),
    );
  }

  /** Plain HTTP: the first request decides now, every later one in the gate. */
  #decideHttp(c: SniConn, head: RequestHead, held: Buffer): Promise<void> | void {
    const d = this.#checkHead(c, head, this.#server.clock.now());
    c.name = head.host.host ?? head.host.ip;
    if (d.verdict === 'deny') return this.#refuse(c, d);
    let gate: HttpGate | null = null;
    if (d.verdict === 'allow') {
      let first = true;
      gate = new HttpGate((later) => {
        if (first) {
          first = false; // decided above, with this very head
          return null;
        }
        return this.#checkLaterHead(c, later);
      }, this.#s.head);
    }
    return this.#pass(c, d, held, gate);
  }

  /** A later request on an allowed plain-HTTP connection: null lets it through, else the reason. */
  #checkLaterHead(c: SniConn, head: RequestHead): string | null {
    const later = this.#checkHead(c, head, this.#server.clock.now());
    if (later.verdict === 'allow') return null;
    c.proto = 'http';
    c.name = head.host.host ?? head.host.ip;
    this.#server.noted(c, later);
    return later.verdict === 'audit' ? null : later.reason;
  }

  /** The Host check of one request (first or later) on a plain-HTTP connection. */
  #checkHead(c: SniConn, head: RequestHead, now: number): ProxyDecision {
    const identity = c.identity!;
    const mode = modeOf(this.#o.policies.current(), identity);
    if (mode === null) return refuseHard('ungoverned');
    if (head.method === 'CONNECT') return refuse(mode, 'malformed');
    if (head.host.host === null) return refuse(mode, 'host_is_ip');
    if ((head.host.port ?? 80) !== c.original!.port) return refuse(mode, 'host_port_mismatch');
    const d = this.#decideName(c, head.host.host, 'http', now);
    if (d.verdict !== 'allow' || !this.#inspected(c, head.host.host)) return d;
    return this.#judgeRequest(c, head, mode);
  }

  /** A plain-HTTP request on an inspected port: the rule's HTTP rules decide it. */
  #judgeRequest(c: SniConn, head: RequestHead, mode: Mode): ProxyDecision {
    const name = head.host.host!;
    const port = c.original!.port;
    const f = factsFromHead(head, { sni: name, port, defaultPort: 80 });
    if (!f.ok) return refuse(mode, f.reason);
    const r = requestJudge(() => this.#o.policies.current(), c.identity!, mode, name, port)(f.facts);
    return { verdict: r.verdict, reason: r.reason, policy: r.policy, rule: r.rule, mode };
  }

  #decideName(c: SniConn, name: CanonicalName, kind: 'tls' | 'http', now: number): ProxyDecision {
    const dst = c.original!;
    return decideName({
      set: this.#o.policies.current(),
      identity: c.identity!,
      sources: sourceSet(this.#o.identities, c.src),
      name,
      ip: dst.address,
      port: dst.port,
      kind,
      learned: this.#o.learned,
      now,
    });
  }

  /** Our own listening socket as the destination: a direct connection, not a redirect. */
  #isSelf(socket: net.Socket, dst: OriginalDst): boolean {
    // The listening ports are known: no getsockname() per connection unless the port matches.
    if (!this.#listenPorts.has(dst.port)) return false;
    if (dst.port !== socket.localPort) return false;
    if (dst.address === peerAddress(socket.localAddress)) return true;
    for (const list of Object.values(networkInterfaces())) {
      for (const a of list ?? []) if (peerAddress(a.address) === dst.address) return true;
    }
    return false;
  }

  /** The client's first bytes, held: a ClientHello or an HTTP request head, within the limits. */
  #peekClaim(c: SniConn) {
    const { hello, head } = this.#s;
    const cap = Math.max(maxPeekBytes(hello), head.maxHeadBytes);
    return peek<Claim>(c.socket, Buffer.alloc(0), this.#s.peekTimeoutMs, (held): PeekStep<Claim> => {
      if (protoOf(held) === 'tls') {
        const r = parseClientHello(held, hello);
        if (r.kind === 'hello') return { done: { kind: 'tls', hello: r.hello, consumed: r.consumed } };
        if (r.kind === 'error') return { fail: r.reason };
      } else {
        const r = parseRequestHead(held, head);
        if (r.kind === 'head') return { done: { kind: 'http', head: r.head } };
        if (r.kind === 'error') return { fail: r.reason === 'not_http' ? 'not_tls' : r.reason };
      }
      return held.length > cap ? { fail: 'too_large' } : null;
    });
  }

  /** Refuse as the client's protocol understands: a TLS alert, an HTTP error, or a plain close. */
  #refuse(c: SniConn, d: ProxyDecision, extra?: { ech: boolean; alpn: readonly string[] }): void {
    let answer: Buffer | null = null;
    if (c.proto === 'tls' && c.name !== null) answer = tlsAlert(ALERT_ACCESS_DENIED);
    else if (c.proto === 'http' && d.reason !== 'h2_prior_knowledge')
      answer = httpResponse(HTTP_STATUS[d.reason] ?? 400, d.reason);
    this.#server.refuse(c, d, answer, extra);
  }

  /** Let the connection through to its original destination (never re-resolved), held bytes first. */
  async #pass(
    c: SniConn,
    d: ProxyDecision,
    held: Buffer,
    gate: HttpGate | RetryGate | null,
    extra?: { ech: boolean; alpn: readonly string[] },
    direct = gate === null ? held.length : 0,
  ): Promise<void> {
    const server = this.#server;
    const dst = c.original!;
    server.decided(c, d, extra);
    const client = c.socket;
    if (client.destroyed) return;
    // The first `direct` held bytes (all of them, or the decided hello before a retry gate) go
    // into the connecting socket at once (Node sends them on connect): one event-loop turn less
    // before the server sees the hello. A gate writes the rest.
    const dialed = await server.dial(() => {
      const s = this.#o.dial ? this.#o.dial(dst) : connectLiteral(dst.address, dst.port);
      if (direct > 0) s.write(held.subarray(0, direct));
      return s;
    }, client);
    if (dialed === null) return;
    if ('failed' in dialed) {
      server.metrics.upstreamErrors.inc({ proxy: 'sni', kind: dialed.failed });
      client.destroy();
      server.closed(c, d.verdict, 0, 0, `upstream: ${dialed.message}`);
      return;
    }
    const upstream = dialed.socket;
    if (client.destroyed) {
      upstream.destroy();
      return;
    }
    if (gate) {
      gate.on('error', (err: Error) => {
        if (err instanceof GateError && err.head === null) {
          c.proto = 'http';
          c.name = null;
          server.noted(c, refuse(c.mode, err.reason), { detail: err.message });
        }
      });
      if (held.length > direct) gate.write(held.subarray(direct));
    }
    server.relay(c, upstream, d.verdict, gate);
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
