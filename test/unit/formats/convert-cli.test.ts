/**
 * `namegate convert [--from DIALECT] FILE`: native YAML on stdout, warnings on stderr, exit 0;
 * exit 2 with the field path and nothing on stdout when any document cannot be converted. And
 * what convert, validate and check share: one outcome for files that yield no policy, for
 * unrendered templates and for YAML the library only warns about.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, type TestContext, test } from 'node:test';
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
    assert.match(r.stderr, /skipped: a cilium document, and only gke was asked for/);
    assert.match(r.stderr, /no policy found in /);
    assert.equal(r.stdout, '');
  });

  test('without --from: every document by its own dialect', () => {
    const r = run(
      'convert',
      fixture('cilium', 'dns-example.yaml'),
      fixture('gke', 'allow-external-api.yaml'),
    );
    assert.equal(r.status, 0, r.stderr);
    const docs = parseAllDocuments(r.stdout).map((d) => d.toJS());
    assert.deepEqual(
      docs.map((d) => d.metadata.name),
      ['tofqdn-dns-visibility', 'allow-external-api'],
    );
  });

  test('all or nothing: one broken document among good ones prints no YAML at all', () => {
    const r = run(
      'convert',
      fixture('cilium', 'dns-example.yaml'),
      fixture('cilium', 'broken/egress-deny.yaml'),
    );
    assert.equal(r.status, 2);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /error\(s\); nothing was converted/);
  });
});

/** Files written for one test, removed after it. */
async function tempFiles(t: TestContext, files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'namegate-convert-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text);
  return dir;
}

describe('one outcome for convert, validate and check', () => {
  const checkArgs = (p: string) => ['check', '--policy', p, '--namespace', 'a', '--name', 'a.example.com'];

  test('valid files that yield no policy: exit 2 and the same message from all three', async (t) => {
    const dir = await tempFiles(t, {
      'cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n',
      // A Cilium policy without egress: valid, and converts to nothing.
      'ingress-only.yaml':
        'apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: i, namespace: a}\n' +
        'spec:\n  endpointSelector: {}\n  ingress: [{fromEndpoints: [{}]}]\n',
    });
    for (const args of [['convert', dir], ['validate', dir], checkArgs(dir)]) {
      const r = run(...args);
      assert.equal(r.status, 2, `${args[0]}: ${r.stderr}`);
      assert.equal(r.stdout, '', args[0]);
      assert.match(r.stderr, /no policy found in .*: nothing there becomes a namegate policy/, args[0]);
    }
  });

  test('{{ }} placeholders are an unrendered template, with their line', async (t) => {
    const dir = await tempFiles(t, {
      'chart.yaml':
        '# a {{ comment }} is fine\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\n' +
        'metadata:\n  name: {{ .Release.Name }}-egress\n  namespace: a\nspec:\n  endpointSelector: {}\n',
    });
    for (const args of [['convert', dir], ['validate', dir], checkArgs(dir)]) {
      const r = run(...args);
      assert.equal(r.status, 2, `${args[0]}: ${r.stderr}`);
      assert.equal(r.stdout, '');
      assert.match(
        r.stderr,
        /an unrendered template: "\{\{ \.Release\.Name \}\}" at line 5; render it first/,
      );
    }
  });

  test('the YAML library never prints its own warnings', async (t) => {
    const dir = await tempFiles(t, {
      'tag.yaml':
        'apiVersion: namegate.dev/v1alpha1\nkind: EgressPolicy\nmetadata: {name: p, namespace: a}\n' +
        'spec:\n  podSelector: !custom {}\n  egress: [{toFQDNs: [{name: a.example.com}]}]\n',
      'key.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n  ? [a, b]\n  : c\n',
    });
    const r = run('validate', dir);
    assert.doesNotMatch(r.stderr, /YAMLWarning|Warning:|node:/);
    assert.match(r.stderr, /warning: .*tag\.yaml.*YAML: Unresolved tag: !custom/);
    assert.match(r.stderr, /error: .*key\.yaml.*a mapping key is itself a mapping or a list/);
    assert.equal(r.status, 2);
  });
});
