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
import type net from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Registry } from 'prom-client';
import type { Clock } from '../core/clock.ts';
import { classifyAddress } from '../core/ip.ts';
import type { CanonicalName } from '../core/names.ts';
import type { IdentityProvider } from '../identity/identity.ts';
import { F } from '../observe/fields.ts';
import type { LineSink } from '../observe/line-sink.ts';
import type { Logger } from '../observe/log.ts';
import type { CompiledPolicies } from '../policy/compile.ts';
import { answerAddressAllowed, decide, decideAddress } from '../policy/decide.ts';
import { type Identity, type Mode, type PolicyRef, policyRefText } from '../policy/model.ts';
import type { CurrentPolicies } from '../policy/source.ts';
import { parseClientHello } from './client-hello.ts';
import { HttpGate } from './http-gate.ts';
import { parseRequestHead, type RequestHead } from './http-head.ts';
import { type ListenAddress, peerAddress } from './listeners.ts';
import { peek } from './peek.ts';
import type { NameResolver } from './resolver.ts';
import { httpResponse } from './responses.ts';
import { RetryGate } from './retry-gate.ts';
import { connectLiteral, type ProxyConn, ProxyServer } from './server.ts';
import type { ProxySettings } from './settings.ts';
import { type ProxyDecision, refuse } from './verdict.ts';

export interface ConnectProxyOptions {
  /** Listens on settings.connect.listen. */
  readonly settings: ProxySettings;
  readonly policies: CurrentPolicies;
  readonly identities: IdentityProvider;
  readonly resolver: NameResolver;
  readonly log: Logger;
  readonly registry: Registry;
  readonly flowLog?: LineSink | null;
  readonly clock?: Clock;
  /** Addresses that count as this host's own besides its interfaces' (tests). */
  readonly ownAddresses?: readonly string[];
}

/** Addresses tried for one request, in the resolver's order. */
const MAX_DIAL_ATTEMPTS = 2;

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

/** What a request may reach: a name to resolve or an address, the port, and the decision. */
interface Target {
  readonly name: CanonicalName | null;
  readonly ip: string | null;
  readonly port: number;
  readonly decision: ProxyDecision;
}

export class ConnectProxy {
  readonly #o: ConnectProxyOptions;
  readonly #s: ProxySettings;
  readonly #server: ProxyServer;
  #own = new Set<string>();

  private constructor(o: ConnectProxyOptions) {
    this.#o = o;
    this.#s = o.settings;
    this.#server = new ProxyServer('connect', o);
  }

  static async start(o: ConnectProxyOptions): Promise<ConnectProxy> {
    const p = new ConnectProxy(o);
    const bound = await p.#server.listen(o.settings.connect.listen, (c) => p.#handle(c));
    p.#refreshOwn();
    o.log.info({ [F.event]: 'proxy', listen: bound }, 'CONNECT proxy listening');
    return p;
  }

  addresses(): ListenAddress[] {
    return this.#server.addresses();
  }

  get active(): number {
    return this.#server.active;
  }

  /** Stop accepting; open connections get up to `drainMs` to finish (0: cut at once). */
  stop(drainMs = 0): Promise<void> {
    return this.#server.stop(drainMs);
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
    for (const b of this.#server.addresses()) {
      const ip = peerAddress(b.host);
      if (ip) own.add(ip);
    }
    this.#own = own;
  }

  async #handle(c: ProxyConn): Promise<void> {
    const got = await peek(c.socket, Buffer.alloc(0), this.#s.peekTimeoutMs, (held) => {
      const r = parseRequestHead(held, this.#s.head);
      if (r.kind === 'head') return { done: r.head };
      return r.kind === 'error' ? { fail: r.reason } : null;
    });
    if (got.kind === 'fail') {
      const status = got.reason === 'timeout' ? 408 : got.reason === 'too_large' ? 431 : 400;
      return this.#refuse(c, new Refusal(status, got.reason));
    }
    const head = got.value;
    const rest = got.held.subarray(head.headBytes);
    const target = this.#decide(c, head);
    if (target instanceof Refusal) return this.#refuse(c, target);

    const addresses = target.ip !== null ? [target.ip] : await this.#resolve(c, target);
    if (addresses === null) return;
    if (c.socket.destroyed) return;

    const upstream = await this.#dial(c, addresses, target);
    if (!upstream) return;
    c.dst = upstream.remoteAddress ?? null;
    if (c.socket.destroyed) {
      upstream.destroy();
      return;
    }
    if (head.method === 'CONNECT') return this.#tunnel(c, upstream, target, rest);
    return this.#forward(c, upstream, target, head, rest);
  }

  /** The checked addresses of the target's name (resolved here, once), or null when refused. */
  async #resolve(c: ProxyConn, target: Target): Promise<string[] | null> {
    const mode = target.decision.mode;
    let resolved: Array<{ ip: string }>;
    try {
      resolved = await this.#o.resolver.resolve(target.name!);
    } catch {
      this.#server.metrics.upstreamErrors.inc({ proxy: 'connect', kind: 'resolve' });
      this.#refuse(c, new Refusal(502, 'resolve_failed', mode));
      return null;
    }
    if (resolved.length === 0) {
      this.#refuse(c, new Refusal(502, 'no_address', mode));
      return null;
    }
    const addresses: string[] = [];
    let lastReason = 'denied_address';
    for (const a of resolved) {
      const why = this.#addressProblem(c.identity, a.ip);
      if (why === null) addresses.push(a.ip);
      else lastReason = why;
    }
    if (addresses.length === 0) {
      this.#refuse(c, new Refusal(403, lastReason, mode));
      return null;
    }
    return addresses;
  }

  /** The first address that connects; none: refused with 502 (or the client left: null). */
  async #dial(c: ProxyConn, addresses: readonly string[], target: Target): Promise<net.Socket | null> {
    for (const ip of addresses.slice(0, MAX_DIAL_ATTEMPTS)) {
      const dialed = await this.#server.dial(() => connectLiteral(ip, target.port), c.socket);
      if (dialed === null) return null;
      if ('socket' in dialed) return dialed.socket;
    }
    this.#server.metrics.upstreamErrors.inc({ proxy: 'connect', kind: 'connect' });
    this.#refuse(c, new Refusal(502, 'upstream_unreachable', target.decision.mode));
    return null;
  }

  /**
   * CONNECT: 200, then (on TLS ports) the tunnel's ClientHello must name the CONNECT host
   * (CON-09), and so must a second hello after a HelloRetryRequest (retry-gate.ts).
   */
  async #tunnel(c: ProxyConn, upstream: net.Socket, target: Target, rest: Buffer): Promise<void> {
    const { decision } = target;
    c.socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    let held = rest;
    let gate: RetryGate | null = null;
    if (this.#s.connect.tlsPorts.has(target.port) && target.ip === null) {
      const sni = await peek(c.socket, rest, this.#s.peekTimeoutMs, (bytes) => {
        if (bytes.length === 0) return null;
        const r = parseClientHello(bytes, this.#s.hello);
        if (r.kind === 'hello') return { done: { name: r.hello.sni, consumed: r.consumed } };
        return r.kind === 'error' ? { fail: r.reason } : null;
      });
      if (sni.kind === 'fail' || sni.value.name !== target.name) {
        upstream.destroy();
        const reason = sni.kind === 'fail' ? sni.reason : 'sni_mismatch';
        const detail = sni.kind === 'done' ? `tunnel SNI ${sni.value.name}` : undefined;
        this.#server.noted(c, { ...decision, verdict: 'deny', reason }, detail ? { detail } : {});
        c.socket.destroy();
        return;
      }
      gate = new RetryGate({
        sni: sni.value.name,
        limits: this.#s.hello,
        timeoutMs: this.#s.peekTimeoutMs,
        enforce: decision.verdict === 'allow',
        onRefusal: (r) => this.#server.noted(c, refuse(decision.mode, r.reason), { detail: r.message }),
      });
      upstream.write(sni.held.subarray(0, sni.value.consumed));
      held = sni.held.subarray(sni.value.consumed);
    }
    this.#server.decided(c, decision);
    if (gate) {
      if (held.length > 0) gate.write(held);
    } else if (held.length > 0) upstream.write(held);
    this.#server.relay(c, upstream, decision.verdict, gate);
  }

  /** Absolute-form request: one request, rewritten, then only its body. */
  #forward(c: ProxyConn, upstream: net.Socket, target: Target, head: RequestHead, rest: Buffer): void {
    this.#server.decided(c, target.decision);
    const gate = new HttpGate(() => null, this.#s.head, undefined, { single: true });
    gate.afterHead(head);
    upstream.write(rewriteRequest(head));
    if (rest.length > 0) gate.write(rest);
    this.#server.relay(c, upstream, target.decision.verdict, gate);
  }

  /** Policy for the request's authority; a Refusal, or what to dial. */
  #decide(c: ProxyConn, head: RequestHead): Refusal | Target {
    let authority = head.targetAuthority;
    if (head.method === 'CONNECT') {
      if (head.body.kind !== 'none') return new Refusal(400, 'malformed');
    } else if (authority === null || head.scheme !== 'http') {
      return new Refusal(400, 'not_a_proxy_request');
    }
    authority = authority!;
    const port = authority.port ?? 80;
    c.name = authority.host ?? authority.ip;
    c.dport = port;

    const identity = this.#o.identities.lookup(c.src) ?? null;
    c.identity = identity;
    const set: CompiledPolicies = this.#o.policies.current();
    const mode = identity ? set.selection(identity).mode : null;
    if (!identity && this.#s.connect.unknownSources === 'deny') return new Refusal(403, 'unknown_source');

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
    if (identity)
      return answerAddressAllowed(this.#o.policies.current(), identity, ip) ? null : 'denied_address';
    return classifyAddress(ip) === 'public' ? null : 'denied_address';
  }

  #refuse(c: ProxyConn, r: Refusal): void {
    // Audit sources pass what policy alone refuses; address, parse and upstream problems never pass.
    // CON-08: answer and close; whatever the client pipelined after the head is never read.
    this.#server.refuse(c, r.d, httpResponse(r.status, r.reason));
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
