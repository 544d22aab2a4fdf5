/**
 * The learned store on disk, so a restarted agent knows what the kernel still allows.
 *
 * Format (version 1): one header line, then a JSON body.
 *   namegate-store 1 <sha256 of body, hex> <body length in bytes>\n
 *   {"written":<wall ms>,"entries":[[source,name,ip,expiresAtWall,lastSeenWall],...]}
 * Expiries are wall-clock times: the monotonic clock restarts with the process. On restore a
 * remaining lifetime is capped at the longest timeout any answer can give, so a wall clock
 * stepped backwards cannot make entries live forever.
 *
 * Writing is atomic (temporary file, fsync, rename, fsync of the folder) and bounded in bytes.
 * Reading is bounded in bytes and entries, and all-or-nothing: a checkpoint with a bad header,
 * checksum, JSON or any bad entry is reported and ignored (the agent starts empty: new names
 * need a new answer, which fails closed rather than open).
 */
import { createHash, randomBytes } from 'node:crypto';
import { open, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Clock } from '../core/clock.ts';
import { ErrorCode, NamegateError } from '../core/errors.ts';
import { canonicalIp } from '../core/ip.ts';
import { tryCanonicalName } from '../core/names.ts';
import type { LearnedStore, StoreEntry } from './learned-store.ts';
import { maxTimeoutMs } from './ttl.ts';

export const CHECKPOINT_VERSION = 1;
const MAGIC = 'namegate-store';
const HEADER = /^namegate-store ([0-9]+) ([0-9a-f]{64}) ([0-9]+)\n/;
const MAX_HEADER_BYTES = 128;

export interface CheckpointLimits {
  /** The largest checkpoint written or read. */
  readonly maxBytes: number;
  /** The most entries read back. */
  readonly maxEntries: number;
}

export const DEFAULT_CHECKPOINT_LIMITS: CheckpointLimits = {
  maxBytes: 64 * 1024 * 1024,
  maxEntries: 1_000_000,
};

type Row = [string, string, string, number, number];

/** Serialize the unexpired entries; throws NG_LIMIT_EXCEEDED when over maxBytes. */
export function encodeCheckpoint(
  store: LearnedStore,
  clock: Clock,
  limits: CheckpointLimits,
): { data: Buffer; entries: number } {
  const now = clock.now();
  const wall = clock.wallNow();
  const rows: Row[] = [];
  for (const e of store.entries()) {
    if (e.expiresAt <= now) continue;
    rows.push([
      e.source,
      e.name,
      e.ip,
      Math.round(wall + (e.expiresAt - now)),
      Math.round(wall + (e.lastSeen - now)),
    ]);
  }
  const body = Buffer.from(JSON.stringify({ written: wall, entries: rows }), 'utf8');
  const digest = createHash('sha256').update(body).digest('hex');
  const header = Buffer.from(`${MAGIC} ${CHECKPOINT_VERSION} ${digest} ${body.length}\n`, 'latin1');
  if (header.length + body.length > limits.maxBytes) {
    throw new NamegateError(
      ErrorCode.LimitExceeded,
      `checkpoint of ${header.length + body.length} bytes exceeds the limit of ${limits.maxBytes}`,
    );
  }
  return { data: Buffer.concat([header, body]), entries: rows.length };
}

/** Write atomically: a reader sees the old checkpoint or the new one, never a mix. */
export async function writeCheckpoint(
  file: string,
  store: LearnedStore,
  clock: Clock,
  limits: CheckpointLimits = DEFAULT_CHECKPOINT_LIMITS,
): Promise<{ entries: number; bytes: number }> {
  const { data, entries } = encodeCheckpoint(store, clock, limits);
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => {});
    await unlinkQuietly(tmp);
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, file);
  } catch (err) {
    await unlinkQuietly(tmp);
    throw err;
  }
  // The rename is durable only once the folder's entry is on disk.
  const dir = await open(path.dirname(file), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
  return { entries, bytes: data.length };
}

async function unlinkQuietly(file: string): Promise<void> {
  await unlink(file).catch(() => {});
}

export type CheckpointRead =
  | { readonly ok: true; readonly entries: StoreEntry[]; readonly written: number }
  | { readonly ok: false; readonly missing: boolean; readonly error: NamegateError };

function corrupt(detail: string): CheckpointRead {
  return {
    ok: false,
    missing: false,
    error: new NamegateError(ErrorCode.CheckpointInvalid, `checkpoint ignored: ${detail}`),
  };
}

/**
 * Decode a checkpoint into entries on this process's monotonic clock, dropping those already
 * expired. Never throws for bad content; returns the reason instead.
 */
export function decodeCheckpoint(
  data: Buffer,
  clock: Clock,
  maxLifetimeMs: number,
  limits: CheckpointLimits,
): CheckpointRead {
  if (data.length > limits.maxBytes) return corrupt(`${data.length} bytes exceeds ${limits.maxBytes}`);
  const head = data.subarray(0, Math.min(data.length, MAX_HEADER_BYTES)).toString('latin1');
  const m = HEADER.exec(head);
  if (!m) return corrupt('no valid header line');
  const version = Number(m[1]);
  if (version !== CHECKPOINT_VERSION) return corrupt(`version ${version} is not ${CHECKPOINT_VERSION}`);
  const headerLen = m[0].length;
  const declared = Number(m[3]);
  const body = data.subarray(headerLen);
  if (body.length !== declared) return corrupt(`body has ${body.length} bytes, header says ${declared}`);
  if (createHash('sha256').update(body).digest('hex') !== m[2]) return corrupt('checksum mismatch');
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return corrupt('body is not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null) return corrupt('body is not an object');
  const { written, entries } = parsed as { written?: unknown; entries?: unknown };
  if (typeof written !== 'number' || !Array.isArray(entries)) return corrupt('body lacks written/entries');
  if (entries.length > limits.maxEntries)
    return corrupt(`${entries.length} entries exceeds ${limits.maxEntries}`);
  const now = clock.now();
  const wall = clock.wallNow();
  const out: StoreEntry[] = [];
  for (let i = 0; i < entries.length; i++) {
    const row = entries[i] as unknown;
    const problem = rowProblem(row);
    if (problem) return corrupt(`entry ${i}: ${problem}`);
    const [source, name, ip, expiresWall, seenWall] = row as Row;
    const remaining = Math.min(expiresWall - wall, maxLifetimeMs);
    if (remaining <= 0) continue;
    out.push({ source, name, ip, expiresAt: now + remaining, lastSeen: now - Math.max(0, wall - seenWall) });
  }
  return { ok: true, entries: out, written };
}

function rowProblem(row: unknown): string | null {
  if (!Array.isArray(row) || row.length !== 5) return 'not a 5-element row';
  const [source, name, ip, expires, seen] = row as unknown[];
  if (typeof source !== 'string' || canonicalIp(source) !== source) return 'source is not a canonical IP';
  if (typeof name !== 'string' || tryCanonicalName(name) !== name) return 'name is not canonical';
  if (typeof ip !== 'string' || canonicalIp(ip) !== ip) return 'ip is not a canonical IP';
  if (typeof expires !== 'number' || !Number.isFinite(expires)) return 'expiry is not a number';
  if (typeof seen !== 'number' || !Number.isFinite(seen)) return 'last-seen is not a number';
  return null;
}

/** Read a checkpoint file (bounded); a missing file is reported as such, not as corrupt. */
export async function readCheckpoint(
  file: string,
  clock: Clock,
  store: LearnedStore,
  limits: CheckpointLimits = DEFAULT_CHECKPOINT_LIMITS,
): Promise<CheckpointRead> {
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    return {
      ok: false,
      missing,
      error: new NamegateError(ErrorCode.CheckpointInvalid, `checkpoint not read: ${(err as Error).message}`),
    };
  }
  if (size > limits.maxBytes) return corrupt(`${size} bytes exceeds ${limits.maxBytes}`);
  const fh = await open(file, 'r');
  let data: Buffer;
  try {
    // Read at most maxBytes + 1 even if the file grew since stat.
    const buf = Buffer.alloc(Math.min(size, limits.maxBytes) + 1);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    data = buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
  return decodeCheckpoint(data, clock, maxTimeoutMs(store.ttl), limits);
}

/** Put decoded entries into the store; returns how many it took (caps apply). */
export function restoreEntries(store: LearnedStore, entries: readonly StoreEntry[], now: number): number {
  let taken = 0;
  for (const e of entries) if (store.restore(e, now)) taken++;
  return taken;
}
