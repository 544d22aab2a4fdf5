/**
 * How a batch of nft commands reaches the kernel. Two implementations:
 * - addon (nft-executor-addon.ts): libnftables in-process through a small Node-API addon, no
 *   process per batch; listings run on the libuv pool, write transactions on the event-loop
 *   thread when the addon build has `runSync` (see docs/datapath.md), else on the pool too.
 * - spawn (nft-executor-spawn.ts): `nft -f FILE` per batch; the fallback when the addon is missing
 *   or fails to load (logged once as a warning). Still batched: one process per transaction.
 * Either way, a buffer of several commands is ONE kernel transaction: all or nothing.
 */
import type { Logger } from '../observe/log.ts';

export interface NftOutputOptions {
  /** JSON output (`nft -j`). */
  readonly json?: boolean;
  /** Omit set elements (`nft -t`). */
  readonly terse?: boolean;
}

export interface NftResult {
  readonly ok: boolean;
  /** Standard output (listings). */
  readonly out: string;
  /** nft's error text when !ok. */
  readonly err: string;
}

export interface NftExecutor {
  readonly kind: 'addon' | 'spawn';
  run(commands: string, options?: NftOutputOptions): Promise<NftResult>;
  close(): Promise<void>;
}

export type ExecutorChoice = 'auto' | 'addon' | 'spawn';

let warned = false;

/**
 * The addon when it loads, else the spawn fallback (warned once per process). `addon` makes a
 * missing addon an error instead; `spawn` skips the addon.
 */
export async function openExecutor(
  choice: ExecutorChoice = 'auto',
  logger?: Logger,
  options: { readonly syncWrites?: boolean } = {},
): Promise<NftExecutor> {
  const { SpawnExecutor } = await import('./nft-executor-spawn.ts');
  if (choice === 'spawn') return new SpawnExecutor();
  const { AddonExecutor, loadAddon } = await import('./nft-executor-addon.ts');
  const loaded = loadAddon();
  if (typeof loaded !== 'string')
    return new AddonExecutor(loaded, { syncWrites: options.syncWrites ?? true });
  if (choice === 'addon') throw new Error(`nft addon: ${loaded}`);
  if (!warned) {
    warned = true;
    logger?.warn(
      { event: 'datapath', reason: 'addon-unavailable', err: loaded },
      'libnftables addon not loaded; spawning `nft -f -` per batch (run scripts/build-addon.sh)',
    );
  }
  return new SpawnExecutor();
}
