/**
 * The libnftables executor: build/nft.node (native/nft/nft.cc), loaded with createRequire.
 * One libnftables context per executor; runs are serialized here so a pool thread never waits
 * on the addon's lock.
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

export class AddonExecutor implements NftExecutor {
  readonly kind = 'addon' as const;
  readonly #addon: NftAddon;
  readonly #handle: AddonHandle;
  #tail: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(addon: NftAddon) {
    this.#addon = addon;
    this.#handle = addon.open();
  }

  run(commands: string, options: NftOutputOptions = {}): Promise<NftResult> {
    if (this.#closed) return Promise.resolve({ ok: false, out: '', err: 'nft executor is closed' });
    const flags = (options.json ? 1 : 0) | (options.terse ? 2 : 0);
    const next = this.#tail.then(() => this.#addon.run(this.#handle, commands, flags));
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
