/**
 * `make image`: build the OCI image archives (see recipes.ts) without Docker and without a base
 * image, reproducibly, each with an SPDX SBOM beside it.
 *
 *   node scripts/image/build.ts [--out DIR] [--force] [--json] [namegate|pause|coredns|test-client]...
 *
 * Writes <out>/<key>.oci.tar, <out>/<key>.spdx.json and <out>/<key>.json (what was built: ref,
 * digest, sizes, the inputs' fingerprint). An image whose inputs did not change since the last
 * build is not built again (--force builds anyway). Progress goes to stderr, a summary to stdout.
 *
 * Reproducible: the same inputs (Debian packages, the Node.js binary, package-lock.json, src/,
 * the native addons, the builder itself, SOURCE_DATE_EPOCH) give byte-identical archives and so
 * the same digests; test/image/image.test.ts builds twice and compares.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { cachedDeb, type DebPackage, fetchDebs, pruneDocs, resolveDebs, unpackDeb } from './debs.ts';
import { writeLayer } from './layer.ts';
import { makeLayout, splitRef, writeImage } from './oci.ts';
import { defaultCacheDir, IMAGE_KEYS, type ImageKey, ROOT, recipe } from './recipes.ts';
import { type Component, spdxDocument } from './sbom.ts';

export const DEFAULT_OUT = path.join(ROOT, 'build/image');

export interface BuildOptions {
  readonly outDir?: string;
  readonly cacheDir?: string;
  readonly force?: boolean;
  /** Reuse compressed layers of earlier builds (default); off, every layer is compressed anew. */
  readonly layerCache?: boolean;
  readonly progress?: (message: string) => void;
}

export interface BuiltImage {
  readonly key: ImageKey;
  readonly ref: string;
  readonly digest: string;
  readonly archive: string;
  readonly sbom: string;
  readonly archiveSize: number;
  readonly uncompressedSize: number;
  readonly layers: number;
  readonly debs: number;
  readonly components: number;
  readonly buildSeconds: number;
  readonly fingerprint: string;
  /** True when the archive of an earlier build with the same inputs was kept. */
  readonly reused: boolean;
}

export function imagePaths(key: ImageKey, outDir = DEFAULT_OUT) {
  return {
    archive: path.join(outDir, `${key}.oci.tar`),
    sbom: path.join(outDir, `${key}.spdx.json`),
    record: path.join(outDir, `${key}.json`),
  };
}

function sourceDateEpoch(): number {
  const v = process.env['SOURCE_DATE_EPOCH'];
  if (v === undefined || v === '') return 0;
  if (!/^\d{1,12}$/.test(v)) throw new Error(`SOURCE_DATE_EPOCH=${v} is not a number of seconds`);
  return Number(v);
}

/** Hash of files and folders (names, modes' exec bit, contents), in a stable order. */
async function hashInputs(paths: readonly string[]): Promise<string> {
  const hash = createHash('sha256');
  const visit = async (p: string): Promise<void> => {
    const st = await lstat(p);
    hash.update(`${path.relative(ROOT, p)}\0${st.isDirectory() ? 'd' : st.mode & 0o111 ? 'x' : 'f'}\0`);
    if (st.isDirectory()) {
      for (const e of (await readdir(p)).sort()) await visit(path.join(p, e));
    } else if (st.isFile()) {
      for await (const chunk of createReadStream(p)) hash.update(chunk as Buffer);
    }
  };
  for (const p of paths) {
    if (!existsSync(p)) throw new Error(`image input ${p} is missing`);
    await visit(p);
  }
  return hash.digest('hex');
}

/** Group and other never write; /tmp is the exception every root has. */
async function normalizeModes(dir: string): Promise<void> {
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const full = path.join(d, e.name);
      if (e.isSymbolicLink()) continue;
      const st = await lstat(full);
      await chmod(full, st.mode & 0o7755);
      if (e.isDirectory()) await walk(full);
    }
  };
  await walk(dir);
  if (existsSync(path.join(dir, 'tmp'))) await chmod(path.join(dir, 'tmp'), 0o1777);
}

function debComponent(p: DebPackage, distro: string): Component {
  const supplier = p.maintainer.replace(/\s*<[^>]*>\s*/, '').trim();
  return {
    name: p.name,
    version: p.version,
    purl: `pkg:deb/debian/${p.name}@${encodeURIComponent(p.version)}?arch=${p.architecture}&distro=${distro}`,
    supplier,
    homepage: p.homepage,
    sha256: p.sha256,
    comment: `Debian package (source ${p.source})${p.requiredBy ? `, needed by ${p.requiredBy}` : ''}`,
  };
}

async function debianDistro(): Promise<string> {
  const text = await readFile('/etc/os-release', 'utf8').catch(() => '');
  const id = /^ID=(.*)$/m.exec(text)?.[1]?.replace(/"/g, '') ?? 'debian';
  const ver = /^VERSION_ID=(.*)$/m.exec(text)?.[1]?.replace(/"/g, '') ?? 'unknown';
  return `${id}-${ver}`;
}

export async function buildImage(key: ImageKey, options: BuildOptions = {}): Promise<BuiltImage> {
  const started = performance.now();
  const progress = options.progress ?? (() => {});
  const say = (m: string): void => progress(`${key}: ${m}`);
  const outDir = options.outDir ?? DEFAULT_OUT;
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const r = await recipe(key);
  const created = sourceDateEpoch();

  // Debian packages per layer; a package a lower layer has is not repeated.
  const layerDebs: DebPackage[][] = [];
  const seen = new Set<string>();
  for (const step of r.layers) {
    const all = step.debs ? await resolveDebs(step.debs, say) : [];
    const fresh = all.filter((p) => !seen.has(p.name));
    for (const p of fresh) seen.add(p.name);
    layerDebs.push(fresh);
  }
  const builder = await hashInputs(
    (await readdir(import.meta.dirname))
      .filter((f) => f.endsWith('.ts'))
      .map((f) => path.join(import.meta.dirname, f)),
  );
  const fingerprint = createHash('sha256')
    .update(
      JSON.stringify({
        key,
        ref: r.ref,
        created,
        builder,
        debs: layerDebs.map((l) => l.map((p) => p.sha256)),
      }),
    )
    .update(await hashInputs(r.inputs()))
    .digest('hex');

  const paths = imagePaths(key, outDir);
  if (!options.force && existsSync(paths.archive) && existsSync(paths.record)) {
    const prev = JSON.parse(await readFile(paths.record, 'utf8')) as BuiltImage;
    if (prev.fingerprint === fingerprint) {
      say(`unchanged since the last build (${prev.digest})`);
      return { ...prev, reused: true };
    }
  }

  const debCache = path.join(cacheDir, 'debs');
  await fetchDebs(layerDebs.flat(), debCache, say);
  const work = await mkdtemp(path.join(os.tmpdir(), `namegate-image-${key}-`));
  try {
    const layout = path.join(work, 'layout');
    await makeLayout(layout);
    const layers = [];
    const components: Component[] = [];
    const distro = await debianDistro();
    for (const [i, step] of r.layers.entries()) {
      const dir = path.join(work, `layer${i}`);
      await mkdir(dir, { recursive: true });
      for (const p of layerDebs[i]!) {
        await unpackDeb(cachedDeb(debCache, p), p, dir);
        components.push(debComponent(p, distro));
      }
      if (layerDebs[i]!.length > 0) await pruneDocs(dir);
      if (step.stage) components.push(...(await step.stage(dir, { progress: say, cacheDir })));
      await normalizeModes(dir);
      say(`packing layer ${i + 1}/${r.layers.length}: ${step.what}`);
      const layerCache = options.layerCache === false ? undefined : path.join(cacheDir, 'layers');
      layers.push(await writeLayer(dir, path.join(layout, 'blobs'), layerCache));
      await rm(dir, { recursive: true, force: true });
    }
    const { tag } = splitRef(r.ref);
    const labels = {
      'org.opencontainers.image.title': r.title,
      'org.opencontainers.image.version': tag,
      'org.opencontainers.image.licenses': 'Apache-2.0',
    };
    const written = await writeImage(
      layout,
      layers,
      {
        ref: r.ref,
        created,
        config: { ...r.config, Labels: labels },
        history: r.layers.map((l) => `namegate image builder: ${l.what}`),
        annotations: labels,
      },
      paths.archive,
    );
    await writeFile(paths.sbom, spdxDocument({ image: r.ref, digest: written.digest, created, components }));
    const built: BuiltImage = {
      key,
      ref: r.ref,
      digest: written.digest,
      archive: paths.archive,
      sbom: paths.sbom,
      archiveSize: written.archiveSize,
      uncompressedSize: layers.reduce((n, l) => n + l.uncompressedSize, 0),
      layers: layers.length,
      debs: layerDebs.flat().length,
      components: components.length,
      buildSeconds: Math.round((performance.now() - started) / 100) / 10,
      fingerprint,
      reused: false,
    };
    await writeFile(paths.record, `${JSON.stringify(built, null, 2)}\n`);
    say(
      `built ${r.ref} ${written.digest} (${(written.archiveSize / 1e6).toFixed(1)} MB) in ${built.buildSeconds} s`,
    );
    return built;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

function mb(n: number): string {
  return `${(n / 1e6).toFixed(1)} MB`;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      out: { type: 'string' },
      force: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(
      `usage: node scripts/image/build.ts [--out DIR] [--force] [--json] [${IMAGE_KEYS.join('|')}]...`,
    );
    return;
  }
  const bad = positionals.filter((p) => !IMAGE_KEYS.includes(p as ImageKey));
  if (bad.length > 0) throw new Error(`unknown image ${bad.join(', ')} (expected ${IMAGE_KEYS.join(', ')})`);
  const keys = positionals.length > 0 ? (positionals as ImageKey[]) : [...IMAGE_KEYS];
  const out = values.out ? path.resolve(values.out) : DEFAULT_OUT;
  await mkdir(out, { recursive: true });
  const built: BuiltImage[] = [];
  for (const key of keys) {
    built.push(
      await buildImage(key, {
        outDir: out,
        force: values.force,
        progress: (m) => process.stderr.write(`image: ${m}\n`),
      }),
    );
  }
  if (values.json) {
    console.log(JSON.stringify(built, null, 2));
    return;
  }
  for (const b of built) {
    console.log(
      `${b.ref.padEnd(44)} ${b.digest.slice(0, 19)}  ${mb(b.archiveSize).padStart(9)} archive, ${mb(b.uncompressedSize).padStart(9)} unpacked, ${String(b.components).padStart(3)} components  ${b.reused ? 'unchanged' : `built in ${b.buildSeconds} s`}`,
    );
    console.log(
      `  ${path.relative(process.cwd(), b.archive)}  (SBOM ${path.relative(process.cwd(), b.sbom)})`,
    );
  }
}

if (import.meta.main) {
  main().catch((err: unknown) => {
    process.stderr.write(`image: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
