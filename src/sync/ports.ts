/**
 * Ports and addresses in the shapes the targets take (pure). namegate's ranges are inclusive
 * per protocol; a range over every port (0-65535) means "any port of that protocol".
 */
import type { PortRange } from '../policy/model.ts';

export function isAnyPort(p: PortRange): boolean {
  return p.from <= 1 && p.to >= 65535;
}

/** Port 0 is not a port anywhere but in namegate's "from 0": the real ranges start at 1. */
export function firstPort(p: PortRange): number {
  return Math.max(1, p.from);
}

/** "443", "8000-8100", or null for any port. */
export function portText(p: PortRange): string | null {
  if (isAnyPort(p)) return null;
  const from = firstPort(p);
  return from === p.to ? String(from) : `${from}-${p.to}`;
}

/** One address as a CIDR: "203.0.113.10/32", "2001:db8::10/128". */
export function hostCidr(ip: string): string {
  return ip.includes(':') ? `${ip}/128` : `${ip}/32`;
}
