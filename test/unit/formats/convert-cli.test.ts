/**
 * `namegate convert --from DIALECT FILE`: native YAML on stdout, warnings on stderr, exit 0;
 * exit 2 with the field path when a document cannot be converted.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { validateNative } from '../../../src/formats/native.ts';
import { fixture, REPO } from './helpers.ts';

const BIN = path.join(REPO, 'bin/namegate');

function run(...args: string[]) {
  return spawnSync(BIN, args, { encoding: 'utf8', timeout: 60_000, env: { ...process.env, NO_COLOR: '1' } });
}

describe('namegate convert', () => {
  test('--from cilium: YAML on stdout, warnings on stderr, exit 0', () => {
    const r = run('convert', '--from', 'cilium', fixture('cilium', 'dns-example.yaml'));
    assert.equal(r.status, 0, r.stderr);
    const docs = parseAllDocuments(r.stdout).map((d) => d.toJS());
    assert.equal(docs.length, 1);
    assert.equal(docs[0].kind, 'EgressPolicy');
    assert.equal(docs[0].metadata.name, 'tofqdn-dns-visibility');
    assert.deepEqual(validateNative(docs[0]).errors, []);
    assert.match(r.stderr, /warning: .*spec\.egress\[0\]\.toPorts\[0\]\.rules\.dns: not needed/);
    assert.doesNotMatch(r.stdout, /warning/);
  });

  for (const [dialect, file] of [
    ['istio', 'wikipedia.yaml'],
    ['npep', 'npep-example.yaml'],
    ['gke', 'allow-external-api.yaml'],
  ] as const) {
    test(`--from ${dialect}: exit 0 with valid native YAML`, () => {
      const r = run('convert', '--from', dialect, fixture(dialect, file));
      assert.equal(r.status, 0, r.stderr);
      for (const doc of parseAllDocuments(r.stdout)) assert.deepEqual(validateNative(doc.toJS()).errors, []);
    });
  }

  test('a document that cannot be converted: exit 2, the field path on stderr, nothing on stdout', () => {
    const r = run('convert', '--from', 'cilium', fixture('cilium', 'broken/egress-deny.yaml'));
    assert.equal(r.status, 2);
    assert.match(r.stderr, /error: .*deny-metadata: spec\.egressDeny: namegate is allow-only/);
    assert.equal(r.stdout, '');
  });

  test('the wrong dialect: nothing converted, exit 2', () => {
    const r = run('convert', '--from', 'gke', fixture('cilium', 'dns-example.yaml'));
    assert.equal(r.status, 2);
    assert.match(r.stderr, /no gke documents/);
  });
});
