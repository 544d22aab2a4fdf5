/**
 * The runtime settings of `namegate sync` and its targets. src/config/sync.ts builds them from
 * the `sync` section (and `ttl`); nothing here reads YAML.
 */
import type { LabelSelector } from '../policy/selector.ts';
import type { TtlPolicy } from '../store/ttl.ts';

/** What the resolver loop and the union window run on (loop.ts, window.ts, schedule.ts). */
export interface SyncSettings {
  readonly windowMs: number;
  readonly maxAddressesPerName: number;
  readonly concurrency: number;
  readonly minRefreshMs: number;
  readonly maxRefreshMs: number;
  readonly jitter: number;
  readonly failureRetryMs: number;
  readonly writeDelayMs: number;
  /** The store's clamps: how long an answer is good for. */
  readonly ttl: TtlPolicy;
  readonly statusFile: string | null;
}

export interface NetworkPolicySettings {
  readonly namePrefix: string;
  readonly maxIpBlocksPerObject: number;
  readonly dnsPeers: ReadonlyArray<{
    readonly namespaceSelector?: LabelSelector | undefined;
    readonly podSelector?: LabelSelector | undefined;
  }>;
  readonly fieldManager: string;
}

export interface AwsSettings {
  readonly directory: string;
  readonly securityGroups: ReadonlyArray<{ readonly groupId: string; readonly source: string }>;
  readonly maxRulesPerSecurityGroup: number;
  readonly networkFirewall?:
    | {
        readonly ruleGroupName: string;
        readonly capacity: number;
        readonly sources: readonly string[];
      }
    | undefined;
}

export interface GcpSettings {
  readonly directory: string;
  readonly project: string;
  readonly firewallPolicy: string;
  readonly priorityStart: number;
  readonly priorityBlock: number;
  readonly sources: readonly string[];
}
