/**
 * `namegate sync` on a real Linux gateway: the process runs in the router namespace, resolves
 * through knotd, and writes the allowlists into the nftables table; pods behind it reach an
 * address only while the sync allows it. The union window keeps an address that DNS moved away
 * from; a failed upstream keeps the last good set; an address no answer gave stays dropped.
 *
 *   podA (governed) --\\
 *   podB (not)      ---- router (namegate sync, knotd on its 127.0.0.1, table ngsync) -- inet
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { probe, S4, S4b, S4c, S6, startServer, topology } from '../datapath/topology.ts';
import { startKnot, zone } from '../dns/knot.ts';
import { NODE, run, waitFor } from '../netns.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const KNOT_PORT = 5300;

interface Status {
  names: Array<{ name: string; addresses: string[]; failures: number }>;
  wildcards: Array<{ pattern: string }>;
  targets: { nftables?: { ok: boolean; lastSuccess: string | null } };
}

test('the sync keeps a gateway allowlist following DNS: union window, failures keep the last good set', async (t) => {
  const topo = await topology(t);
  const dir = await mkdtemp(path.join(tmpdir(), 'namegate-sync-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const zoneText = (serial: number, ips: string[]) =>
    zone('example.test', ['svc 2 AAAA 2001:db8:2::10', ...ips.map((ip) => `svc 2 A ${ip}`)]).replace(
      ' 1 3600 ',
      ` ${serial} 3600 `,
    );
  const knot = await startKnot(
    t,
    { 'example.test': zoneText(1, [S4]) },
    { netns: topo.router.name, port: KNOT_PORT },
  );
  await startServer(topo.inet, 'svc', [80]);

  await writeFile(
    path.join(dir, 'policy.yaml'),
    [
      'apiVersion: namegate.dev/v1alpha1',
      'kind: EgressPolicy',
      'metadata: { name: svc, namespace: apps }',
      'spec:',
      '  podSelector: { matchLabels: { app: a } }',
      '  egress:',
      '  - toFQDNs: [{ name: svc.example.test }, { pattern: "*.example.test" }]',
      '    ports: [{ port: 80, protocol: TCP }]',
      '',
    ].join('\n'),
  );
  const statusFile = path.join(dir, 'status.json');
  await writeFile(
    path.join(dir, 'sync.yaml'),
    JSON.stringify({
      dns: { upstreams: [`127.0.0.1:${KNOT_PORT}`], timeoutMs: 300, attempts: 1 },
      ttl: { minTTL: 1, grace: 1 },
      policies: ['policy.yaml'],
      sources: [
        { name: 'a', namespace: 'apps', labels: { app: 'a' }, cidrs: ['10.0.1.0/24', 'fd00:1::/64'] },
        { name: 'b', namespace: 'apps', labels: { app: 'b' }, cidrs: ['10.0.2.0/24', 'fd00:2::/64'] },
      ],
      datapath: { table: 'ngsync' },
      http: { listen: '127.0.0.1:0' },
      sync: {
        windowSeconds: 30,
        minRefreshSeconds: 1,
        failureRetrySeconds: 1,
        writeDelayMs: 50,
        statusFile: 'status.json',
        targets: { nftables: {} },
      },
    }),
  );
  const child = topo.router.spawn([
    NODE,
    path.join(ROOT, 'src/cli/main.ts'),
    'sync',
    '--config',
    path.join(dir, 'sync.yaml'),
  ]);
  const logs: string[] = [];
  child.stdout?.on('data', (d: Buffer) => logs.push(d.toString()));
  child.stderr?.on('data', (d: Buffer) => logs.push(d.toString()));
  t.after(() => child.kill('SIGKILL'));
  const status = async (): Promise<Status | null> => {
    try {
      return JSON.parse(await readFile(statusFile, 'utf8')) as Status;
    } catch {
      return null;
    }
  };
  const until = (what: string, ok: (s: Status) => boolean) =>
    waitFor(
      what,
      async () => {
        const s = await status();
        return s && ok(s) ? s : undefined;
      },
      15_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${logs.join('').slice(-3000)}`);
    });
  const svc = (s: Status) => s.names.find((n) => n.name === 'svc.example.test');

  const first = await until(
    'first pass',
    (s) => s.targets.nftables?.ok === true && (svc(s)?.addresses.length ?? 0) === 2,
  );
  assert.deepEqual(svc(first)?.addresses, [S4, S6]);
  assert.deepEqual(
    first.wildcards.map((w) => w.pattern),
    ['*.example.test'],
    'the wildcard is reported in the status',
  );
  assert.ok(logs.join('').includes('"reason":"wildcard_unresolvable"'));

  assert.equal((await probe(topo.podA, 'tcp', S4, 80)).result, 'ok');
  assert.equal((await probe(topo.podA, 'tcp', S6, 80)).result, 'ok');
  assert.notEqual((await probe(topo.podA, 'tcp', S4b, 80, 800)).result, 'ok', 'no answer gave .11 yet');
  assert.notEqual((await probe(topo.podA, 'tcp', S4, 81, 800)).result, 'ok', 'only the rule’s port');
  assert.equal(
    (await probe(topo.podB, 'tcp', S4c, 80)).result,
    'ok',
    'a group no policy selects is untouched',
  );

  // DNS moves the name: the new address is allowed, the old one stays for the window.
  await writeFile(path.join(knot.dir, 'example.test.zone'), zoneText(2, [S4b]));
  await run([
    'ip',
    'netns',
    'exec',
    topo.router.name,
    'knotc',
    '-s',
    path.join(knot.dir, 'knot.sock'),
    'zone-reload',
    'example.test',
  ]);
  await until('the moved address', (s) => svc(s)?.addresses.includes(S4b) === true);
  await waitFor(
    'the new address allowed',
    async () => (await probe(topo.podA, 'tcp', S4b, 80)).result === 'ok',
    5000,
  );
  assert.equal(
    (await probe(topo.podA, 'tcp', S4, 80)).result,
    'ok',
    'the old address stays within the window',
  );

  // The upstream fails: nothing is removed, the failure is reported.
  await knot.stop();
  const failing = await until('a reported failure', (s) => (svc(s)?.failures ?? 0) > 0);
  assert.deepEqual(svc(failing)?.addresses, [S4, S4b, S6]);
  assert.equal(
    (await probe(topo.podA, 'tcp', S4b, 80)).result,
    'ok',
    'a failed resolution keeps the last good set',
  );
  // The agent's own set holds both (.10 and .11, adjacent, merged into one /31).
  const table = await topo.router.run(['nft', '-j', 'list', 'set', 'inet', 'ngsync', 'cidr4']);
  assert.ok(table.includes('"addr": "203.0.113.10", "len": 31'), table);
  child.kill('SIGTERM');
});

test('sync without a sync section is a usage error (exit 2) that says what is missing', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'namegate-sync-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'c.yaml');
  await writeFile(file, 'dns: { upstreams: ["127.0.0.1:53"] }\n');
  const { exec } = await import('../netns.ts');
  const r = await exec([NODE, path.join(ROOT, 'src/cli/main.ts'), 'sync', '--config', file]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /no `sync` section/);
  await writeFile(
    file,
    'dns: { upstreams: ["127.0.0.1:53"] }\nsync: { minRefreshSeconds: 10, maxRefreshSeconds: 5 }\n',
  );
  const bad = await exec([NODE, path.join(ROOT, 'src/cli/main.ts'), 'sync', '--config', file]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /sync\.minRefreshSeconds: must not be larger/);
  assert.match(bad.stderr, /sync\.targets: name at least one target/);
});
