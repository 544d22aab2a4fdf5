/**
 * Reads the packets that nft `log group N` rules copy to user space: the kernel's drops of
 * governed traffic (and Audit would-be drops), already rate limited per source by the rules.
 *
 * Two ways in, one result (NflogPacket, parsed by nflog-wire.ts):
 *   addon    build/nflog.node (native/nflog): a netlink socket read on a thread of its own
 *   tcpdump  `tcpdump -i nflog:N -w -`: libpcap binds the group; its pcap records carry the same
 *            attributes. Used when the addon is missing or fails to load.
 * `auto` tries the addon, then tcpdump. A group can be bound by one reader per network
 * namespace at a time: a second one fails (the kernel says EPERM; reported, never silently empty).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { ErrorCode, NamegateError } from '../core/errors.ts';
import { findTool } from '../core/run.ts';
import { DLT_NFLOG, type NflogPacket, PcapReader, parseNetlink, parseNflogRecord } from './nflog-wire.ts';

export type NflogMethod = 'auto' | 'addon' | 'tcpdump';

export interface NflogReaderOptions {
  readonly group: number;
  /** Bytes of each packet copied (network and transport headers are enough). */
  readonly copyRange?: number;
  /** Read in this network namespace: a name under /run/netns or a path. Default: our own. */
  readonly netns?: string;
  readonly method?: NflogMethod;
  /** Longest time the kernel holds messages before sending a batch. */
  readonly flushMs?: number;
  readonly onPackets: (packets: NflogPacket[]) => void;
}

export interface NflogStats {
  packets: number;
  malformed: number;
  /** Messages the kernel could not deliver (our receive buffer was full). */
  lost: number;
}

export interface NflogReader {
  readonly method: 'addon' | 'tcpdump';
  readonly stats: NflogStats;
  close(): Promise<void>;
}

interface AddonHandle {
  readonly __brand: 'nflog-handle';
}

interface NflogAddon {
  open(
    options: { group: number; copyRange: number; netns?: string; flushMs: number },
    onBatch: (datagrams: Buffer[], lost: number) => void,
  ): AddonHandle;
  close(handle: AddonHandle): void;
}

export const DEFAULT_COPY_RANGE = 128;

export function nflogAddonPath(): string {
  return (
    process.env['NAMEGATE_NFLOG_ADDON'] ?? fileURLToPath(new URL('../../build/nflog.node', import.meta.url))
  );
}

function loadAddon(path = nflogAddonPath()): NflogAddon | string {
  if (!existsSync(path)) return `${path} does not exist`;
  try {
    const mod = createRequire(import.meta.url)(path) as Partial<NflogAddon>;
    if (typeof mod.open !== 'function' || typeof mod.close !== 'function')
      return `${path} does not export open/close`;
    return mod as NflogAddon;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

function netnsPath(netns: string | undefined): string | undefined {
  if (netns === undefined) return undefined;
  return netns.includes('/') ? netns : `/run/netns/${netns}`;
}

function openAddon(addon: NflogAddon, o: NflogReaderOptions): NflogReader {
  const stats: NflogStats = { packets: 0, malformed: 0, lost: 0 };
  const ns = netnsPath(o.netns);
  const handle = addon.open(
    {
      group: o.group,
      copyRange: o.copyRange ?? DEFAULT_COPY_RANGE,
      flushMs: o.flushMs ?? 100,
      ...(ns !== undefined ? { netns: ns } : {}),
    },
    (datagrams, lost) => {
      stats.lost += lost;
      const packets: NflogPacket[] = [];
      for (const d of datagrams) {
        const r = parseNetlink(d);
        stats.malformed += r.malformed;
        for (const p of r.packets) packets.push(p);
      }
      stats.packets += packets.length;
      if (packets.length > 0) o.onPackets(packets);
    },
  );
  let closed = false;
  return {
    method: 'addon',
    stats,
    close: async () => {
      if (closed) return;
      closed = true;
      addon.close(handle);
    },
  };
}

/** How long tcpdump may take to say it is listening. */
const TCPDUMP_START_MS = 10_000;

async function openTcpdump(o: NflogReaderOptions): Promise<NflogReader> {
  const tcpdump = findTool('tcpdump');
  if (!tcpdump) throw new NamegateError(ErrorCode.FlowEventsUnavailable, 'tcpdump is not installed');
  const ns = netnsPath(o.netns);
  // tcpdump's snapshot length cuts the whole NFLOG record (attributes and packet), not the
  // packet alone: leave room for the attributes in front of the payload.
  const snap = String((o.copyRange ?? DEFAULT_COPY_RANGE) + 512);
  const args = ['-i', `nflog:${o.group}`, '-U', '-n', '-s', snap, '-w', '-'];
  const argv = ns ? [findTool('nsenter') ?? 'nsenter', `--net=${ns}`, tcpdump, ...args] : [tcpdump, ...args];
  const child: ChildProcess = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  const stats: NflogStats = { packets: 0, malformed: 0, lost: 0 };
  const pcap = new PcapReader();
  let failure: Error | null = null;
  child.stdout?.on('data', (chunk: Buffer) => {
    if (failure) return;
    try {
      const packets: NflogPacket[] = [];
      for (const rec of pcap.push(chunk)) {
        if (pcap.linkType !== DLT_NFLOG) throw new Error(`pcap link type ${pcap.linkType}, not NFLOG`);
        const p = parseNflogRecord(rec);
        if (p) packets.push(p);
        else stats.malformed++;
      }
      stats.packets += packets.length;
      if (packets.length > 0) o.onPackets(packets);
    } catch (err) {
      failure = err instanceof Error ? err : new Error(String(err));
      child.kill('SIGTERM');
    }
  });
  // tcpdump says "listening on nflog:N" on stderr once the group is bound.
  await new Promise<void>((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new NamegateError(ErrorCode.FlowEventsUnavailable, `tcpdump did not start: ${err.trim()}`));
    }, TCPDUMP_START_MS);
    const onData = (chunk: Buffer) => {
      err = (err + chunk.toString('utf8')).slice(-4096);
      if (/listening on/.test(err)) {
        clearTimeout(timer);
        child.stderr?.off('data', onData);
        child.stderr?.resume();
        resolve();
      }
    };
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new NamegateError(ErrorCode.FlowEventsUnavailable, `tcpdump exited (${code}): ${err.trim()}`));
    });
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
  return {
    method: 'tcpdump',
    stats,
    close: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const kill = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(kill);
    },
  };
}

/** Open a reader; `auto` falls back from the addon to tcpdump and says why in `fallbackReason`. */
export async function openNflog(
  options: NflogReaderOptions,
): Promise<NflogReader & { readonly fallbackReason: string | null }> {
  const method = options.method ?? 'auto';
  if (!Number.isInteger(options.group) || options.group < 0 || options.group > 65535)
    throw new NamegateError(ErrorCode.ConfigInvalid, `NFLOG group ${options.group} is not in 0..65535`);
  if (method !== 'tcpdump') {
    const addon = loadAddon();
    if (typeof addon !== 'string') {
      // A failure to bind (EPERM: the group is taken, or not root) is the kernel's answer: tcpdump would get the same.
      return { ...openAddon(addon, options), fallbackReason: null };
    }
    if (method === 'addon') throw new NamegateError(ErrorCode.FlowEventsUnavailable, `NFLOG addon: ${addon}`);
    const reader = await openTcpdump(options);
    return Object.assign(reader, { fallbackReason: `NFLOG addon unavailable (${addon})` });
  }
  return Object.assign(await openTcpdump(options), { fallbackReason: null });
}
