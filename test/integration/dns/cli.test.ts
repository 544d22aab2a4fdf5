/**
 * `namegate dns --config FILE` as a process: serves, reloads policies on SIGHUP (keeping the
 * last good ones when a reload fails, REL-06), writes its checkpoint on SIGTERM, and rejects a
 * bad config with the field's path and exit code 2.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { promisify } from 'node:util';
import dnsPacket from 'dns-packet';
import { freePort, startKnot, zone } from './knot.ts';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../../..');
const NODE = path.join(ROOT, 'node_modules/node/bin/node');
const MAIN = path.join(ROOT, 'src/cli/main.ts');

const policyFor = (names: string[]) =>
  [
    'apiVersion: namegate.dev/v1alpha1',
    'kind: ClusterEgressPolicy',
    'metadata: { name: trial }',
    'spec:',
    '  egress:',
    '  - toFQDNs:',
    ...names.map((n) => `    - name: ${n}`),
    '    ports: [{ port: 443 }]',
    '',
  ].join('\n');

/**
 * The rcode of a UDP query, or null without an answer in ANSWER_WAIT_MS: asked of a proxy that
 * said it listens, so only a missing answer gives null, never a slow one (a loaded machine).
 */
const ANSWER_WAIT_MS = 15_000;
function ask(port: number, name: string): Promise<string | null> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const done = (v: string | null) => {
      clearTimeout(timer);
      s.close();
      resolve(v);
    };
    const timer = setTimeout(() => done(null), ANSWER_WAIT_MS);
    s.on('message', (m) => done((dnsPacket.decode(m) as { rcode?: string }).rcode ?? null));
    s.on('error', () => done(null));
    s.send(
      dnsPacket.encode({ type: 'query', id: 5, flags: 256, questions: [{ type: 'A', name }] }),
      port,
      '127.0.0.1',
    );
  });
}

/** Ask again until `fn` holds (a bounded number of tries: a hang becomes a failure naming `what`). */
async function until(fn: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`never happened: ${what}`);
}

/** Resolves when the process has printed something matching `re` (its log), rejects if it exits first. */
function printed(child: ChildProcess, output: string[], re: RegExp): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (!re.test(output.join(''))) return;
      child.stdout?.off('data', check);
      child.stderr?.off('data', check);
      child.off('exit', exited);
      resolve();
    };
    const exited = () => reject(new Error(`exited before printing ${re}:\n${output.join('')}`));
    child.stdout?.on('data', check);
    child.stderr?.on('data', check);
    child.once('exit', exited);
    check();
  });
}

async function dnsCommand(
  t: TestContext,
  config: string,
): Promise<{ child: ChildProcess; output: string[] }> {
  const child = spawn(NODE, [MAIN, 'dns', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  child.stdout?.on('data', (d: Buffer) => output.push(d.toString()));
  child.stderr?.on('data', (d: Buffer) => output.push(d.toString()));
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, output };
}

describe('namegate dns (CLI)', () => {
  test('serves, reloads on SIGHUP, keeps the last good policies, checkpoints on SIGTERM', async (t) => {
    const knot = await startKnot(t, {
      'example.test': zone('example.test', ['www A 198.51.100.1', 'new A 198.51.100.2']),
    });
    const dir = await mkdtemp(path.join(tmpdir(), 'namegate-dnscli-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const port = await freePort();
    await writeFile(path.join(dir, 'policy.yaml'), policyFor(['www.example.test']));
    await writeFile(
      path.join(dir, 'agent.yaml'),
      [
        'dns:',
        `  listen: ["127.0.0.1:${port}"]`,
        `  upstreams: ["127.0.0.1:${knot.port}"]`,
        '  flowLog: { path: flows.log }',
        'store: { checkpoint: { path: store.ckpt } }',
        'sources: [{ name: local, cidrs: [127.0.0.0/8] }]',
        'policies: [policy.yaml]',
        '',
      ].join('\n'),
    );
    const { child, output } = await dnsCommand(t, path.join(dir, 'agent.yaml'));
    // Its start (a Node process loading the agent) takes as long as it takes: wait for its word.
    await printed(child, output, /"reason":"started"/);
    await until(
      async () => (await ask(port, 'www.example.test')) === 'NOERROR',
      `the proxy (${output.join('')})`,
    );
    assert.equal(await ask(port, 'new.example.test'), 'REFUSED');

    await writeFile(path.join(dir, 'policy.yaml'), policyFor(['www.example.test', 'new.example.test']));
    child.kill('SIGHUP');
    await until(async () => (await ask(port, 'new.example.test')) === 'NOERROR', 'the reload');

    await writeFile(path.join(dir, 'policy.yaml'), 'spec: [not: valid');
    child.kill('SIGHUP');
    await until(async () => output.join('').includes('policy_reload_rejected'), 'the failed reload');
    assert.equal(await ask(port, 'new.example.test'), 'NOERROR', 'still the last good policies');

    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    const ckpt = await readFile(path.join(dir, 'store.ckpt'), 'utf8');
    assert.match(ckpt, /^namegate-store 1 /);
    assert.match(ckpt, /"www\.example\.test","198\.51\.100\.1"/);
    const flows = (await readFile(path.join(dir, 'flows.log'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.ok(flows.some((f) => f.qname === 'new.example.test' && f.verdict === 'deny'));
    assert.ok(flows.some((f) => f.qname === 'new.example.test' && f.verdict === 'allow'));
  });

  test('a bad config exits 2 and names the field', async (t) => {
    const dir = await mkdtemp(path.join(tmpdir(), 'namegate-dnscli-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await writeFile(
      path.join(dir, 'agent.yaml'),
      'dns:\n  upstreams: ["dns.example"]\n  denyResponse: DROP\n',
    );
    const err = await run(NODE, [MAIN, 'dns', '--config', path.join(dir, 'agent.yaml')]).then(
      () => null,
      (e: { code?: number; stderr?: string }) => e,
    );
    assert.ok(err);
    assert.equal(err.code, 2);
    assert.match(err.stderr ?? '', /dns\.denyResponse/);
  });
});
