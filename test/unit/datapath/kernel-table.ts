/**
 * Test helper: the table as the kernel lists it (terse, no elements) right after a reconcile
 * with config `c`, for planReconcile tests that start from an installed table.
 */
import type { NftConfig } from '../../../src/datapath/nft-config.ts';
import type { KernelChain, KernelSet, KernelTable } from '../../../src/datapath/nft-json.ts';
import { chainDefs, setDefs } from '../../../src/datapath/nft-ruleset.ts';

export function kernelOf(c: NftConfig): KernelTable {
  const sets = new Map<string, KernelSet>(
    setDefs(c).map((s) => [
      s.name,
      { name: s.name, type: s.type, flags: s.flags, size: s.size, counter: s.counter, elements: [] },
    ]),
  );
  const chains = new Map<string, KernelChain>(
    chainDefs(c).map((ch) => [ch.name, { name: ch.name, base: ch.base ? { ...ch.base } : null }]),
  );
  return { sets, chains };
}
