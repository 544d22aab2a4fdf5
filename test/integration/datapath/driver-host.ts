/**
 * Runs an NftDatapath inside a network namespace (started with `ip netns exec NS node
 * driver-host.ts`), driven by JSON lines on stdin: {"id", "method", "args"} -> {"id", "ok",
 * "value" | "error": {code, message}}. The libnftables addon works in-process, so the process
 * itself must live in the router namespace; this is how tests get there.
 */
import readline from 'node:readline';
import { isNamegateError } from '../../../src/core/errors.ts';
import { NftDatapath, type NftDatapathOptions } from '../../../src/datapath/nft-driver.ts';

let dp: NftDatapath | null = null;

function need(): NftDatapath {
  if (!dp) throw new Error('open first');
  return dp;
}

const methods: Record<string, (...args: never[]) => Promise<unknown>> = {
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

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  let msg: { id: number; method: string; args: unknown[] };
  try {
    msg = JSON.parse(line);
  } catch {
    return;
  }
  const fn = methods[msg.method];
  const reply = (v: object) => process.stdout.write(`${JSON.stringify({ id: msg.id, ...v })}\n`);
  if (!fn) return reply({ ok: false, error: { code: 'ERR', message: `no method ${msg.method}` } });
  (fn as (...a: unknown[]) => Promise<unknown>)(...(msg.args ?? [])).then(
    (value) => reply({ ok: true, value: value ?? null }),
    (err: unknown) =>
      reply({
        ok: false,
        error: {
          code: isNamegateError(err) ? err.code : 'ERR',
          message: err instanceof Error ? err.message : String(err),
        },
      }),
  );
});
rl.on('close', () => {
  void dp?.close().finally(() => process.exit(0));
});
