/**
 * The loop of a host process the tests drive from another namespace (driver-host.ts,
 * enforce-host.ts): JSON lines on stdin, {"id", "method", "args"}, each answered on stdout with
 * {"id", "ok", "value" | "error": {code, message}}; `onClose` runs when stdin ends.
 */
import readline from 'node:readline';
import { isNamegateError } from '../../../src/core/errors.ts';

export type Methods = Record<string, (...args: never[]) => Promise<unknown>>;

export function serveJsonLines(methods: Methods, onClose: () => Promise<void>): void {
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
    void onClose().finally(() => process.exit(0));
  });
}
