/**
 * The sockets clients talk to: UDP and TCP on every listen address, IPv4 and IPv6.
 *
 * TCP follows RFC 7766: a 2-byte length prefix, several queries per connection (pipelined,
 * answered as each completes, so possibly out of order), frames split across reads or several
 * in one read. Bounds: connections in total and per source, queries in progress per connection
 * (reading pauses at the limit), an idle timeout, and output buffered for a slow reader (the
 * connection is closed past it). A frame shorter than a DNS header ends the connection.
 *
 * With port 0 the UDP socket is bound first and TCP listens on the same port, so tests get one
 * address for both transports.
 *
 * Handover (reusePort: another process, e.g. the next agent of a rolling update, serves the same
 * port): close() answers every query it took before it lets go. A UDP socket is taken out of the
 * kernel's SO_REUSEPORT selection first (Linux skips a connected UDP socket there), so new
 * queries go to the other process, and it is closed only once what it had queued is answered;
 * TCP stops accepting and ends its connections once their queries are answered. Bounded by
 * DRAIN_MS. A reply due after the socket closed is counted as a drop, never thrown.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { errorMessage } from '../core/errors.ts';
import { literalLookup } from '../core/literal-lookup.ts';
import { F } from '../observe/fields.ts';
import type { Logger } from '../observe/log.ts';
import type { DnsMetrics } from './metrics.ts';
import type { Transport } from './upstream.ts';
import { HEADER_BYTES, MAX_MESSAGE_BYTES } from './wire.ts';

export interface Handler {
  handle(msg: Buffer, src: string, transport: Transport): Promise<Buffer | null>;
}

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
  readonly family: 4 | 6;
}

export interface ServerLimits {
  readonly tcpMaxConnections: number;
  readonly tcpMaxConnectionsPerSource: number;
  readonly tcpMaxInFlightPerConnection: number;
  readonly tcpIdleTimeoutMs: number;
  readonly recvBufferBytes: number;
}

const MAX_TCP_OUTPUT_BYTES = 1024 * 1024;
/** Longest close() waits for queries in progress when another process shares the port. */
export const DRAIN_MS = 2_000;
/** An excluded UDP socket that received nothing for this long has an empty queue. */
const QUIET_MS = 20;

/** A UDP socket's queries in progress and its handover state. */
interface UdpState {
  inFlight: number;
  /** Datagrams received so far (to notice arrivals during a quiet wait). */
  arrived: number;
  /** Connected away (or connecting) for the handover: replies wait in `pending`. */
  excluded: boolean;
  closed: boolean;
  readonly pending: Array<{ reply: Buffer; port: number; address: string }>;
  idle: (() => void) | null;
}

/** Source text the way identities and the store key it: IPv4-mapped IPv6 becomes IPv4. */
export function normalizeSource(address: string): string {
  let a = address;
  const pct = a.indexOf('%');
  if (pct >= 0) a = a.slice(0, pct);
  if (a.startsWith('::ffff:') && a.includes('.')) return a.slice(7);
  return a;
}

export class DnsServer {
  readonly #handler: Handler;
  readonly #listen: readonly ListenAddress[];
  readonly #limits: ServerLimits;
  readonly #metrics: DnsMetrics;
  readonly #log: Logger;
  readonly #udp: dgram.Socket[] = [];
  readonly #tcp: net.Server[] = [];
  readonly #conns = new Set<net.Socket>();
  readonly #udpState = new Map<dgram.Socket, UdpState>();
  /** TCP queries in progress over all connections (the handover waits for 0). */
  #tcpInFlight = 0;
  #tcpIdle: (() => void) | null = null;
  readonly #perSource = new Map<string, number>();
  /** Set by reusePort workers: several processes or threads serve the same UDP port. */
  readonly #reusePort: boolean;

  constructor(
    handler: Handler,
    listen: readonly ListenAddress[],
    limits: ServerLimits,
    metrics: DnsMetrics,
    log: Logger,
    options: { reusePort?: boolean } = {},
  ) {
    this.#handler = handler;
    this.#listen = listen;
    this.#limits = limits;
    this.#metrics = metrics;
    this.#log = log;
    this.#reusePort = options.reusePort ?? false;
  }

  get tcpConnections(): number {
    return this.#conns.size;
  }

  /** The bound addresses (UDP and TCP share each port). */
  addresses(): ListenAddress[] {
    return this.#udp.map((s) => {
      const a = s.address();
      return { host: a.address, port: a.port, family: a.family === 'IPv6' ? 6 : 4 };
    });
  }

  async start(): Promise<void> {
    try {
      for (const l of this.#listen) await this.#bindPair(l);
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  async #bindPair(l: ListenAddress): Promise<void> {
    // Port 0: retry when the kernel's UDP choice is taken for TCP.
    for (let attempt = 0; ; attempt++) {
      const udp = await this.#bindUdp(l);
      const port = udp.address().port;
      try {
        const tcp = await this.#listenTcp({ ...l, port });
        this.#udp.push(udp);
        this.#tcp.push(tcp);
        return;
      } catch (err) {
        udp.close();
        if (l.port !== 0 || attempt >= 10 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
      }
    }
  }

  #bindUdp(l: ListenAddress): Promise<dgram.Socket> {
    return new Promise((resolve, reject) => {
      const sock = dgram.createSocket({
        type: l.family === 6 ? 'udp6' : 'udp4',
        ipv6Only: l.family === 6,
        reusePort: this.#reusePort,
        recvBufferSize: this.#limits.recvBufferBytes,
        sendBufferSize: this.#limits.recvBufferBytes,
        lookup: literalLookup as never,
      });
      const onError = (err: Error) => reject(err);
      sock.once('error', onError);
      sock.bind({ address: l.host, port: l.port, exclusive: !this.#reusePort }, () => {
        sock.off('error', onError);
        sock.on('error', (err) => this.#log.error({ [F.error]: errorMessage(err) }, 'dns udp socket error'));
        const st = this.#udpOf(sock);
        sock.on('message', (msg, rinfo) => this.#onDatagram(sock, st, msg, rinfo));
        resolve(sock);
      });
    });
  }

  #udpOf(sock: dgram.Socket): UdpState {
    let st = this.#udpState.get(sock);
    if (!st) {
      st = { inFlight: 0, arrived: 0, excluded: false, closed: false, pending: [], idle: null };
      this.#udpState.set(sock, st);
    }
    return st;
  }

  #onDatagram(sock: dgram.Socket, st: UdpState, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const src = normalizeSource(rinfo.address);
    st.inFlight++;
    st.arrived++;
    this.#handler.handle(msg, src, 'udp').then(
      (reply) => {
        if (reply) this.#send(sock, st, reply, rinfo.port, rinfo.address);
        this.#udpDone(st);
      },
      () => this.#udpDone(st),
    );
  }

  #udpDone(st: UdpState): void {
    st.inFlight--;
    if (st.inFlight === 0) st.idle?.();
  }

  /** Never throws: a closed socket (or any send error) is a counted drop. */
  #send(sock: dgram.Socket, st: UdpState, reply: Buffer, port: number, address: string): void {
    if (st.closed) {
      this.#metrics.drops.inc({ reason: 'send_failed' });
      return;
    }
    if (st.excluded) {
      // A connected socket sends to its peer only; the handover sends these once disconnected.
      st.pending.push({ reply, port, address });
      return;
    }
    try {
      sock.send(reply, port, address, (err) => {
        if (err) this.#metrics.drops.inc({ reason: 'send_failed' });
      });
    } catch {
      this.#metrics.drops.inc({ reason: 'send_failed' });
    }
  }

  #listenTcp(l: ListenAddress): Promise<net.Server> {
    return new Promise((resolve, reject) => {
      const server = net.createServer({ noDelay: true, pauseOnConnect: false }, (c) => this.#onConnection(c));
      server.maxConnections = this.#limits.tcpMaxConnections;
      server.on('drop', () => this.#metrics.drops.inc({ reason: 'tcp_connections' }));
      const onError = (err: Error) => reject(err);
      server.once('error', onError);
      server.listen(
        { host: l.host, port: l.port, ipv6Only: l.family === 6, exclusive: true, reusePort: this.#reusePort },
        () => {
          server.off('error', onError);
          server.on('error', (err) =>
            this.#log.error({ [F.error]: errorMessage(err) }, 'dns tcp server error'),
          );
          resolve(server);
        },
      );
    });
  }

  #onConnection(conn: net.Socket): void {
    const src = normalizeSource(conn.remoteAddress ?? '');
    const n = this.#perSource.get(src) ?? 0;
    if (src === '' || n >= this.#limits.tcpMaxConnectionsPerSource) {
      this.#metrics.drops.inc({ reason: 'tcp_connections' });
      conn.destroy();
      return;
    }
    this.#perSource.set(src, n + 1);
    this.#conns.add(conn);
    let pending: Buffer | null = null;
    let inFlight = 0;
    let paused = false;
    const max = this.#limits.tcpMaxInFlightPerConnection;

    conn.setTimeout(this.#limits.tcpIdleTimeoutMs, () => {
      // Idle means no query in progress and none arriving; a slow upstream is not idleness.
      if (inFlight === 0) conn.destroy();
    });
    conn.on('error', () => {});
    conn.on('close', () => {
      this.#conns.delete(conn);
      const left = (this.#perSource.get(src) ?? 1) - 1;
      if (left <= 0) this.#perSource.delete(src);
      else this.#perSource.set(src, left);
    });

    const answer = (frame: Buffer) => {
      inFlight++;
      this.#tcpInFlight++;
      const settled = () => {
        this.#tcpInFlight--;
        if (this.#tcpInFlight === 0) this.#tcpIdle?.();
      };
      this.#handler.handle(frame, src, 'tcp').then(
        (reply) => {
          settled();
          inFlight--;
          if (reply && !conn.destroyed) {
            const head = Buffer.allocUnsafe(2);
            head.writeUInt16BE(reply.length, 0);
            conn.write(head);
            conn.write(reply);
            if (conn.writableLength > MAX_TCP_OUTPUT_BYTES) {
              this.#metrics.drops.inc({ reason: 'tcp_slow_reader' });
              conn.destroy();
              return;
            }
          }
          if (paused && inFlight < max && !conn.destroyed) {
            paused = false;
            conn.resume();
            drain();
          }
        },
        () => {
          settled();
          inFlight--;
        },
      );
    };

    // Take whole frames off the buffer while the in-flight limit allows.
    const drain = () => {
      while (pending && pending.length >= 2 && inFlight < max) {
        const len = pending.readUInt16BE(0);
        if (len < HEADER_BYTES) {
          this.#metrics.drops.inc({ reason: 'tcp_short_frame' });
          conn.destroy();
          pending = null;
          return;
        }
        if (pending.length < 2 + len) break;
        const frame = Buffer.from(pending.subarray(2, 2 + len));
        pending = pending.length === 2 + len ? null : pending.subarray(2 + len);
        answer(frame);
      }
      if (inFlight >= max && !paused) {
        paused = true;
        conn.pause();
      }
    };

    conn.on('data', (chunk: Buffer) => {
      pending = pending ? Buffer.concat([pending, chunk]) : chunk;
      // At most one frame and a read's worth beyond it is ever buffered.
      if (pending.length > 2 * (MAX_MESSAGE_BYTES + 2)) {
        this.#metrics.drops.inc({ reason: 'tcp_buffer' });
        conn.destroy();
        return;
      }
      drain();
    });
  }

  async close(): Promise<void> {
    const udp = this.#udp.splice(0);
    // Listeners stop accepting at once (with net.ipv4.tcp_migrate_req=1 the kernel hands what
    // they had not accepted yet to the other process's listeners instead of resetting it).
    const closing = this.#tcp.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    if (this.#reusePort) {
      const deadline = Date.now() + DRAIN_MS;
      await Promise.all([...udp.map((s) => this.#handOver(s, deadline)), this.#tcpDrained(deadline)]);
    } else {
      for (const s of udp) this.#closeUdp(s);
    }
    for (const c of this.#conns) c.destroy();
    await Promise.all(closing);
  }

  #closeUdp(sock: dgram.Socket): void {
    this.#udpOf(sock).closed = true;
    try {
      sock.close();
    } catch {
      // already closed
    }
  }

  /** Resolves when `st` has no query in progress, or at the deadline. */
  #udpIdle(st: UdpState, deadline: number): Promise<void> {
    if (st.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.max(0, deadline - Date.now()));
      function done(): void {
        clearTimeout(timer);
        st.idle = null;
        resolve();
      }
      st.idle = done;
    });
  }

  #tcpDrained(deadline: number): Promise<void> {
    if (this.#tcpInFlight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#tcpIdle = null;
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, deadline - Date.now()));
      this.#tcpIdle = done;
    });
  }

  /** Connect away: the kernel then gives this socket none of the group's new datagrams. */
  #exclude(sock: dgram.Socket): Promise<boolean> {
    let host: string;
    try {
      const a = sock.address();
      host = a.address === '0.0.0.0' ? '127.0.0.1' : a.address === '::' ? '::1' : a.address;
    } catch {
      return Promise.resolve(false);
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), 1_000);
      try {
        // Port 9 (discard): nobody sends from there.
        sock.connect(9, host, (err?: Error) => {
          clearTimeout(timer);
          resolve(!err);
        });
      } catch {
        clearTimeout(timer);
        resolve(false);
      }
    });
  }

  #sendPending(sock: dgram.Socket, st: UdpState): void {
    try {
      sock.disconnect();
    } catch {
      // not connected (the connect failed or is still under way)
    }
    st.excluded = false;
    for (const p of st.pending.splice(0)) this.#send(sock, st, p.reply, p.port, p.address);
  }

  /**
   * Hand a UDP socket's port over to the other processes of its SO_REUSEPORT group without
   * losing a query: connect it away, answer what it had queued (disconnecting to send, which may
   * let a few more in: the loop takes those too), and close it once a quiet wait shows its queue
   * empty. Past the deadline it closes anyway.
   */
  async #handOver(sock: dgram.Socket, deadline: number): Promise<void> {
    const st = this.#udpOf(sock);
    let drained = false;
    try {
      while (Date.now() < deadline) {
        await this.#udpIdle(st, deadline);
        st.excluded = true;
        if (!(await this.#exclude(sock))) break;
        const seen = st.arrived;
        await new Promise((r) => setTimeout(r, QUIET_MS));
        if (st.arrived === seen && st.inFlight === 0 && st.pending.length === 0) {
          drained = true;
          break;
        }
        await this.#udpIdle(st, deadline);
        this.#sendPending(sock, st);
      }
    } finally {
      if (st.pending.length > 0) this.#sendPending(sock, st);
      this.#closeUdp(sock);
      if (!drained)
        this.#log.warn(
          { [F.reason]: 'dns-handover-incomplete' },
          'dns udp socket closed before its queue was empty',
        );
    }
  }
}
