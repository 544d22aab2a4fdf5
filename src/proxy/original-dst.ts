/**
 * The original destination of a connection nftables REDIRECTed to the SNI proxy (NODE-01).
 *
 * Primary: build/sockopt.node (native/sockopt) calls getsockopt(SO_ORIGINAL_DST) on the socket's
 * file descriptor. Node has no public way to reach the descriptor: `socket._handle.fd` is an
 * internal field of the TCP handle (present on Linux in Node 24; tested in
 * test/unit/proxy/original-dst.test.ts so an upgrade that drops it fails loudly, not open).
 *
 * Fallback: the conntrack tool, `conntrack -L -p tcp --orig-src <client> --sport <client port>`,
 * picking the entry whose reply comes from our listening port. It spawns a process per
 * connection (milliseconds), so it is bounded in time and output and meant for hosts without a
 * compiler. Any failure gives null and the proxy closes the connection: it never dials an
 * address it made up or resolved itself.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isIP, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { canonicalIp } from '../core/ip.ts';

export interface OriginalDst {
  readonly address: string;
  readonly port: number;
}

/** What the proxy calls per connection; null (or a rejected promise) closes the connection. */
export type OriginalDestination = (socket: Socket) => OriginalDst | null | Promise<OriginalDst | null>;

export interface SockoptAddon {
  getOriginalDst(fd: number, family: 4 | 6): OriginalDst | null;
  lastErrno(): number;
}

/** Where the addon is: $NAMEGATE_SOCKOPT_ADDON, else build/sockopt.node at the repository root. */
export function sockoptAddonPath(): string {
  return (
    process.env['NAMEGATE_SOCKOPT_ADDON'] ??
    fileURLToPath(new URL('../../build/sockopt.node', import.meta.url))
  );
}

export function loadSockoptAddon(path = sockoptAddonPath()): SockoptAddon | string {
  if (!existsSync(path)) return `${path} does not exist`;
  try {
    const mod = createRequire(import.meta.url)(path) as Partial<SockoptAddon>;
    if (typeof mod.getOriginalDst !== 'function' || typeof mod.lastErrno !== 'function')
      return `${path} does not export getOriginalDst/lastErrno`;
    return mod as SockoptAddon;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

/** The socket's file descriptor through the internal `_handle.fd`, or null. */
export function socketFd(socket: Socket): number | null {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 ? fd : null;
}

/** A socket's local family: 6 for IPv6 sockets (IPv4-mapped peers included), else 4. */
function familyOf(socket: Socket): 4 | 6 {
  return socket.localFamily === 'IPv6' || isIP(socket.localAddress ?? '') === 6 ? 6 : 4;
}

export function addonOriginalDst(addon: SockoptAddon): OriginalDestination {
  return (socket) => {
    const fd = socketFd(socket);
    if (fd === null) return null;
    const r = addon.getOriginalDst(fd, familyOf(socket));
    if (!r) return null;
    const address = canonicalIp(r.address);
    if (!address || !(r.port >= 1 && r.port <= 65535)) return null;
    return { address, port: r.port };
  };
}

const CONNTRACK_TIMEOUT_MS = 2000;
const CONNTRACK_MAX_OUTPUT = 64 * 1024;

/**
 * Read the original destination from a `conntrack -L` listing: the entry whose original tuple
 * starts at (src, sport) and whose reply tuple comes from (our address, our port). Pure.
 */
export function parseConntrack(
  text: string,
  src: string,
  sport: number,
  localPort: number,
): OriginalDst | null {
  for (const line of text.split('\n')) {
    if (!line.startsWith('tcp')) continue;
    const pairs = [...line.matchAll(/\b(src|dst|sport|dport)=(\S+)/g)].map((m) => [m[1]!, m[2]!] as const);
    if (pairs.length < 8) continue;
    const orig = new Map(pairs.slice(0, 4));
    const reply = new Map(pairs.slice(4, 8));
    if (canonicalIp(orig.get('src') ?? '') !== src || Number(orig.get('sport')) !== sport) continue;
    if (Number(reply.get('sport')) !== localPort) continue;
    const address = canonicalIp(orig.get('dst') ?? '');
    const port = Number(orig.get('dport'));
    if (!address || !(port >= 1 && port <= 65535)) continue;
    return { address, port };
  }
  return null;
}

export function conntrackOriginalDst(binary = 'conntrack'): OriginalDestination {
  return (socket) => {
    const src = canonicalIp(socket.remoteAddress ?? '');
    const sport = socket.remotePort;
    const localPort = socket.localPort;
    if (!src || !sport || !localPort) return null;
    const family = isIP(src) === 6 ? 'ipv6' : 'ipv4';
    return new Promise((resolve) => {
      execFile(
        binary,
        ['-L', '-f', family, '-p', 'tcp', '--orig-src', src, '--sport', String(sport)],
        { timeout: CONNTRACK_TIMEOUT_MS, maxBuffer: CONNTRACK_MAX_OUTPUT, killSignal: 'SIGKILL' },
        (err, stdout) => {
          if (err && !stdout) return resolve(null);
          resolve(parseConntrack(String(stdout), src, sport, localPort));
        },
      );
    });
  };
}

export type OriginalDstMethod = 'auto' | 'addon' | 'conntrack';

/** The lookup for a config setting, and which method it uses ('none' when neither is possible). */
export function originalDestinationFor(method: OriginalDstMethod): {
  lookup: OriginalDestination;
  method: 'addon' | 'conntrack' | 'none';
  problem: string | null;
} {
  if (method !== 'conntrack') {
    const addon = loadSockoptAddon();
    if (typeof addon !== 'string') return { lookup: addonOriginalDst(addon), method: 'addon', problem: null };
    if (method === 'addon') return { lookup: () => null, method: 'none', problem: addon };
    return { lookup: conntrackOriginalDst(), method: 'conntrack', problem: addon };
  }
  return { lookup: conntrackOriginalDst(), method: 'conntrack', problem: null };
}
