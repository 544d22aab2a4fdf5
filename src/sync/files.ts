/**
 * Files the cloud targets write: JSON, written only when the content changed, atomically (a
 * temporary file renamed over the old one, so a reader never sees half a file), and files of an
 * earlier pass that are no longer wanted are removed (only those listed in the folder's
 * manifest, which namegate writes: nothing else in the folder is touched).
 */
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';

const MANIFEST = '.namegate-files.json';
const MAX_READ_BYTES = 64 * 1024 * 1024;

export function jsonText(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** Parse a JSON file namegate wrote earlier; null when it is missing or unreadable. */
export async function readJson<T>(file: string): Promise<T | null> {
  try {
    if ((await stat(file)).size > MAX_READ_BYTES) return null;
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch {
    return null;
  }
}

/** Write `text` to `file` unless it already holds exactly that; true when written. */
export async function writeIfChanged(file: string, text: string): Promise<boolean> {
  let old: string | null = null;
  try {
    old = await readFile(file, 'utf8');
  } catch {
    old = null;
  }
  if (old === text) return false;
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, text, { mode: 0o644 });
  await rename(tmp, file);
  return true;
}

/**
 * Make the folder hold exactly `files` (relative path -> text) among the files namegate wrote
 * there; returns how many were written or removed.
 */
export async function syncFolder(dir: string, files: ReadonlyMap<string, string>): Promise<number> {
  await mkdir(dir, { recursive: true });
  const manifestPath = path.join(dir, MANIFEST);
  const before = (await readJson<string[]>(manifestPath)) ?? [];
  let changed = 0;
  for (const [rel, text] of files) if (await writeIfChanged(path.join(dir, rel), text)) changed++;
  for (const rel of before) {
    if (files.has(rel) || rel.includes('..') || path.isAbsolute(rel)) continue;
    await rm(path.join(dir, rel), { force: true });
    changed++;
  }
  await writeIfChanged(manifestPath, jsonText([...files.keys()].sort()));
  return changed;
}
