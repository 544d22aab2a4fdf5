/**
 * What the agent's flow machinery is built with (src/config/observe.ts builds it from the
 * config file's `observe` section).
 */
import type { NflogMethod } from '../datapath/nflog-reader.ts';

export interface KernelEventSettings {
  /** The NFLOG group the datapath's `log group` rules send to. */
  readonly group: number;
  /** Events per second per source address, limited in the kernel (a meter per source). */
  readonly ratePerSource: number;
  readonly burst: number;
  readonly method: NflogMethod;
}

export interface FlowSettings {
  /** Bytes of flow log lines kept in memory for /flows and the dashboard. */
  readonly historyBytes: number;
  /** (source, address) pairs whose name is kept after the TTL. */
  readonly nameMemory: number;
  /** Followers of the flow API at once. */
  readonly maxFollowers: number;
  /** null: no kernel events (no `log group` rules, no NFLOG reader). */
  readonly kernelEvents: KernelEventSettings | null;
}

export const DEFAULT_FLOW_SETTINGS: FlowSettings = {
  historyBytes: 16 * 1024 * 1024,
  nameMemory: 200_000,
  maxFollowers: 32,
  kernelEvents: { group: 100, ratePerSource: 10, burst: 20, method: 'auto' },
};
