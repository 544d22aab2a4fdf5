/**
 * The fallback executor: `nft [-j] [-t] -f FILE` per batch. The commands go through a private
 * temporary file rather than stdin: nft reads `-f -` by opening /dev/stdin, which fails on the
 * socket pair Node uses for a child's stdin. Bounded in time (killed after timeoutMs) and in
 * output size.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../core/run.ts';
import type { NftExecutor, NftOutputOptions, NftResult } from './nft-executor.ts';

const MAX_OUTPUT = 512 * 1024 * 1024;

export class SpawnExecutor implements NftExecutor {
  readonly kind = 'spawn' as const;
  readonly #binary: string;
  readonly #timeoutMs: number;
  #closed = false;
  #dir: string | null = null;
  #seq = 0;

  constructor(options: { binary?: string; timeoutMs?: number } = {}) {
    this.#binary = options.binary ?? 'nft';
    this.#timeoutMs = options.timeoutMs ?? 30_000;
  }

  run(commands: string, options: NftOutputOptions = {}): Promise<NftResult> {
    if (this.#closed) return Promise.resolve({ ok: false, out: '', err: 'nft executor is closed' });
    this.#dir ??= mkdtempSync(join(tmpdir(), 'namegate-nft-'));
    const file = join(this.#dir, `batch-${++this.#seq}.nft`);
    writeFileSync(file, commands, { mode: 0o600 });
    const args = [...(options.json ? ['-j'] : []), ...(options.terse ? ['-t'] : []), '-f', file];
    return run([this.#binary, ...args], { timeoutMs: this.#timeoutMs, maxBytes: MAX_OUTPUT }).then((r) => {
      rmSync(file, { force: true });
      const failure = r.timedOut
        ? `nft did not finish within ${this.#timeoutMs} ms`
        : r.truncated
          ? `nft output exceeded ${MAX_OUTPUT} bytes`
          : r.startError !== null
            ? `cannot run ${this.#binary}: ${r.startError}`
            : null;
      const errText = r.stderr.trim();
      return {
        ok: failure === null && r.code === 0,
        out: r.stdout,
        err: failure ?? (errText || (r.code === 0 ? '' : `nft exited with ${r.code}`)),
      };
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#dir) rmSync(this.#dir, { recursive: true, force: true });
  }
}
