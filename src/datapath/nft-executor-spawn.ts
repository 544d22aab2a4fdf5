/**
 * The fallback executor: `nft [-j] [-t] -f FILE` per batch. The commands go through a private
 * temporary file rather than stdin: nft reads `-f -` by opening /dev/stdin, which fails on the
 * socket pair Node uses for a child's stdin. Bounded in time (killed after timeoutMs) and in
 * output size.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
    return new Promise((resolve) => {
      const child = spawn(this.#binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let size = 0;
      let failure: string | null = null;
      const timer = setTimeout(() => {
        failure = `nft did not finish within ${this.#timeoutMs} ms`;
        child.kill('SIGKILL');
      }, this.#timeoutMs);
      const collect = (into: Buffer[]) => (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_OUTPUT) {
          failure = `nft output exceeded ${MAX_OUTPUT} bytes`;
          child.kill('SIGKILL');
          return;
        }
        into.push(chunk);
      };
      child.stdout.on('data', collect(out));
      child.stderr.on('data', collect(err));
      child.on('error', (e) => {
        failure = `cannot run ${this.#binary}: ${e.message}`;
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        rmSync(file, { force: true });
        const errText = Buffer.concat(err).toString('utf8').trim();
        resolve({
          ok: failure === null && code === 0,
          out: Buffer.concat(out).toString('utf8'),
          err: failure ?? (errText || (code === 0 ? '' : `nft exited with ${code}`)),
        });
      });
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#dir) rmSync(this.#dir, { recursive: true, force: true });
  }
}
