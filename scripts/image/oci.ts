/**
 * An OCI image archive: an image layout (oci-layout, index.json, blobs/sha256/...) packed in one
 * reproducible tar, plus the manifest.json that `docker load` reads. `ctr images import`,
 * `skopeo copy oci-archive:` and `docker load` all take it; containerd names the image after the
 * index's `io.containerd.image.name` annotation.
 *
 * JSON blobs are written with sorted keys and no whitespace, so their digests depend on content
 * only.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readdir, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type Blob, type Layer, REPRODUCIBLE_TAR } from './layer.ts';

export const MEDIA = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const;

/** The runtime part of an image config (the OCI image spec's `config` object). */
export interface RuntimeConfig {
  readonly User: string;
  readonly Entrypoint: readonly string[];
  readonly Cmd?: readonly string[];
  readonly Env: readonly string[];
  readonly WorkingDir: string;
  readonly Labels: Readonly<Record<string, string>>;
}

export interface ImageSpec {
  /** Fully qualified reference, e.g. docker.io/namegate/namegate:0.1.0. */
  readonly ref: string;
  readonly config: RuntimeConfig;
  /** What made each layer (the config's history). */
  readonly history: readonly string[];
  /** Seconds since the epoch for `created` (SOURCE_DATE_EPOCH). */
  readonly created: number;
  readonly annotations: Readonly<Record<string, string>>;
}

export interface WrittenImage {
  readonly ref: string;
  /** The manifest's digest: what `ctr images ls` and the kubelet report. */
  readonly digest: string;
  readonly configDigest: string;
  readonly layers: readonly Layer[];
  readonly archive: string;
  readonly archiveSize: number;
}

/** JSON with keys sorted at every level: a stable byte form. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    return Object.fromEntries(
      Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)),
    );
  });
}

async function writeJsonBlob(blobsDir: string, value: unknown): Promise<Blob> {
  const bytes = Buffer.from(canonicalJson(value));
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  await writeFile(path.join(blobsDir, digest.replace(':', '/')), bytes);
  return { digest, size: bytes.length };
}

/** "docker.io/namegate/namegate:0.1.0" -> { name: "docker.io/namegate/namegate", tag: "0.1.0" } */
export function splitRef(ref: string): { name: string; tag: string } {
  const colon = ref.lastIndexOf(':');
  if (colon <= ref.lastIndexOf('/')) throw new Error(`image reference ${ref} has no tag`);
  return { name: ref.slice(0, colon), tag: ref.slice(colon + 1) };
}

/** The short form docker prints: docker.io/library/x -> x, docker.io/a/b -> a/b. */
export function familiarRef(ref: string): string {
  return ref.replace(/^docker\.io\/library\//, '').replace(/^docker\.io\//, '');
}

export function isoTime(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace('.000Z', 'Z');
}

/**
 * Write the layout around already-written layers (in `<layout>/blobs/sha256`) and pack it into
 * `archive`.
 */
export async function writeImage(
  layoutDir: string,
  layers: readonly Layer[],
  spec: ImageSpec,
  archive: string,
): Promise<WrittenImage> {
  const blobs = path.join(layoutDir, 'blobs');
  const created = isoTime(spec.created);
  const config = await writeJsonBlob(blobs, {
    created,
    architecture: 'amd64',
    os: 'linux',
    config: spec.config,
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: spec.history.map((createdBy) => ({ created, created_by: createdBy })),
  });
  const manifest = await writeJsonBlob(blobs, {
    schemaVersion: 2,
    mediaType: MEDIA.manifest,
    config: { mediaType: MEDIA.config, digest: config.digest, size: config.size },
    layers: layers.map((l) => ({ mediaType: MEDIA.layer, digest: l.digest, size: l.size })),
    annotations: { 'org.opencontainers.image.created': created, ...spec.annotations },
  });
  const { tag } = splitRef(spec.ref);
  await writeFile(
    path.join(layoutDir, 'index.json'),
    canonicalJson({
      schemaVersion: 2,
      mediaType: MEDIA.index,
      manifests: [
        {
          mediaType: MEDIA.manifest,
          digest: manifest.digest,
          size: manifest.size,
          platform: { architecture: 'amd64', os: 'linux' },
          annotations: { 'io.containerd.image.name': spec.ref, 'org.opencontainers.image.ref.name': tag },
        },
      ],
    }),
  );
  await writeFile(path.join(layoutDir, 'oci-layout'), canonicalJson({ imageLayoutVersion: '1.0.0' }));
  // docker load before version 25 reads this file, not the index.
  const blobPath = (d: string): string => `blobs/${d.replace(':', '/')}`;
  await writeFile(
    path.join(layoutDir, 'manifest.json'),
    canonicalJson([
      {
        Config: blobPath(config.digest),
        RepoTags: [familiarRef(spec.ref)],
        Layers: layers.map((l) => blobPath(l.digest)),
      },
    ]),
  );
  const archiveSize = await packLayout(layoutDir, archive);
  return {
    ref: spec.ref,
    digest: manifest.digest,
    configDigest: config.digest,
    layers,
    archive,
    archiveSize,
  };
}

/** Tar the layout (uncompressed: the blobs are compressed already) into `archive`. */
async function packLayout(layoutDir: string, archive: string): Promise<number> {
  await mkdir(path.dirname(archive), { recursive: true });
  const tmp = `${archive}.tmp`;
  const entries = (await readdir(layoutDir)).sort();
  await new Promise<void>((resolve, reject) => {
    const child = spawn(
      'tar',
      [...REPRODUCIBLE_TAR, '--mode=a+rX,u+w,go-w', '-C', layoutDir, '-cf', tmp, '--', ...entries],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    child.once('error', reject);
    child.once('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`packing ${archive} failed: ${stderr.trim()}`)),
    );
  });
  await rename(tmp, archive);
  return (await stat(archive)).size;
}

export async function makeLayout(layoutDir: string): Promise<void> {
  await mkdir(path.join(layoutDir, 'blobs', 'sha256'), { recursive: true });
}
