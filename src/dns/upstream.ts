/**
 * The client namegate forwards with: its own UDP and TCP, never dns.lookup (which runs on
 * libuv's small thread pool).
 *
 * Spoofing defences: every query gets a fresh random ID; UDP queries leave from a randomly
 * chosen socket of a pool per upstream, each socket bound to its own kernel-chosen random port,
 * connected to the upstream (the kernel drops datagrams from any other address) and replaced
 * after `queriesPerSocket` queries; a reply is accepted only when it comes from the upstream's
 * address and port, carries the ID we sent and repeats our question. Anything else is counted
 * and ignored while the query keeps waiting for the real reply.
 *
 * Failure handling: each attempt has a timeout; attempts go to the upstreams in turn (an
 * upstream that failed in the last few seconds is tried last); a truncated UDP reply is retried
 * over TCP to the same upstream. The reply's bytes are returned untouched apart from the ID.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { ErrorCode, NamegateError } from '../core/errors.ts';
import { literalLookup } from '../core/literal-lookup.ts';
import { replyMismatch, setId } from './message.ts';
import type { RandomIds } from './random.ts';
import { Flag, MAX_MESSAGE_BYTES, type Question } from './wire.ts';

export interface UpstreamServer {
  readonly host: string;
  readonly port: number;
  readonly family: 4 | 6;
}

export interface UpstreamOptions {
  readonly servers: readonly UpstreamServer[];
  readonly timeoutMs: number;
  readonly attempts: number;
  readonly socketsPerServer: number;
  readonly queriesPerSocket: number;
  readonly tcpFallback: boolean;
  readonly ids: RandomIds;
  readonly now: () => number;
  readonly observe?: UpstreamObserver;
}

export interface UpstreamObserver {
  /** A successful attempt and how long it took (ms). */
  answered(transport: 'udp' | 'tcp', ms: number): void;
  /** timeout | network | tcp | mismatch */
  failed(kind: string): void;
}

export type Transport = 'udp' | 'tcp';

export interface UpstreamReply {
  readonly bytes: Buffer;
  readonly transport: Transport;
  readonly server: UpstreamServer;
}

export class UpstreamError extends NamegateError {
  readonly reason: 'upstream_timeout' | 'upstream_failed';
  constructor(reason: 'upstream_timeout' | 'upstream_failed', detail: string) {
    super(reason === 'upstream_timeout' ? ErrorCode.DnsUpstreamTimeout : ErrorCode.DnsUpstreamFailed, detail);
    this.name = 'UpstreamError';
    this.reason = reason;
  }
}

class AttemptError extends Error {
  readonly kind: 'timeout' | 'network' | 'tcp';
  constructor(kind: 'timeout' | 'network' | 'tcp', message: string) {
    super(message);
    this.kind = kind;
  }
}

interface Waiter {
  readonly question: Question;
  readonly started: number;
  /** When the attempt times out (monotonic ms); checked by the client's sweep. */
  readonly deadline: number;
  resolve(reply: Buffer): void;
  reject(err: AttemptError): void;
}

/** One UDP socket, connected to one upstream from its own random port. */
class Slot {
  readonly server: UpstreamServer;
  readonly socket: dgram.Socket;
  readonly waiting = new IdTable<Waiter>();
  uses = 0;
  retired = false;
  closed = false;
  // Sends made before the socket is connected wait here (Node rejects them until then).
  #connected = false;
  #queued: Buffer[] = [];

  constructor(server: UpstreamServer, onMessage: (slot: Slot, msg: Buffer, rinfo: dgram.RemoteInfo) => void) {
    this.server = server;
    this.socket = dgram.createSocket({
      type: server.family === 6 ? 'udp6' : 'udp4',
      lookup: literalLookup as never,
    });
    this.socket.on('message', (msg, rinfo) => onMessage(this, msg, rinfo));
    // ICMP errors surface here on a connected socket: fail fast instead of waiting for timeouts.
    this.socket.on('error', (err) => this.#fail(err));
    this.socket.connect(server.port, server.host, () => {
      this.#connected = true;
      const queued = this.#queued;
      this.#queued = [];
      for (const q of queued) this.send(q);
    });
  }

  /**
   * Send without a callback: Node then tries a synchronous send first, the cheapest path. A
   * send that fails shows up as an attempt that times out (or, for ICMP errors on this
   * connected socket, as an 'error' event that fails the attempts at once).
   */
  send(msg: Buffer): void {
    if (this.closed) return;
    if (!this.#connected) {
      this.#queued.push(msg);
      return;
    }
    try {
      this.socket.send(msg);
    } catch {
      // closed under us: the attempt times out
    }
  }

  #fail(err: Error): void {
    this.retired = true;
    const all = this.waiting.values();
    this.waiting.clear();
    for (const w of all) w.reject(new AttemptError('network', err.message));
    this.#queued = [];
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.socket.close();
    } catch {
      // already closed
    }
  }
}

class ServerPool {
  readonly server: UpstreamServer;
  readonly slots: Slot[] = [];
  /** Replaced slots still waiting for replies; swept for timeouts, closed when empty. */
  readonly draining = new Set<Slot>();
  failedAt = Number.NEGATIVE_INFINITY;
  readonly #onMessage: (slot: Slot, msg: Buffer, rinfo: dgram.RemoteInfo) => void;

  constructor(
    server: UpstreamServer,
    size: number,
    onMessage: (slot: Slot, msg: Buffer, rinfo: dgram.RemoteInfo) => void,
  ) {
    this.server = server;
    this.#onMessage = onMessage;
    for (let i = 0; i < size; i++) this.slots.push(new Slot(server, onMessage));
  }

  /**
   * A random slot. A slot that served its quota (or failed) is replaced as soon as that is
   * known, so its successor is usually connected by the time it is picked; the old one closes
   * once its last reply arrived.
   */
  pick(ids: RandomIds, quota: number): Slot {
    const i = ids.below(this.slots.length);
    let slot = this.slots[i]!;
    if (slot.retired) {
      slot = this.#replace(i);
    }
    slot.uses++;
    if (slot.uses >= quota) this.#replace(i);
    return slot;
  }

  #replace(i: number): Slot {
    const old = this.slots[i]!;
    old.retired = true;
    // The query that used up the quota is about to be sent on it: the sweep closes it once
    // its last reply (or timeout) is in.
    this.draining.add(old);
    const slot = new Slot(this.server, this.#onMessage);
    this.slots[i] = slot;
    return slot;
  }

  /** Reject attempts past their deadline; close drained slots. */
  sweep(now: number): void {
    for (const slot of this.slots) expire(slot, now, this.server);
    for (const slot of this.draining) {
      expire(slot, now, this.server);
      if (slot.waiting.size === 0) {
        slot.close();
        this.draining.delete(slot);
      }
    }
  }

  close(): void {
    for (const s of this.slots) s.close();
    for (const s of this.draining) s.close();
  }
}

function expire(slot: Slot, now: number, server: UpstreamServer): void {
  if (slot.waiting.size === 0) return;
  for (const [id, w] of slot.waiting.expired(now)) {
    slot.waiting.delete(id);
    w.reject(new AttemptError('timeout', `${server.host}:${server.port} did not answer in time`));
  }
}

const NO_EXPIRED: ReadonlyArray<never> = Object.freeze([]);

/**
 * Waiters of one socket by 16-bit query ID: open addressing (linear probing, deletion by
 * backward shift) in a typed array. A Map here reallocated its table every few queries, since
 * each socket sees a steady churn of one insert and one delete per query.
 */
export class IdTable<T extends { readonly deadline: number }> {
  #ids = new Int32Array(16).fill(-1);
  #values: (T | undefined)[] = new Array(16).fill(undefined);
  #size = 0;

  get size(): number {
    return this.#size;
  }

  #find(id: number): number {
    const ids = this.#ids;
    const mask = ids.length - 1;
    let i = id & mask;
    for (;;) {
      const k = ids[i] as number;
      if (k === id) return i;
      if (k === -1) return -1;
      i = (i + 1) & mask;
    }
  }

  has(id: number): boolean {
    return this.#find(id) >= 0;
  }

  get(id: number): T | undefined {
    const i = this.#find(id);
    return i < 0 ? undefined : this.#values[i];
  }

  /** Add a waiter under an ID not in the table. */
  set(id: number, value: T): void {
    if (2 * (this.#size + 1) > this.#ids.length) this.#grow();
    const ids = this.#ids;
    const mask = ids.length - 1;
    let i = id & mask;
    while (ids[i] !== -1) i = (i + 1) & mask;
    ids[i] = id;
    this.#values[i] = value;
    this.#size++;
  }

  delete(id: number): boolean {
    let i = this.#find(id);
    if (i < 0) return false;
    const ids = this.#ids;
    const values = this.#values;
    const mask = ids.length - 1;
    // Backward shift: move later entries of the probe run into the hole, so lookups never
    // need tombstones.
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const k = ids[j] as number;
      if (k === -1) break;
      const home = k & mask;
      // Entry j may fill hole i unless its home lies cyclically in (i, j].
      if (i <= j ? home <= i || home > j : home <= i && home > j) {
        ids[i] = k;
        values[i] = values[j];
        i = j;
      }
    }
    ids[i] = -1;
    values[i] = undefined;
    this.#size--;
    return true;
  }

  #grow(): void {
    const oldIds = this.#ids;
    const oldValues = this.#values;
    this.#ids = new Int32Array(oldIds.length * 2).fill(-1);
    this.#values = new Array(oldIds.length * 2).fill(undefined);
    this.#size = 0;
    for (let i = 0; i < oldIds.length; i++) {
      if (oldIds[i] !== -1) this.set(oldIds[i] as number, oldValues[i] as T);
    }
  }

  values(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.#ids.length; i++) if (this.#ids[i] !== -1) out.push(this.#values[i] as T);
    return out;
  }

  /** [id, waiter] of every waiter whose deadline is not after `now`. */
  expired(now: number): ReadonlyArray<[number, T]> {
    let out: Array<[number, T]> | null = null;
    for (let i = 0; i < this.#ids.length; i++) {
      const v = this.#values[i];
      if (this.#ids[i] !== -1 && v !== undefined && v.deadline <= now) {
        if (out === null) out = [];
        out.push([this.#ids[i] as number, v]);
      }
    }
    return out ?? NO_EXPIRED;
  }

  clear(): void {
    this.#ids.fill(-1);
    this.#values.fill(undefined);
    this.#size = 0;
  }
}

const RECENT_FAILURE_MS = 5000;

export class UpstreamClient {
  readonly #o: UpstreamOptions;
  readonly #pools: ServerPool[];
  #closed = false;
  readonly #tcpSockets = new Set<net.Socket>();
  readonly #sweeper: NodeJS.Timeout;

  constructor(options: UpstreamOptions) {
    if (options.servers.length === 0) throw new Error('at least one upstream is required');
    this.#o = options;
    const onMessage = (slot: Slot, msg: Buffer, rinfo: dgram.RemoteInfo) => this.#onMessage(slot, msg, rinfo);
    this.#pools = options.servers.map((s) => new ServerPool(s, options.socketsPerServer, onMessage));
    // One timer for all attempts instead of one per query: a timeout fires at most a sweep
    // period late, which is small against the timeout itself.
    const period = Math.max(5, Math.min(50, Math.floor(options.timeoutMs / 4)));
    this.#sweeper = setInterval(() => {
      const now = this.#o.now();
      for (const p of this.#pools) p.sweep(now);
    }, period);
    this.#sweeper.unref();
  }

  /**
   * Forward `query` (a client's validated query; its ID bytes are overwritten) and return the
   * first reply that matches. `tcp` forwards over TCP from the start (the client used TCP).
   */
  async query(query: Buffer, question: Question, tcp: boolean): Promise<UpstreamReply> {
    const order = this.#order();
    let lastKind: 'timeout' | 'network' | 'tcp' = 'timeout';
    let lastMessage = 'no attempt made';
    for (let attempt = 0; attempt < this.#o.attempts; attempt++) {
      if (this.#closed) break;
      const pool = order[attempt % order.length]!;
      try {
        if (tcp)
          return {
            bytes: await this.#tcp(pool.server, query, question),
            transport: 'tcp',
            server: pool.server,
          };
        const reply = await this.#udp(pool, query, question);
        if (this.#o.tcpFallback && (reply[2]! << 8) & Flag.TC) {
          try {
            return {
              bytes: await this.#tcp(pool.server, query, question),
              transport: 'tcp',
              server: pool.server,
            };
          } catch (err) {
            // The truncated reply is still a valid answer: the client retries over TCP itself.
            this.#o.observe?.failed((err as AttemptError).kind ?? 'tcp');
          }
        }
        return { bytes: reply, transport: 'udp', server: pool.server };
      } catch (err) {
        const e = err instanceof AttemptError ? err : new AttemptError('network', String(err));
        pool.failedAt = this.#o.now();
        lastKind = e.kind;
        lastMessage = e.message;
        this.#o.observe?.failed(e.kind);
      }
    }
    throw new UpstreamError(
      lastKind === 'timeout' ? 'upstream_timeout' : 'upstream_failed',
      `no upstream answered after ${this.#o.attempts} attempts: ${lastMessage}`,
    );
  }

  #order(): ServerPool[] {
    const pools = this.#pools;
    if (pools.length === 1) return pools;
    const now = this.#o.now();
    const healthy = pools.filter((p) => now - p.failedAt >= RECENT_FAILURE_MS);
    if (healthy.length === pools.length) return pools;
    return [...healthy, ...pools.filter((p) => now - p.failedAt < RECENT_FAILURE_MS)];
  }

  #udp(pool: ServerPool, query: Buffer, question: Question): Promise<Buffer> {
    const slot = pool.pick(this.#o.ids, this.#o.queriesPerSocket);
    let id = this.#o.ids.next();
    while (slot.waiting.has(id)) id = this.#o.ids.next();
    setId(query, id);
    return new Promise<Buffer>((resolve, reject) => {
      const started = this.#o.now();
      slot.waiting.set(id, { question, started, deadline: started + this.#o.timeoutMs, resolve, reject });
      slot.send(query);
    });
  }

  #onMessage(slot: Slot, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const server = slot.server;
    if (rinfo.address !== server.host || rinfo.port !== server.port || msg.length < 2) {
      this.#o.observe?.failed('mismatch');
      return;
    }
    const id = (msg[0]! << 8) | msg[1]!;
    const waiter = slot.waiting.get(id);
    if (!waiter || replyMismatch(msg, waiter.question) !== null) {
      this.#o.observe?.failed('mismatch');
      return;
    }
    slot.waiting.delete(id);
    this.#o.observe?.answered('udp', this.#o.now() - waiter.started);
    waiter.resolve(msg);
  }

  /** One query on its own TCP connection; the reply must carry our ID and question. */
  #tcp(server: UpstreamServer, query: Buffer, question: Question): Promise<Buffer> {
    const id = this.#o.ids.next();
    const frame = Buffer.allocUnsafe(query.length + 2);
    frame.writeUInt16BE(query.length, 0);
    query.copy(frame, 2);
    setId(frame.subarray(2), id);
    const started = this.#o.now();
    return new Promise<Buffer>((resolve, reject) => {
      const sock = net.connect({ host: server.host, port: server.port, noDelay: true });
      this.#tcpSockets.add(sock);
      let chunks: Buffer[] = [];
      let have = 0;
      let settled = false;
      const finish = (err: AttemptError | null, reply?: Buffer) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#tcpSockets.delete(sock);
        sock.destroy();
        if (err) reject(err);
        else {
          this.#o.observe?.answered('tcp', this.#o.now() - started);
          resolve(reply!);
        }
      };
      const timer = setTimeout(
        () =>
          finish(new AttemptError('timeout', `${server.host}:${server.port} (tcp) did not answer in time`)),
        this.#o.timeoutMs,
      );
      sock.on('connect', () => sock.write(frame));
      sock.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        have += chunk.length;
        if (have > MAX_MESSAGE_BYTES + 2)
          return finish(new AttemptError('tcp', 'reply longer than a DNS message'));
        if (have < 2) return;
        const buf = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
        chunks = [buf];
        const len = buf.readUInt16BE(0);
        if (have < len + 2) return;
        const reply = Buffer.from(buf.subarray(2, 2 + len));
        if (reply.length < 12 || reply.readUInt16BE(0) !== id || replyMismatch(reply, question) !== null) {
          this.#o.observe?.failed('mismatch');
          return finish(new AttemptError('tcp', 'TCP reply does not match the query'));
        }
        finish(null, reply);
      });
      sock.on('error', (err) => finish(new AttemptError('network', err.message)));
      sock.on('close', () => finish(new AttemptError('network', 'connection closed before a reply')));
    });
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#sweeper);
    for (const p of this.#pools) p.close();
    for (const s of this.#tcpSockets) s.destroy();
  }
}
