/**
 * An IP address with a port, as written in config files and flags: "192.0.2.1:53",
 * "[2001:db8::1]:53", or a bare address that takes a default port. Names are refused: every
 * listener and upstream namegate uses is an IP literal, so nothing depends on a resolver.
 */
import { ErrorCode, NamegateError } from './errors.ts';
import { canonicalIp } from './ip.ts';

export interface HostPort {
  /** Canonical IP text (IPv6 without brackets). */
  readonly host: string;
  readonly port: number;
  readonly family: 4 | 6;
}

/** "192.0.2.1", "192.0.2.1:53", "[2001:db8::1]:53" or "2001:db8::1"; a message when it is not one. */
export function parseHostPort(text: string, defaultPort = 53): HostPort | string {
  let host = text;
  let portText: string | null = null;
  const bracket = /^\[([^\]]+)\](?::([0-9]+))?$/.exec(text);
  if (bracket) {
    host = bracket[1] ?? '';
    portText = bracket[2] ?? null;
  } else if (/^[0-9.]+:[0-9]+$/.test(text)) {
    const i = text.lastIndexOf(':');
    host = text.slice(0, i);
    portText = text.slice(i + 1);
  }
  const ip = canonicalIp(host);
  if (!ip)
    return `${JSON.stringify(text)} is not an IP address with an optional port (use [v6]:port for IPv6)`;
  const port = portText === null ? defaultPort : Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    return `port ${JSON.stringify(portText)} is not 0-65535`;
  return { host: ip, port, family: ip.includes(':') ? 6 : 4 };
}

/**
 * As parseHostPort, for text a config has already validated (or a flag): a bad address throws
 * NG_CONFIG_INVALID naming `what`. Listeners default to port 0 (the kernel picks one).
 */
export function hostPort(text: string, what: string, defaultPort = 0): HostPort {
  const hp = parseHostPort(text, defaultPort);
  if (typeof hp === 'string') throw new NamegateError(ErrorCode.ConfigInvalid, `${what}: ${hp}`);
  return hp;
}

/** "192.0.2.1:53" or "[2001:db8::1]:53": what parseHostPort reads back. */
export function formatHostPort(hp: Pick<HostPort, 'host' | 'port'>): string {
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}
