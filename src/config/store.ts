/**
 * The `store` section: caps on what sources learn, how often expired entries are collected,
 * and the checkpoint that carries the store across restarts. storeSettingsFrom() builds the
 * store's StoreSettings (with the `ttl` section).
 */
import path from 'node:path';
import { z } from 'zod';
import type { StoreSettings } from '../store/settings.ts';
import type { ConfigProblem } from './problem.ts';
import { type TtlSection, ttlPolicyFrom } from './ttl.ts';
import { count, seconds } from './units.ts';

export const CheckpointSchema = z.strictObject({
  path: z.string().describe('Checkpoint file; relative paths are from the config file.'),
  intervalSeconds: seconds(1, 86_400, 30),
  maxBytes: count(1024, 1024 * 1024 * 1024, 64 * 1024 * 1024),
});

export const StoreSectionSchema = z.strictObject({
  maxIpsPerName: count(1, 100_000, 64),
  maxIpsPerSource: count(1, 10_000_000, 4096),
  maxEntries: count(1, 100_000_000, 500_000),
  gcIntervalSeconds: seconds(1, 3600, 10),
  checkpoint: CheckpointSchema.optional(),
});

export type StoreSection = z.output<typeof StoreSectionSchema>;

export function storeSectionProblems(store: StoreSection): ConfigProblem[] {
  if (store.maxIpsPerName > store.maxIpsPerSource)
    return [{ path: 'store.maxIpsPerName', message: 'must not be larger than store.maxIpsPerSource' }];
  return [];
}

/** The section with the checkpoint path made absolute. */
export function resolveStoreSection(store: StoreSection, baseDir: string): StoreSection {
  if (!store.checkpoint) return store;
  return {
    ...store,
    checkpoint: { ...store.checkpoint, path: path.resolve(baseDir, store.checkpoint.path) },
  };
}

export function storeSettingsFrom(store: StoreSection, ttl: TtlSection): StoreSettings {
  const c = store.checkpoint;
  return {
    ttl: ttlPolicyFrom(ttl),
    limits: {
      maxIpsPerName: store.maxIpsPerName,
      maxIpsPerSource: store.maxIpsPerSource,
      maxEntries: store.maxEntries,
    },
    gcIntervalMs: store.gcIntervalSeconds * 1000,
    checkpoint: c
      ? {
          path: c.path,
          intervalMs: c.intervalSeconds * 1000,
          limits: { maxBytes: c.maxBytes, maxEntries: store.maxEntries },
        }
      : null,
  };
}
