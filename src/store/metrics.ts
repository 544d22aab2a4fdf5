/**
 * Metrics of the learned store. Sizes are read from the store when scraped; evictions and
 * rejections are counted as they happen (the store reports them through StoreEvents).
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { StoreEvents } from './learned-store.ts';

export interface StoreMetrics {
  readonly events: StoreEvents;
  readonly checkpointWrites: Counter<'result'>;
  readonly restored: Gauge;
  /** Point the size gauges at a store (call once it exists). */
  watch(sizes: { readonly size: number; readonly sourceCount: number }): void;
}

export function createStoreMetrics(registry: Registry): StoreMetrics {
  let target: { readonly size: number; readonly sourceCount: number } | null = null;
  new Gauge({
    name: 'namegate_store_entries',
    help: 'Learned (source, name, IP) entries held, expired ones included until collected.',
    registers: [registry],
    collect() {
      this.set(target?.size ?? 0);
    },
  });
  new Gauge({
    name: 'namegate_store_sources',
    help: 'Sources with at least one learned entry.',
    registers: [registry],
    collect() {
      this.set(target?.sourceCount ?? 0);
    },
  });
  const evictions = new Counter({
    name: 'namegate_store_evictions_total',
    help: 'Entries evicted to make room, by the cap that was reached (name or source).',
    labelNames: ['scope'] as const,
    registers: [registry],
  });
  const rejections = new Counter({
    name: 'namegate_store_rejections_total',
    help: 'Addresses not learned because a cap was full of entries in use (or the store was full).',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const checkpointWrites = new Counter({
    name: 'namegate_store_checkpoint_writes_total',
    help: 'Checkpoint writes by result (ok, error).',
    labelNames: ['result'] as const,
    registers: [registry],
  });
  const restored = new Gauge({
    name: 'namegate_store_restored_entries',
    help: 'Entries restored from the checkpoint at startup.',
    registers: [registry],
  });
  return {
    events: {
      evicted: (scope) => evictions.inc({ scope }),
      rejected: (reason) => rejections.inc({ reason }),
    },
    checkpointWrites,
    restored,
    watch(sizes) {
      target = sizes;
    },
  };
}
