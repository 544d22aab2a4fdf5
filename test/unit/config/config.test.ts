import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { loadConfig, validateConfig } from '../../../src/config/load.ts';
import { parseHostPort } from '../../../src/core/host-port.ts';
import { problems } from './helpers.ts';

describe('agent config', () => {
  test('a minimal config gets safe defaults', () => {
    const c = validateConfig({ dns: { upstreams: ['192.0.2.53'] } }, '/etc/namegate');
    assert.deepEqual(c.dns.listen, ['127.0.0.1:53']);
    assert.equal(c.dns.denyResponse, 'REFUSED');
    assert.equal(c.dns.holdTimeoutMs, 200);
    assert.equal(c.dns.limits.maxCnameDepth, 16);
    assert.deepEqual(c.dns.refusedTypes, ['ANY', 'AXFR', 'IXFR', 'MAILA', 'MAILB', 'NULL']);
    assert.deepEqual(c.ttl, { minTTL: 30, maxTTL: 86_400, grace: 30 });
    assert.equal(c.store.maxIpsPerName, 64);
    assert.equal(c.store.checkpoint, undefined);
    assert.deepEqual(c.sources, []);
  });

  test('errors name the field path, all at once', () => {
    const p = problems({
      dns: {
        upstreams: ['192.0.2.53', 'dns.example:53'],
        listen: ['[::1]:99999'],
        denyResponse: 'DROP',
        limits: { maxCnameDepth: 0 },
      },
      ttl: { minTTL: 600, maxTTL: 60 },
      sources: [
        { name: 'a', cidrs: ['10.0.0.0/8'] },
        { name: 'b', cidrs: ['10.0.0.0/8'] },
      ],
      bogus: 1,
    });
    assert.ok(
      p.some((x) => x.startsWith('dns.denyResponse:')),
      p.join('\n'),
    );
    assert.ok(
      p.some((x) => x.startsWith('dns.limits.maxCnameDepth:')),
      p.join('\n'),
    );
    assert.ok(
      p.some((x) => x.includes('bogus')),
      p.join('\n'),
    );
    // Meaning is checked once the shape is right.
    const q = problems({
      dns: { upstreams: ['192.0.2.53', 'dns.example:53'], listen: ['[::1]:99999'] },
      ttl: { minTTL: 600, maxTTL: 60 },
      sources: [
        { name: 'a', cidrs: ['10.0.0.0/8'] },
        { name: 'b', cidrs: ['10.0.0.0/8'] },
      ],
    });
    assert.ok(
      q.some((x) => x.startsWith('dns.upstreams[1]:')),
      q.join('\n'),
    );
    assert.ok(
      q.some((x) => x.startsWith('dns.listen[0]:')),
      q.join('\n'),
    );
    assert.ok(
      q.some((x) => x.startsWith('ttl:')),
      q.join('\n'),
    );
    assert.ok(
      q.some((x) => x.startsWith('sources[1].cidrs[0]:')),
      q.join('\n'),
    );
  });

  test('unknown keys are errors (a typo never falls back to a default)', () => {
    assert.ok(
      problems({ dns: { upstreams: ['192.0.2.53'], holdTimeout: 5 } }).some((x) => x.includes('holdTimeout')),
    );
  });

  test('pass-through zones are canonicalized; bad ones rejected', () => {
    const c = validateConfig(
      { dns: { upstreams: ['192.0.2.53'], passThroughZones: ['Cluster.Local.'] } },
      '/',
    );
    assert.deepEqual(c.dns.passThroughZones, ['cluster.local']);
    assert.ok(
      problems({ dns: { upstreams: ['192.0.2.53'], passThroughZones: ['a..b'] } })[0]?.startsWith(
        'dns.passThroughZones[0]',
      ),
    );
  });

  test('relative paths are resolved against the config folder', () => {
    const c = validateConfig(
      {
        dns: { upstreams: ['192.0.2.53'], flowLog: { path: 'flows.log' } },
        policies: ['policies', '/abs/p.yaml'],
        store: { checkpoint: { path: 'state/store.ckpt' } },
      },
      '/etc/namegate',
    );
    assert.deepEqual(c.policies, ['/etc/namegate/policies', '/abs/p.yaml']);
    assert.equal(c.store.checkpoint?.path, '/etc/namegate/state/store.ckpt');
    assert.equal(c.dns.flowLog.path, '/etc/namegate/flows.log');
  });

  test('host:port forms', () => {
    assert.deepEqual(parseHostPort('192.0.2.1'), { host: '192.0.2.1', port: 53, family: 4 });
    assert.deepEqual(parseHostPort('192.0.2.1:5353'), { host: '192.0.2.1', port: 5353, family: 4 });
    assert.deepEqual(parseHostPort('[2001:DB8::1]:53'), { host: '2001:db8::1', port: 53, family: 6 });
    assert.deepEqual(parseHostPort('2001:db8::1'), { host: '2001:db8::1', port: 53, family: 6 });
    assert.equal(typeof parseHostPort('dns.example'), 'string');
    assert.equal(typeof parseHostPort('192.0.2.1:70000'), 'string');
  });

  test('loadConfig reads YAML, reports YAML errors and duplicate keys', async (t) => {
    const dir = await mkdtemp(path.join(tmpdir(), 'namegate-config-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'agent.yaml');
    await writeFile(file, 'dns:\n  upstreams: ["192.0.2.53"]\npolicies: [p]\n');
    assert.deepEqual((await loadConfig(file)).policies, [path.join(dir, 'p')]);
    await writeFile(file, 'dns:\n  upstreams: ["192.0.2.53"]\ndns: {}\n');
    await assert.rejects(loadConfig(file), { code: 'NG_CONFIG_INVALID' });
    await writeFile(file, 'dns: [\n');
    await assert.rejects(loadConfig(file), /not valid YAML/);
    await assert.rejects(loadConfig(path.join(dir, 'missing.yaml')), { code: 'NG_CONFIG_INVALID' });
  });

  test('the example config is valid', async () => {
    const c = await loadConfig(path.join(import.meta.dirname, '../../../deploy/gateway/agent.yaml'));
    assert.ok(c.sources.length > 0);
    assert.ok(c.dns.upstreams.length > 0);
  });
});
