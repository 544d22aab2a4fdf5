/**
 * Runs an NftDatapath inside a network namespace (started with `ip netns exec NS node
 * driver-host.ts`), driven by JSON lines on stdin: {"id", "method", "args"} -> {"id", "ok",
 * "value" | "error": {code, message}}. The libnftables addon works in-process, so the process
 * itself must live in the router namespace; this is how tests get there.
 */
import { isNamegateError } from '../../../src/core/errors.ts';
import { NftDatapath, type NftDatapathOptions } from '../../../src/datapath/nft-driver.ts';
import { type Methods, serveJsonLines } from './json-lines-host.ts';

let dp: NftDatapath | null = null;

function need(): NftDatapath {
  if (!dp) throw new Error('open first');
  return dp;
}

const methods: Methods = {
  open: async (options: NftDatapathOptions & { executorKind?: 'addon' | 'spawn' }) => {
    dp = await NftDatapath.open({ ...options, executor: options.executorKind ?? 'addon' });
    return dp.executorKind;
  },
  /** Returns what the reconcile changed. */
  reconcile: async (state: Parameters<NftDatapath['reconcile']>[0]) => {
    await need().reconcile(state);
    return need().lastReconcile;
  },
  learn: (elements: Parameters<NftDatapath['learn']>[0]) => need().learn(elements),
  /** Several learn calls at once, to exercise coalescing; returns each call's outcome. */
  learnMany: async (calls: Parameters<NftDatapath['learn']>[0][]) =>
    Promise.all(
      calls.map((c) =>
        need()
          .learn(c)
          .then(
            () => ({ ok: true }),
            (e: unknown) => ({ ok: false, code: isNamegateError(e) ? e.code : 'ERR', message: String(e) }),
          ),
      ),
    ),
  forget: (keys: Parameters<NftDatapath['forget']>[0]) => need().forget(keys),
  listLearned: () => need().listLearned(),
  readDrops: () => need().readDropCounters(),
  sourceDrops: () => need().readSourceDrops(),
  status: () => need().status(),
  flushDns: (sources: string[]) => need().flushDnsConntrack(sources),
  close: async () => {
    await dp?.close();
    dp = null;
  },
};

serveJsonLines(methods, async () => {
  await dp?.close();
});
