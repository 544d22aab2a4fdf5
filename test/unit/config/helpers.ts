/** What the config tests share. */
import { ConfigError, validateConfig } from '../../../src/config/load.ts';

/** The problems validateConfig reports for a document, as "path: message" lines (none: []). */
export function problems(doc: unknown): string[] {
  try {
    validateConfig(doc, '/etc/namegate');
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => `${p.path}: ${p.message}`);
    throw err;
  }
  return [];
}
