/**
 * Read a growing log file line by line, like `tail -F`: what is there, then (with follow) every
 * line appended until the process is interrupted. A missing file is waited for when following.
 */
import { watch } from 'node:fs';
import { open, stat } from 'node:fs/promises';

const CHUNK = 64 * 1024;

export async function followLines(
  file: string,
  follow: boolean,
  onLine: (line: string) => void,
): Promise<void> {
  let offset = 0;
  let partial = '';
  const drain = async (): Promise<void> => {
    let size: number;
    try {
      size = (await stat(file)).size;
    } catch {
      return;
    }
    if (size < offset) offset = 0; // truncated or replaced: start over
    if (size === offset) return;
    const fh = await open(file, 'r');
    try {
      const buf = Buffer.alloc(CHUNK);
      while (offset < size) {
        const { bytesRead } = await fh.read(buf, 0, Math.min(CHUNK, size - offset), offset);
        if (bytesRead === 0) break;
        offset += bytesRead;
        const lines = (partial + buf.subarray(0, bytesRead).toString('utf8')).split('\n');
        partial = lines.pop() ?? '';
        for (const l of lines) if (l !== '') onLine(l);
      }
    } finally {
      await fh.close();
    }
  };
  await drain();
  if (!follow) return;
  await new Promise<void>((resolve) => {
    let busy = Promise.resolve();
    const kick = () => {
      busy = busy.then(drain, drain);
    };
    // Polling as well as watching: the file may not exist yet, and watchers miss renames.
    const timer = setInterval(kick, 500);
    let watcher: ReturnType<typeof watch> | null = null;
    try {
      watcher = watch(file, kick);
    } catch {
      watcher = null;
    }
    process.once('SIGINT', () => {
      clearInterval(timer);
      watcher?.close();
      resolve();
    });
  });
}
