/**
 * Two agents on one node share what their DNS proxies learned (REL-11). During a rolling update
 * the kernel hands a connection to either agent's SNI proxy, which checks the binding (SNI-02)
 * against what this agent knows: its own store, or what the other agent's store told it.
 *
 * Each agent serves its store on a Unix socket `<state dir>/agents/<pid>-<random>.sock` (the
 * checkpoint's folder, a hostPath both pods mount): a snapshot, a `synced` line, then every new
 * or extended entry as one JSON line (src/store/peer-line.ts). Each agent follows every other
 * socket it finds (at start, on an fs.watch event, and on a poll as a fallback) into its
 * PeerEntries; a socket nobody listens on is a dead agent's, and is removed. At start an agent waits (bounded) for the peers' snapshots, and for the peers to
 * follow it back, before its DNS proxy opens its sockets, so no answer of either agent goes
 * unseen by the other.
 *
 * Fail closed: a peer's feed only ever adds knowledge; a broken, slow, oversized or malformed
 * feed is closed with a reason code and changes nothing else. Each socket path is followed at
 * most once (a path belongs to one agent's life). The folder is 0700 and the socket 0600: only
 * the agents' own user can connect.
 */
import { randomBytes } from 'node:crypto';
import { type FSWatcher, watch } from 'node:fs';
import { chmod, mkdir, readdir, stat, unlink } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import path from 'node:path';
import type { Clock } from '../core/clock.ts';
import { errorMessage } from '../core/errors.ts';
import { F } from '../observe/fields.ts';
import type { Logger } from '../observe/log.ts';
import type { LearnedStore, StoreEntry } from '../store/learned-store.ts';
import { encodePeerLine, MAX_PEER_LINE_BYTES, parsePeerLine, SYNCED_LINE } from '../store/peer-line.ts';
import type { PeerEntries } from '../store/peer-view.ts';
import type { AgentMetrics } from './metrics.ts';

export interface PeerFeedOptions {
  /** The folder of the sockets (`<checkpoint folder>/agents`). */
  readonly dir: string;
  readonly peers: PeerEntries;
  readonly clock: Clock;
  readonly log: Logger;
  readonly metrics: AgentMetrics;
  /** A peer's entry may live at most this long from now (the store's maxTTL + grace). */
  readonly maxLifetimeMs: number;
  /** Lines a peer may send per second after its snapshot (the snapshot may hold maxEntries). */
  readonly linesPerSecond?: number;
  /** How long the start waits for peers' snapshots and for peers to follow back. */
  readonly startWaitMs?: number;
  readonly pollMs?: number;
}

/** A served peer that reads too slowly holds this much of our output beyond the snapshot, then is cut. */
const MAX_QUEUED_BYTES = 16 * 1024 * 1024;
const SNAPSHOT_BATCH = 1000;

export class PeerFeed {
  readonly #o: PeerFeedOptions;
  readonly #own: string;
  readonly #server: Server;
  readonly #served = new Set<Socket>();
  readonly #followed = new Map<string, Socket>();
  /** Paths already tried: a path is one agent's life, never followed twice. */
  readonly #tried = new Set<string>();
  readonly #synced = new Set<string>();
  readonly #waiters = new Set<() => void>();
  #store: LearnedStore | null = null;
  #watcher: FSWatcher | null = null;
  #poll: NodeJS.Timeout | null = null;
  #scanning: Promise<void> | null = null;
  #rescan = false;
  #stopped = false;

  constructor(options: PeerFeedOptions) {
    this.#o = options;
    this.#own = path.join(options.dir, `${process.pid}-${randomBytes(4).toString('hex')}.sock`);
    this.#server = createServer((socket) => this.#serve(socket));
    this.#server.on('error', (err) => this.#error('server_error', this.#own, err));
  }

  /** Peers' feeds this agent follows now. */
  get following(): number {
    return this.#followed.size;
  }

  /** This agent's socket. */
  get socketPath(): string {
    return this.#own;
  }

  /**
   * Serve `store`, follow the peers present now, and wait (bounded) until their snapshots are in
   * and they follow this agent back. Never throws: without a feed the agent works as before.
   */
  async start(store: LearnedStore): Promise<void> {
    this.#store = store;
    const { dir, log } = this.#o;
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await chmod(dir, 0o700);
      await new Promise<void>((resolve, reject) => {
        this.#server.once('error', reject);
        this.#server.listen(this.#own, () => {
          this.#server.off('error', reject);
          resolve();
        });
      });
      await chmod(this.#own, 0o600);
    } catch (err) {
      this.#error('listen_failed', this.#own, err);
      return;
    }
    try {
      this.#watcher = watch(dir, () => this.#scan());
      this.#watcher.on('error', (err) => this.#error('watch_failed', dir, err));
    } catch (err) {
      this.#error('watch_failed', dir, err);
    }
    this.#poll = setInterval(() => this.#scan(), this.#o.pollMs ?? 1000);
    this.#poll.unref();
    this.#scan();
    await this.#scanning;
    const ok = await this.until(
      () =>
        [...this.#followed.keys()].every((p) => this.#synced.has(p)) &&
        this.#served.size >= this.#followed.size,
      this.#o.startWaitMs ?? 2000,
    );
    log.info(
      {
        [F.event]: 'peer_feed',
        [F.reason]: ok ? 'started' : 'start_wait_timeout',
        socket: this.#own,
        following: this.#followed.size,
        served: this.#served.size,
      },
      'peer feed serving',
    );
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#watcher?.close();
    if (this.#poll) clearInterval(this.#poll);
    for (const s of this.#followed.values()) s.destroy();
    for (const s of this.#served) s.destroy();
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    if (this.#server.listening) await closed;
    await unlink(this.#own).catch(() => undefined);
    this.#wake();
  }

  #scan(): void {
    if (this.#stopped) return;
    if (this.#scanning) {
      this.#rescan = true;
      return;
    }
    this.#scanning = (async () => {
      do {
        this.#rescan = false;
        let names: string[] = [];
        try {
          names = await readdir(this.#o.dir);
        } catch (err) {
          this.#error('scan_failed', this.#o.dir, err);
        }
        for (const name of names) {
          const file = path.join(this.#o.dir, name);
          if (!name.endsWith('.sock') || file === this.#own || this.#tried.has(file)) continue;
          this.#tried.add(file);
          this.#follow(file);
        }
      } while (this.#rescan && !this.#stopped);
      this.#scanning = null;
    })();
  }

  /** Serve our store to a peer: snapshot, `synced`, then live additions. */
  #serve(socket: Socket): void {
    const store = this.#store;
    if (this.#stopped || !store) {
      socket.destroy();
      return;
    }
    this.#served.add(socket);
    this.#o.metrics.peerFeedConnections.inc({ role: 'served' });
    const { clock } = this.#o;
    const line = (e: StoreEntry): string =>
      encodePeerLine({
        source: e.source,
        name: e.name,
        ip: e.ip,
        expiresAtWall: clock.wallNow() + (e.expiresAt - clock.now()),
      });
    let batch: string[] = [];
    for (const e of store.entries()) {
      batch.push(line(e));
      if (batch.length >= SNAPSHOT_BATCH) {
        socket.write(batch.join(''));
        batch = [];
      }
    }
    batch.push(SYNCED_LINE);
    socket.write(batch.join(''));
    // The snapshot may be large (bounded by the store's cap); the limit is on what comes after.
    const limit = socket.writableLength + MAX_QUEUED_BYTES;
    const unsubscribe = store.onLearned((e) => {
      if (socket.writableLength > limit) {
        this.#error('slow_reader', 'served', null);
        socket.destroy();
        return;
      }
      socket.write(line(e));
    });
    // The follower sends nothing; anything it sends ends the feed.
    socket.on('data', () => {
      this.#error('unexpected_data', 'served', null);
      socket.destroy();
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      unsubscribe();
      this.#served.delete(socket);
    });
    this.#wake();
  }

  /** Follow a peer's socket into the peer entries, every line checked and bounded. */
  #follow(file: string): void {
    const { clock, peers, metrics, maxLifetimeMs } = this.#o;
    const rate = this.#o.linesPerSecond ?? 50_000;
    const socket = createConnection(file);
    socket.setEncoding('utf8');
    this.#followed.set(file, socket);
    let buffered = '';
    let reason: string | null = null;
    // Token bucket: the snapshot may fill the peer entries, live lines come at `rate`.
    const burst = rate + peers.maxEntries;
    let tokens = burst;
    let last = clock.now();
    const fail = (why: string): void => {
      reason ??= why;
      socket.destroy();
    };
    socket.on('connect', () => {
      metrics.peerFeedConnections.inc({ role: 'followed' });
      this.#o.log.info({ [F.event]: 'peer_feed', [F.reason]: 'following', socket: file }, 'following peer');
    });
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      if (buffered.length > MAX_PEER_LINE_BYTES) return fail('line_too_long');
      const now = clock.now();
      tokens = Math.min(burst, tokens + ((now - last) * rate) / 1000);
      last = now;
      const wall = clock.wallNow();
      for (const text of lines) {
        if (--tokens < 0) return fail('rate_limited');
        const parsed = parsePeerLine(text, wall, maxLifetimeMs);
        if (!parsed.ok) return fail(parsed.reason);
        if (parsed.synced) {
          this.#synced.add(file);
          this.#wake();
        }
        const e = parsed.entry;
        if (e === null) continue;
        if (!peers.add(e.source, e.name, e.ip, now + (e.expiresAtWall - wall), now))
          metrics.peerFeedErrors.inc({ reason: 'peer_full' });
      }
      metrics.peerEntries.set(peers.size);
      this.#wake();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // A socket whose agent is gone (refused, or removed meanwhile) is not an error of the feed.
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') reason ??= 'peer_gone';
      // A peer that stops ends its feed; a reset says no more than that.
      else if (err.code !== 'ECONNRESET') fail('socket_error');
    });
    socket.on('close', async () => {
      if (reason === 'peer_gone') await this.#removeStale(file);
      this.#followed.delete(file);
      this.#synced.delete(file);
      if (reason !== null && reason !== 'peer_gone') this.#error(reason, file, null);
      else if (!this.#stopped)
        this.#o.log.info(
          { [F.event]: 'peer_feed', [F.reason]: 'peer_closed', socket: file },
          'peer feed ended',
        );
      this.#wake();
    });
  }

  /**
   * A socket left by an agent that died: nobody listens. A peer binds, then listens: a socket
   * younger than a few seconds may just not listen yet, and is left alone.
   */
  async #removeStale(file: string): Promise<void> {
    const info = await stat(file).catch(() => null);
    if (!info || this.#o.clock.wallNow() - info.mtimeMs < 5000) return;
    await unlink(file).catch(() => undefined);
    this.#o.log.info({ [F.event]: 'peer_feed', [F.reason]: 'stale_socket', socket: file }, 'removed');
  }

  /** Resolves true once `done()` holds (checked whenever a feed moves), false after `ms`. */
  async until(done: () => boolean, ms: number): Promise<boolean> {
    const deadline = this.#o.clock.now() + ms;
    while (!done()) {
      if (this.#stopped || this.#o.clock.now() >= deadline) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(wake, Math.max(1, deadline - this.#o.clock.now()));
        function wake(): void {
          clearTimeout(timer);
          resolve();
        }
        this.#waiters.add(wake);
      });
    }
    return true;
  }

  #wake(): void {
    for (const w of this.#waiters) w();
    this.#waiters.clear();
  }

  #error(reason: string, where: string, err: unknown): void {
    this.#o.metrics.peerFeedErrors.inc({ reason });
    this.#o.log.warn(
      {
        [F.event]: 'peer_feed',
        [F.reason]: reason,
        socket: where,
        ...(err ? { [F.error]: errorMessage(err) } : {}),
      },
      'peer feed closed or unavailable; this agent goes on with its own knowledge',
    );
  }
}
