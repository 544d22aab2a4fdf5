/**
 * Hot reload of policy files: a valid change is applied and announced, an invalid one keeps the
 * last good set (REL-06), and the first load must succeed.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { PolicyFiles } from '../../../src/agent/policy-files.ts';
import { canonicalName } from '../../../src/core/names.ts';
import { makeIdentity } from '../../../src/identity/identity.ts';
import { silentLogger } from '../../../src/observe/log.ts';
import { decideQuery } from '../../../src/policy/decide.ts';

const policy = (name: string) => `apiVersion: namegate.dev/v1alpha1
kind: EgressPolicy
metadata: { name: p, namespace: ns }
spec:
  egress:
    - toFQDNs: [{ name: ${name} }]
`;

const pod = makeIdentity('pod:ns/a', 'ns', {});
const allows = (files: PolicyFiles, name: string) =>
  decideQuery(files.current(), pod, canonicalName(name)).verdict === 'allow';

describe('PolicyFiles', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'namegate-policy-files-'));
  after(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'p.yaml');

  it('loads, applies a valid change, keeps the last good set on an invalid one', async () => {
    await writeFile(file, policy('a.example.com'));
    let rejected = 0;
    const files = new PolicyFiles({ paths: [dir], logger: silentLogger(), onRejected: () => rejected++ });
    const changes: number[] = [];
    files.onChange((set) => changes.push(set.size));
    assert.equal((await files.reload()).ok, true);
    assert.ok(allows(files, 'a.example.com'));

    await writeFile(file, policy('b.example.com'));
    assert.equal((await files.reload()).ok, true);
    assert.ok(allows(files, 'b.example.com'));
    assert.ok(!allows(files, 'a.example.com'));

    await writeFile(file, policy('*bad.example.com'));
    const bad = await files.reload();
    assert.equal(bad.ok, false);
    assert.ok(allows(files, 'b.example.com'), 'the last good set stays in force');
    assert.equal(rejected, 1);
    assert.deepEqual(changes, [1, 1]);
  });

  it('the first load of invalid policies fails and leaves nothing in force', async () => {
    await writeFile(file, 'apiVersion: namegate.dev/v1alpha1\nkind: EgressPolicy\nmetadata: {}\n');
    const files = new PolicyFiles({ paths: [dir], logger: silentLogger() });
    assert.equal((await files.reload()).ok, false);
    assert.throws(() => files.current());
  });
});
