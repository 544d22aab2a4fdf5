/**
 * Debian packages for an image, without a base image and without running any maintainer script:
 *
 * - `resolveDebs` takes the closure of Depends and Pre-Depends of the wanted packages at the
 *   versions apt would install (`apt-cache show`), choosing the first alternative of an `a | b`
 *   that exists. Packages that only serve maintainer scripts or a full system (SKIPPED) are left
 *   out: an image needs files, not a configured system.
 * - `fetchDebs` downloads each .deb once into a cache, named as in the archive, and checks it
 *   against the SHA256 the package lists give.
 * - `unpackDeb` unpacks one into a root file system with `dpkg-deb -x` and records it the way
 *   distroless images do (/var/lib/dpkg/status.d/<name> and its md5sums), so scanners see every
 *   Debian package inside.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

/** Never part of an image: needed only to configure a system, which images are not. */
export const SKIPPED: Readonly<Record<string, string>> = {
  debconf: 'maintainer-script configuration',
  'debconf-2.0': 'maintainer-script configuration (virtual)',
  dpkg: 'package manager',
  'perl-base': 'maintainer scripts',
  'init-system-helpers': 'service scripts',
  adduser: 'maintainer scripts',
  passwd: 'maintainer scripts',
  'libc-bin': 'ldconfig and locale tools',
  'base-files': 'a full system',
  debianutils: 'maintainer scripts',
  coreutils: 'a full system',
  'sensible-utils': 'a full system',
  ucf: 'maintainer scripts',
  'lsb-base': 'service scripts',
  'sysvinit-utils': 'service scripts',
};

export interface DebPackage {
  readonly name: string;
  readonly version: string;
  readonly architecture: string;
  /** Path in the archive (pool/main/...); its base name names the cached file. */
  readonly filename: string;
  readonly sha256: string;
  readonly size: number;
  readonly maintainer: string;
  readonly homepage: string | null;
  readonly source: string;
  /** Which wanted package pulled it in first (for the SBOM and for readers). */
  readonly requiredBy: string | null;
}

export type Progress = (message: string) => void;

type Stanza = Map<string, string>;

function parseStanzas(text: string): Stanza[] {
  const out: Stanza[] = [];
  for (const block of text.split(/\n\s*\n/)) {
    const fields: Stanza = new Map();
    let last = '';
    for (const line of block.split('\n')) {
      if (/^\s/.test(line) && last) {
        fields.set(last, `${fields.get(last)}\n${line.trim()}`);
        continue;
      }
      const m = /^([A-Za-z0-9-]+):\s?(.*)$/.exec(line);
      if (!m) continue;
      last = m[1]!;
      fields.set(last, m[2]!);
    }
    if (fields.has('Package')) out.push(fields);
  }
  return out;
}

/** "libc6 (>= 2.34), a | b:any (= 1)" -> [["libc6"], ["a", "b"]] */
export function parseDepends(field: string | undefined): string[][] {
  if (!field) return [];
  return field
    .split(',')
    .map((group) =>
      group
        .split('|')
        .map((alt) =>
          alt
            .trim()
            .split(/[\s(]/)[0]!
            .replace(/:[a-z0-9]+$/, ''),
        )
        .filter((n) => n !== ''),
    )
    .filter((g) => g.length > 0);
}

/** Candidate stanzas of real packages; names without a candidate (virtual, unknown) are absent. */
async function showPackages(names: readonly string[]): Promise<Map<string, Stanza>> {
  const found = new Map<string, Stanza>();
  const absorb = (text: string): void => {
    for (const s of parseStanzas(text)) {
      const name = s.get('Package')!;
      if (!found.has(name)) found.set(name, s);
    }
  };
  try {
    const { stdout } = await exec('apt-cache', ['show', '--no-all-versions', ...names], {
      maxBuffer: 64 << 20,
    });
    absorb(stdout);
  } catch {
    // One name without a candidate fails the whole call: ask one by one.
    for (const n of names) {
      const r = await exec('apt-cache', ['show', '--no-all-versions', n], { maxBuffer: 16 << 20 }).catch(
        () => null,
      );
      if (r) absorb(r.stdout);
    }
  }
  return found;
}

function toPackage(s: Stanza, requiredBy: string | null): DebPackage {
  const get = (k: string): string => {
    const v = s.get(k);
    if (v === undefined) throw new Error(`apt-cache show ${s.get('Package')}: no ${k} field`);
    return v;
  };
  return {
    name: get('Package'),
    version: get('Version'),
    architecture: get('Architecture'),
    filename: get('Filename'),
    sha256: get('SHA256'),
    size: Number(get('Size')),
    maintainer: get('Maintainer'),
    homepage: s.get('Homepage') ?? null,
    source: (s.get('Source') ?? get('Package')).split(' ')[0]!,
    requiredBy,
  };
}

/** The wanted packages and everything they depend on, sorted by name. */
export async function resolveDebs(
  wanted: readonly string[],
  progress: Progress = () => {},
): Promise<DebPackage[]> {
  let known = await showPackages(wanted);
  if (wanted.some((w) => !known.has(w))) {
    progress('apt lists do not know every package; running apt-get update');
    await exec('apt-get', ['update', '-qq']);
    known = await showPackages(wanted);
  }
  const missing = wanted.filter((w) => !known.has(w));
  if (missing.length > 0) throw new Error(`Debian packages not found: ${missing.join(', ')}`);
  const chosen = new Map<string, DebPackage>();
  let frontier = wanted.map((w) => ({ name: w, by: null as string | null }));
  while (frontier.length > 0) {
    const next: { name: string; by: string | null }[] = [];
    for (const { name, by } of frontier) {
      if (chosen.has(name)) continue;
      const stanza = known.get(name);
      if (!stanza) throw new Error(`Debian package ${name} has no candidate version`);
      chosen.set(name, toPackage(stanza, by));
      const groups = [...parseDepends(stanza.get('Pre-Depends')), ...parseDepends(stanza.get('Depends'))];
      const unknown = groups.flat().filter((n) => !known.has(n) && !(n in SKIPPED));
      if (unknown.length > 0) for (const [n, s] of await showPackages([...new Set(unknown)])) known.set(n, s);
      for (const group of groups) {
        if (group.some((n) => n in SKIPPED)) continue;
        const pick = group.find((n) => chosen.has(n)) ?? group.find((n) => known.has(n));
        if (!pick) throw new Error(`${name}: no installable package for "${group.join(' | ')}"`);
        next.push({ name: pick, by: by ?? name });
      }
    }
    frontier = next;
  }
  return [...chosen.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export function cachedDeb(cacheDir: string, p: DebPackage): string {
  return path.join(cacheDir, path.basename(p.filename));
}

/** Download what the cache lacks (one apt-get call), then verify every file's SHA256. */
export async function fetchDebs(
  packages: readonly DebPackage[],
  cacheDir: string,
  progress: Progress = () => {},
): Promise<void> {
  await mkdir(cacheDir, { recursive: true });
  const missing = packages.filter((p) => !existsSync(cachedDeb(cacheDir, p)));
  if (missing.length > 0) {
    progress(`downloading ${missing.length} Debian packages into ${cacheDir}`);
    const tmp = await mkdtemp(path.join(cacheDir, '.download-'));
    try {
      await exec('apt-get', ['download', '-qq', ...missing.map((p) => `${p.name}=${p.version}`)], {
        cwd: tmp,
        maxBuffer: 16 << 20,
      });
      const got = await readdir(tmp);
      for (const p of missing) {
        // apt-get spells an epoch as %3a in the file name; the archive's pool name has none.
        const names = [
          `${p.name}_${p.version.replace(':', '%3a')}_${p.architecture}.deb`,
          path.basename(p.filename),
        ];
        const file = got.find((f) => names.includes(f));
        if (!file)
          throw new Error(`apt-get download ${p.name}=${p.version} wrote none of ${names.join(', ')}`);
        await rename(path.join(tmp, file), cachedDeb(cacheDir, p));
      }
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
  for (const p of packages) {
    const file = cachedDeb(cacheDir, p);
    const sum = await sha256File(file);
    if (sum !== p.sha256) {
      await rm(file, { force: true });
      throw new Error(`${file}: SHA256 ${sum} is not the ${p.sha256} apt lists; removed it, run again`);
    }
  }
}

/** Unpack a .deb into rootfs and record it under /var/lib/dpkg/status.d. */
export async function unpackDeb(file: string, p: DebPackage, rootfs: string): Promise<void> {
  await exec('dpkg-deb', ['-x', file, rootfs]);
  const control = (await exec('dpkg-deb', ['-f', file], { maxBuffer: 4 << 20 })).stdout.trimEnd();
  const statusDir = path.join(rootfs, 'var/lib/dpkg/status.d');
  await mkdir(statusDir, { recursive: true });
  await writeFile(path.join(statusDir, p.name), `${control}\nStatus: install ok installed\n`);
  const md5 = await exec('dpkg-deb', ['-I', file, 'md5sums'], { maxBuffer: 16 << 20 }).catch(() => null);
  if (md5?.stdout) await writeFile(path.join(statusDir, `${p.name}.md5sums`), md5.stdout);
}

/** Documentation a runtime never reads; the copyright files stay (they are the licences). */
export async function pruneDocs(rootfs: string): Promise<void> {
  for (const dir of [
    'usr/share/man',
    'usr/share/info',
    'usr/share/lintian',
    'usr/share/bug',
    'usr/share/locale',
  ]) {
    await rm(path.join(rootfs, dir), { recursive: true, force: true });
  }
  const docs = path.join(rootfs, 'usr/share/doc');
  if (!existsSync(docs)) return;
  for (const pkg of await readdir(docs)) {
    for (const f of await readdir(path.join(docs, pkg)).catch(() => [] as string[])) {
      if (f !== 'copyright') await rm(path.join(docs, pkg, f), { recursive: true, force: true });
    }
  }
}
