/**
 * One line of the learned-entries feed between two agents on one node (REL-11, src/agent/peer-feed.ts):
 * `{"s":source,"n":name,"i":ip,"e":expiresAtWallMs}`. Pure: encode, and parse with every field
 * checked. The feed is an edge: a name must arrive canonical (never canonicalized here, so the peer
 * view holds exactly what the peer's store held), addresses must be literal IPs, and the expiry
 * must lie in the future by at most `maxLifetimeMs` (a peer cannot make an entry eternal).
 */
import { isIP } from 'node:net';
import { tryWireName } from '../core/names.ts';

/** A line longer than this closes the feed (`line_too_long`): the longest valid line is ~400 bytes. */
export const MAX_PEER_LINE_BYTES = 1024;

export interface PeerEntry {
  readonly source: string;
  readonly name: string;
  readonly ip: string;
  /** Wall-clock ms since the epoch (the two agents' monotonic clocks have different origins). */
  readonly expiresAtWall: number;
}

export type PeerLineError = 'line_too_long' | 'bad_json' | 'bad_field' | 'bad_name' | 'bad_ip' | 'bad_expiry';

/** `entry: null`: nothing to keep (an expired entry, or the snapshot's end when `synced`). */
export type PeerLine =
  | { ok: true; entry: PeerEntry | null; synced: boolean }
  | { ok: false; reason: PeerLineError };

/** Sent after the snapshot: from here on, lines are live additions. */
export const SYNCED_LINE = '{"synced":true}\n';

export function encodePeerLine(e: PeerEntry): string {
  return `${JSON.stringify({ s: e.source, n: e.name, i: e.ip, e: Math.round(e.expiresAtWall) })}\n`;
}

/**
 * Parse one line (without its newline). An entry that has already expired is valid and dropped
 * (`entry: null`, the feed goes on); any other problem is a reason code and the feed closes.
 */
export function parsePeerLine(line: string, wallNow: number, maxLifetimeMs: number): PeerLine {
  if (Buffer.byteLength(line) > MAX_PEER_LINE_BYTES) return { ok: false, reason: 'line_too_long' };
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return { ok: false, reason: 'bad_json' };
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return { ok: false, reason: 'bad_json' };
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  if (keys.length === 1 && o['synced'] === true) return { ok: true, entry: null, synced: true };
  if (keys.length !== 4) return { ok: false, reason: 'bad_field' };
  const { s, n, i, e } = o;
  if (typeof s !== 'string' || typeof n !== 'string' || typeof i !== 'string' || typeof e !== 'number')
    return { ok: false, reason: 'bad_field' };
  if (isIP(s) === 0 || isIP(i) === 0) return { ok: false, reason: 'bad_ip' };
  if (tryWireName(n) !== n) return { ok: false, reason: 'bad_name' };
  if (!Number.isSafeInteger(e) || e > wallNow + maxLifetimeMs) return { ok: false, reason: 'bad_expiry' };
  if (e <= wallNow) return { ok: true, entry: null, synced: false };
  return { ok: true, entry: { source: s, name: n, ip: i, expiresAtWall: e }, synced: false };
}
