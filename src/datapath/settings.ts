/**
 * What the agent builds its datapath from: which driver, how nftables transactions reach the
 * kernel, and the driver's config. src/config/datapath.ts builds it from the `datapath` section
 * (with the DNS and SNI proxies' ports the redirects point at).
 */
import type { NftConfigInput } from './nft-config.ts';
import type { ExecutorChoice } from './nft-executor.ts';

export interface DatapathSettings {
  /** nftables enforces in the kernel; recording only records (trials without root, `namegate dns`). */
  readonly driver: 'nftables' | 'recording';
  readonly executor: ExecutorChoice;
  readonly nft: NftConfigInput;
}
