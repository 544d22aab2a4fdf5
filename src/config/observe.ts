/**
 * The `observe` section: flow events for `namegate observe`, the dashboard and `namegate
 * recommend`: how much history the agent keeps in memory, how many names it remembers after
 * their TTL, and the kernel's drops as events (nft `log group` rules, rate limited per source
 * in the kernel, read over NFLOG). observeSettingsFrom() builds src/flows' FlowSettings.
 */
import { z } from 'zod';
import type { NftConfig } from '../datapath/nft-config.ts';
import type { FlowSettings } from '../flows/settings.ts';
import { count } from './units.ts';

export const KernelEventsSchema = z.strictObject({
  enabled: z.boolean().default(true).describe('Kernel drops (and Audit would-be drops) as flow events.'),
  group: count(1, 65_535, 100).describe('The NFLOG group; one reader per group per network namespace.'),
  ratePerSource: count(1, 10_000, 10).describe(
    'Events per second per source address, limited in the kernel.',
  ),
  burst: count(1, 100_000, 20),
  method: z
    .enum(['auto', 'addon', 'tcpdump'])
    .default('auto')
    .describe('How NFLOG is read: the netlink addon, tcpdump, or the addon when it loads.'),
});

export const ObserveSectionSchema = z.strictObject({
  historyBytes: count(0, 1024 * 1024 * 1024, 16 * 1024 * 1024).describe(
    'Bytes of flow log lines kept in memory for /flows and the dashboard.',
  ),
  nameMemory: count(1, 10_000_000, 200_000).describe(
    '(source, address) pairs whose name is remembered after the TTL (for kernel events).',
  ),
  maxFollowers: count(1, 1024, 32).describe('Clients following the flow API at once.'),
  kernelEvents: KernelEventsSchema.prefault({}),
});

export type ObserveSection = z.output<typeof ObserveSectionSchema>;

export function observeSettingsFrom(section: ObserveSection): FlowSettings {
  const k = section.kernelEvents;
  return {
    historyBytes: section.historyBytes,
    nameMemory: section.nameMemory,
    maxFollowers: section.maxFollowers,
    kernelEvents: k.enabled
      ? { group: k.group, ratePerSource: k.ratePerSource, burst: k.burst, method: k.method }
      : null,
  };
}

/** The datapath's `log group` rules for kernel events (src/datapath/nft-ruleset.ts), or null. */
export function flowEventsFrom(section: ObserveSection): NftConfig['flowEvents'] {
  const k = section.kernelEvents;
  return k.enabled ? { group: k.group, ratePerSource: k.ratePerSource, burst: k.burst } : null;
}
