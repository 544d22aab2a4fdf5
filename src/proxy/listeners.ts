/**
 * What both proxies share around the per-connection logic: TCP listeners on IP literals (IPv6
 * listeners are IPv6-only, so an IPv4 client is always seen with its IPv4 address), the
 * connection caps (total and per source address), and source address normalisation.
 */
import net from 'node:net';
import { canonicalIp } from '../core/ip.ts';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** A peer address as canonical text; IPv4-mapped IPv6 becomes plain IPv4. */
export function peerAddress(text: string | undefined): string | null {
  if (!text) return null;
  const plain = text.startsWith('::ffff:') && net.isIPv4(text.slice(7)) ? text.slice(7) : text;
  return canonicalIp(plain);
}

/** Open connections, in total and per source; acquire fails past either cap. */
export class ConnectionLimiter {
  readonly #max: number;
  readonly #maxPerSource: number;
  readonly #bySource = new Map<string, number>();
  #total = 0;

  constructor(max: number, maxPerSource: number) {
    this.#max = max;
    this.#maxPerSource = maxPerSource;
  }

  get total(): number {
    return this.#total;
  }

  acquire(source: string): boolean {
    const n = this.#bySource.get(source) ?? 0;
    if (this.#total >= this.#max || n >= this.#maxPerSource) return false;
    this.#bySource.set(source, n + 1);
    this.#total++;
    return true;
  }

  release(source: string): void {
    const n = this.#bySource.get(source);
    if (n === undefined) return;
    if (n <= 1) this.#bySource.delete(source);
    else this.#bySource.set(source, n - 1);
    this.#total--;
  }
}

/**
 * Take an accepted client socket in: its errors never become uncaught exceptions (NODE-05), and
 * it holds a slot of the limiter (and a place in `open`) until it closes. Returns the client's
 * address, or null when the socket was refused (stopping, or over a cap) and destroyed.
 */
export function admit(
  socket: net.Socket,
  limiter: ConnectionLimiter,
  open: Set<net.Socket>,
  stopping: boolean,
): string | null {
  // Attached first, before anything can fail.
  socket.on('error', () => {});
  const src = peerAddress(socket.remoteAddress);
  if (!src || stopping || !limiter.acquire(src)) {
    socket.destroy();
    return null;
  }
  open.add(socket);
  socket.once('close', () => {
    open.delete(socket);
    limiter.release(src);
  });
  return src;
}

/** Listen on every address; resolves with the bound addresses (port 0 picks one). */
export async function listenAll(
  addresses: readonly ListenAddress[],
  onConnection: (socket: net.Socket) => void,
): Promise<{ servers: net.Server[]; bound: ListenAddress[] }> {
  const servers: net.Server[] = [];
  const bound: ListenAddress[] = [];
  try {
    for (const a of addresses) {
      const server = net.createServer(
        { allowHalfOpen: true, pauseOnConnect: true, noDelay: true },
        onConnection,
      );
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        // reusePort: during a rolling update two agents share the node's network and port.
        server.listen(
          { host: a.host, port: a.port, ipv6Only: a.host.includes(':'), backlog: 1024, reusePort: true },
          () => {
            server.off('error', reject);
            resolve();
          },
        );
      });
      const addr = server.address() as net.AddressInfo;
      bound.push({ host: addr.address, port: addr.port });
    }
  } catch (err) {
    for (const s of servers) s.close();
    throw err;
  }
  return { servers, bound };
}

/**
 * Stop accepting at once, then give the open connections up to `drainMs` to end by themselves
 * (a request in flight when an agent is replaced finishes instead of being reset); whatever is
 * still open then is destroyed. Returns how many were destroyed.
 */
export async function closeAll(
  servers: readonly net.Server[],
  sockets: Iterable<net.Socket>,
  drainMs = 0,
): Promise<number> {
  // A server's close callback runs once its last accepted connection has ended.
  const closed = Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  if (drainMs > 0) {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((r) => {
      timer = setTimeout(r, drainMs);
    });
    await Promise.race([closed, deadline]);
    clearTimeout(timer);
  }
  let cut = 0;
  for (const s of sockets) {
    if (!s.destroyed) cut++;
    s.destroy();
  }
  await closed;
  return cut;
}
