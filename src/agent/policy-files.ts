/**
 * Policies from files and folders, hot-reloaded. A change is read, validated and compiled as a
 * whole; if anything is invalid the last good set stays in force and the problems are logged
 * (REL-06: a bad reload never opens anything and never drops enforcement). The first load has
 * no last good set, so it must succeed or the agent does not start.
 */
import { type FSWatcher, watch } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { ImportContext } from '../formats/importer.ts';
import { type FileProblem, formatProblem, type LoadReport, loadPolicies } from '../formats/load.ts';
import type { Logger } from '../observe/log.ts';
import { CompiledPolicies } from '../policy/compile.ts';

export interface PolicyFilesOptions {
  readonly paths: readonly string[];
  readonly logger: Logger;
  readonly context?: ImportContext;
  /** Wait this long after the last file event before reloading (editors write in bursts). */
  readonly debounceMs?: number;
  /** Called when a reload is rejected and the last good set stays in force (for a metric). */
  readonly onRejected?: (errors: readonly FileProblem[]) => void;
}

export type ReloadOutcome =
  | { readonly ok: true; readonly set: CompiledPolicies; readonly report: LoadReport }
  | { readonly ok: false; readonly errors: readonly FileProblem[] };

export class PolicyFiles {
  readonly #options: PolicyFilesOptions;
  #current: CompiledPolicies | null = null;
  #watchers: FSWatcher[] = [];
  #timer: NodeJS.Timeout | null = null;
  #listeners: Array<(set: CompiledPolicies) => void> = [];
  #reloading: Promise<ReloadOutcome> | null = null;
  #again = false;

  constructor(options: PolicyFilesOptions) {
    this.#options = options;
  }

  /** The set in force; throws before the first successful load. */
  current(): CompiledPolicies {
    if (!this.#current) throw new Error('policies are not loaded yet');
    return this.#current;
  }

  onChange(listener: (set: CompiledPolicies) => void): () => void {
    this.#listeners.push(listener);
    return () => {
      this.#listeners = this.#listeners.filter((l) => l !== listener);
    };
  }

  /** Read everything again; keep the last good set when the new one is invalid. */
  reload(): Promise<ReloadOutcome> {
    if (this.#reloading) {
      // A change during a reload must be read too: run once more when this one ends.
      this.#again = true;
      return this.#reloading;
    }
    this.#reloading = this.#load().finally(() => {
      this.#reloading = null;
      if (this.#again) {
        this.#again = false;
        void this.reload();
      }
    });
    return this.#reloading;
  }

  async #load(): Promise<ReloadOutcome> {
    const log = this.#options.logger;
    const report = await loadPolicies(
      this.#options.paths,
      this.#options.context ? { context: this.#options.context } : {},
    );
    for (const w of report.warnings)
      log.warn({ event: 'policy', reason: 'policy_warning' }, formatProblem(w));
    if (report.errors.length > 0) {
      for (const e of report.errors)
        log.error({ event: 'policy', reason: 'policy_invalid' }, formatProblem(e));
      log.error(
        { event: 'policy', reason: 'policy_reload_rejected', errors: report.errors.length },
        this.#current ? 'new policies are invalid; the last good set stays in force' : 'policies are invalid',
      );
      if (this.#current) this.#options.onRejected?.(report.errors);
      return { ok: false, errors: report.errors };
    }
    const set = new CompiledPolicies(report.policies.map((p) => p.policy));
    this.#current = set;
    log.info(
      { event: 'policy', reason: 'policy_loaded', policies: set.size, patterns: set.fqdns.size },
      'policies loaded',
    );
    for (const l of this.#listeners) l(set);
    return { ok: true, set, report };
  }

  /** Watch the paths (a file through its folder, so atomic renames are seen) and reload on change. */
  async watch(): Promise<void> {
    const debounce = this.#options.debounceMs ?? 200;
    for (const p of this.#options.paths) {
      const isDir = (await stat(p)).isDirectory();
      const dir = isDir ? p : path.dirname(p);
      const base = isDir ? null : path.basename(p);
      const watcher = watch(dir, { recursive: isDir, persistent: false }, (_event, file) => {
        // Kubernetes ConfigMap volumes swap a ..data symlink; any name may change then.
        if (base !== null && file !== null && file !== base && !String(file).startsWith('..')) return;
        if (this.#timer) clearTimeout(this.#timer);
        this.#timer = setTimeout(() => void this.reload(), debounce);
      });
      watcher.on('error', (err) =>
        this.#options.logger.error(
          { event: 'policy', reason: 'policy_watch_failed', err: err.message },
          'watching policy files failed',
        ),
      );
      this.#watchers.push(watcher);
    }
  }

  close(): void {
    for (const w of this.#watchers) w.close();
    this.#watchers = [];
    if (this.#timer) clearTimeout(this.#timer);
  }
}
