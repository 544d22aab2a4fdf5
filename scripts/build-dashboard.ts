/**
 * Bundle the dashboard page (web/dashboard) into build/dashboard with esbuild: app.js (the page
 * and uPlot), app.css, index.html. Nothing is fetched at run time: the agent serves these files.
 * Idempotent: rebuilds only when a source is newer than the output.
 * Usage: node scripts/build-dashboard.ts [--force]
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';

const root = path.resolve(import.meta.dirname, '..');
const src = path.join(root, 'web/dashboard');
const out = path.join(root, 'build/dashboard');
const outputs = ['index.html', 'app.js', 'app.css'].map((f) => path.join(out, f));

function newest(dir: string): number {
  return Math.max(
    ...readdirSync(dir).map((f) => statSync(path.join(dir, f)).mtimeMs),
    statSync(import.meta.filename).mtimeMs,
  );
}

const stale =
  process.argv.includes('--force') ||
  outputs.some((f) => !existsSync(f) || statSync(f).mtimeMs < newest(src));
if (stale) {
  mkdirSync(out, { recursive: true });
  await build({
    entryPoints: [path.join(src, 'main.ts')],
    bundle: true,
    minify: true,
    format: 'iife',
    target: ['chrome110', 'firefox110', 'safari16'],
    outfile: path.join(out, 'app.js'),
    logLevel: 'warning',
    legalComments: 'eof',
  });
  copyFileSync(path.join(src, 'index.html'), path.join(out, 'index.html'));
  process.stderr.write(`build-dashboard: built ${path.relative(root, out)}\n`);
}
