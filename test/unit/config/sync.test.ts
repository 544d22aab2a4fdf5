/** The `sync` section: defaults, meaning checks with field paths, paths resolved, the example. */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { ConfigError, loadConfig, validateConfig } from '../../../src/config/load.ts';
import { syncSettingsFrom } from '../../../src/config/sync.ts';

test('the example sync config loads, and its settings map from the sections', async () => {
  const file = path.join(import.meta.dirname, '../../../deploy/sync/sync.yaml');
  const c = await loadConfig(file);
  assert.ok(c.sync);
  assert.equal(c.sync.targets.aws?.directory, path.join(path.dirname(file), 'out/aws'));
  const s = syncSettingsFrom(c.sync, c.ttl);
  assert.equal(s.windowMs, 600_000);
  assert.deepEqual(s.ttl, { minTtlSeconds: 30, maxTtlSeconds: 86_400, graceSeconds: 30 });
});

test('meaning beyond the shape is checked, every problem with its field path', () => {
  assert.throws(
    () =>
      validateConfig(
        {
          dns: { upstreams: ['127.0.0.1'] },
          sync: {
            minRefreshSeconds: 60,
            maxRefreshSeconds: 30,
            targets: {
              aws: {
                directory: 'x',
                securityGroups: [{ groupId: 'sg-0123456789abcdef0', source: 'nobody' }],
              },
            },
          },
        },
        '/',
      ),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.deepEqual(
        err.problems.map((p) => p.path),
        ['sync.minRefreshSeconds', 'sync.targets.aws.securityGroups[0].source'],
      );
      return true;
    },
  );
  assert.throws(
    () => validateConfig({ dns: { upstreams: ['127.0.0.1'] }, sync: { windowSecond: 5 } }, '/'),
    /sync: unknown field "windowSecond"/,
  );
});
