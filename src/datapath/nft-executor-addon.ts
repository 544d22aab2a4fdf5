/**
 * The libnftables executor: build/nft.node (native/nft/nft.cc), loaded with createRequire.
 * One libnftables context per executor; runs are serialized here so a pool thread never waits
 * on the addon's lock.
 *
 * Write transactions (learn/forget batches, reconcile) run on the calling thread when the
 * addon exports `runSync` and nothing is queued on the pool: measured in bench/datapath, the
 * hand-off to a pool thread and back was most of a learn call's tail (transaction p99 about
 * 2 ms through the pool, 0.7 ms in place) while the transaction itself takes 0.1-0.3 ms of the
 * loop. Listings (large, rare) stay on the pool.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { NftExecutor, NftOutputOptions, NftResult } from './nft-executor.ts';

interface AddonHandle {
  readonly __brand: 'nft-handle';
}

export interface NftAddon {
  open(): AddonHandle;
  run(
    handle: AddonHandle,
    commands: string,
    flags: number,
  ): Promise<{ rc: number; out: string; err: string }>;
  close(handle: AddonHandle): void;
  /** Newer builds: the same as run, on the calling thread. */
  runSync?(handle: AddonHandle, commands: string, flags: number): { rc: number; out: string; err: string };
}

/** Where the addon is: $NAMEGATE_NFT_ADDON, else build/nft.node at the repository root. */
export function addonPath(): string {
  return process.env['NAMEGATE_NFT_ADDON'] ?? fileURLToPath(new URL('../../build/nft.node', import.meta.url));
}

/** The loaded addon, or why it could not be loaded. */
export function loadAddon(path = addonPath()): NftAddon | string {
  if (!existsSync(path)) return `${path} does not exist`;
  try {
    const mod = createRequire(import.meta.url)(path) as Partial<NftAddon>;
    if (typeof mod.open !== 'function' || typeof mod.run !== 'function' || typeof mod.close !== 'function')
      return `${path} does not export open/run/close`;
    return mod as NftAddon;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

/**
 * Larger transactions (a reconcile, a batch of some hundred elements) go to the pool even with
 * syncWrites: they are throughput, not latency, and would hold the loop for milliseconds.
 */
const SYNC_MAX_BYTES = 16 * 1024;

export interface AddonExecutorOptions {
  /**
   * Run write transactions on the calling (event-loop) thread when the addon can (default
   * false here; the driver turns it on): no hand-off to the libuv pool and back, at the price of
   * blocking the loop for the transaction itself (0.1-0.3 ms for a learn batch).
   */
  readonly syncWrites?: boolean;
}

export class AddonExecutor implements NftExecutor {
  readonly kind = 'addon' as const;
  readonly #addon: NftAddon;
  readonly #handle: AddonHandle;
  readonly #syncWrites: boolean;
  #tail: Promise<unknown> = Promise.resolve();
  #pending = 0;
  #closed = false;

  constructor(addon: NftAddon, options: AddonExecutorOptions = {}) {
    this.#addon = addon;
    this.#handle = addon.open();
    this.#syncWrites = (options.syncWrites ?? false) && typeof addon.runSync === 'function';
  }

  run(commands: string, options: NftOutputOptions = {}): Promise<NftResult> {
    if (this.#closed) return Promise.resolve({ ok: false, out: '', err: 'nft executor is closed' });
    const flags = (options.json ? 1 : 0) | (options.terse ? 2 : 0);
    if (
      this.#syncWrites &&
      this.#pending === 0 &&
      commands.length <= SYNC_MAX_BYTES &&
      !commands.startsWith('list ') &&
      this.#addon.runSync
    ) {
      try {
        const r = this.#addon.runSync(this.#handle, commands, flags);
        return Promise.resolve({ ok: r.rc === 0, out: r.out, err: r.err.trim() });
      } catch (err) {
        return Promise.resolve({ ok: false, out: '', err: err instanceof Error ? err.message : String(err) });
      }
    }
    this.#pending++;
    const next = this.#tail
      .then(() => this.#addon.run(this.#handle, commands, flags))
      .finally(() => {
        this.#pending--;
      });
    this.#tail = next.catch(() => undefined);
    return next.then(
      (r) => ({ ok: r.rc === 0, out: r.out, err: r.err.trim() }),
      (err: unknown) => ({ ok: false, out: '', err: err instanceof Error ? err.message : String(err) }),
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#tail;
    this.#addon.close(this.#handle);
  }
}
