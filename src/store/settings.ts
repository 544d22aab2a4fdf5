/**
 * What the store is built with, as the DNS proxy receives it: TTL policy, caps, how often
 * expired entries are collected, and the checkpoint (if any). src/config/store.ts builds it from
 * the `ttl` and `store` sections of the config file.
 */
import type { CheckpointLimits } from './checkpoint.ts';
import type { StoreLimits } from './learned-store.ts';
import type { TtlPolicy } from './ttl.ts';

export interface CheckpointSettings {
  /** Absolute path of the checkpoint file. */
  readonly path: string;
  readonly intervalMs: number;
  readonly limits: CheckpointLimits;
}

export interface StoreSettings {
  readonly ttl: TtlPolicy;
  readonly limits: StoreLimits;
  /** A pass over the store's expired entries starts this often (it runs in slices). */
  readonly gcIntervalMs: number;
  /** null: nothing survives a restart. */
  readonly checkpoint: CheckpointSettings | null;
}
