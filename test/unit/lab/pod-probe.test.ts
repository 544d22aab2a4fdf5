/**
 * The in-pod probe (src/lab/cluster/pod-probe.ts) against a DNS server on loopback: one process
 * retries until the allowed name is answered, counts a denied name answered as a leak, and prints
 * the line probe.ts parses. The line parsers too.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import tls from 'node:tls';
import dnsPacket from 'dns-packet';
import { makeCert, opensslConfig } from '../../../src/lab/certs.ts';
import { followCommand, parseFollow, parseProbe, probeCommand } from '../../../src/lab/cluster/probe.ts';

const PROBE = path.resolve(import.meta.dirname, '../../../src/lab/cluster/pod-probe.ts');

/**
 * A UDP DNS server: REFUSED for `allowed` until it has been asked `refuseFirst` times (or while
 * `open()` says no); other names answered only with `leak`.
 */
async function fakeResolver(opts: {
  allowed: string;
  refuseFirst: number;
  leak: boolean;
  open?: () => boolean;
  address?: string;
}) {
  const socket = dgram.createSocket('udp4');
  let asked = 0;
  socket.on('message', (msg, from) => {
    const q = dnsPacket.decode(msg);
    const name = q.questions?.[0]?.name ?? '';
    const answer = name === opts.allowed ? ++asked > opts.refuseFirst && (opts.open?.() ?? true) : opts.leak;
    const reply = dnsPacket.encode({
      id: q.id ?? 0,
      type: 'response',
      flags: dnsPacket.RECURSION_DESIRED | (answer ? 0 : 5),
      questions: q.questions ?? [],
      answers: answer ? [{ type: 'A', name, ttl: 30, data: opts.address ?? '203.0.113.10' }] : [],
    });
    socket.send(reply, from.port, from.address);
  });
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
  return { port: socket.address().port, asked: () => asked, close: () => socket.close() };
}

/** Run the probe until it prints its line; then end it (it idles, as a pod's command does). */
async function runFirst(port: number): Promise<string> {
  const argv = probeCommand('api.stripe.com', 'evil.example.com').slice(2);
  const child = spawn(process.execPath, [PROBE, ...argv], {
    env: { ...process.env, PROBE_RESOLVER: `127.0.0.1:${port}` },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    let out = '';
    for await (const chunk of child.stdout) {
      out += String(chunk);
      if (out.includes('\n')) return out;
    }
    throw new Error(`the probe ended without its line (exit ${child.exitCode})`);
  } finally {
    child.kill();
  }
}

describe('pod-probe first', () => {
  test('retries in one process until the allowed name is answered; no leak', async (t) => {
    const dns = await fakeResolver({ allowed: 'api.stripe.com', refuseFirst: 3, leak: false });
    t.after(() => dns.close());
    const r = parseProbe(await runFirst(dns.port));
    assert.ok(r);
    assert.equal(r.tries, 4);
    assert.equal(r.last, 'EREFUSED');
    assert.equal(r.leaks, 0);
    assert.equal(r.answer, '203.0.113.10');
    assert.ok(r.start <= r.sent && r.sent <= r.answered, JSON.stringify(r));
  });

  test('a denied name answered is counted as a leak', async (t) => {
    const dns = await fakeResolver({ allowed: 'api.stripe.com', refuseFirst: 1, leak: true });
    t.after(() => dns.close());
    const r = parseProbe(await runFirst(dns.port));
    assert.ok(r);
    assert.equal(r.tries, 2);
    // One between the tries, one after the answer.
    assert.equal(r.leaks, 2);
  });
});

describe('pod-probe follow', () => {
  test('logs each change of outcome (DNS refused, then a verified TLS handshake), with its times', async (t) => {
    const dir = await mkdtemp(path.join(tmpdir(), 'namegate-probe-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const cnf = await opensslConfig(dir);
    const ca = { cert: path.join(dir, 'ca.crt'), key: path.join(dir, 'ca.key') };
    await makeCert({ cnf, ...ca, subject: '/CN=test CA', extensions: 'ca_ext' });
    const leaf = { cert: path.join(dir, 'leaf.crt'), key: path.join(dir, 'leaf.key') };
    await makeCert({
      cnf,
      ...leaf,
      subject: '/CN=github.test',
      extensions: 'leaf_ext',
      subjectAltName: 'DNS:github.test',
      ca,
    });
    const server = tls.createServer({ cert: await readFile(leaf.cert), key: await readFile(leaf.key) }, (s) =>
      s.end(),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    t.after(() => server.close());
    let open = false;
    const dns = await fakeResolver({
      allowed: 'github.test',
      refuseFirst: 0,
      leak: false,
      open: () => open,
      address: '127.0.0.1',
    });
    t.after(() => dns.close());
    const port = (server.address() as { port: number }).port;
    const child = spawn(process.execPath, [PROBE, ...followCommand('github.test', port, ca.cert).slice(2)], {
      env: { ...process.env, PROBE_RESOLVER: `127.0.0.1:${dns.port}` },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    t.after(() => child.kill());
    let out = '';
    for await (const chunk of child.stdout) {
      out += String(chunk);
      const changes = parseFollow(out);
      if (changes.length === 1 && !open) {
        assert.deepEqual([changes[0]!.ok, changes[0]!.why], [false, 'dns_EREFUSED']);
        open = true;
      }
      if (changes.length === 2) break;
    }
    const [first, second] = parseFollow(out);
    assert.equal(second!.ok, true);
    assert.equal(second!.why, '-');
    assert.ok(first!.at <= first!.done && first!.done <= second!.at && second!.at <= second!.done);
  });
});

describe('probe lines', () => {
  test('parseFollow reads every change, in order; other lines are ignored', () => {
    const log = [
      'namegate-follow at=1000 done=1012 ok=0 why=dns_EREFUSED',
      'something else',
      'namegate-follow at=2000 done=2030 ok=1 why=-',
    ].join('\n');
    assert.deepEqual(parseFollow(log), [
      { at: 1000, done: 1012, ok: false, why: 'dns_EREFUSED' },
      { at: 2000, done: 2030, ok: true, why: '-' },
    ]);
    assert.equal(parseProbe('no probe line here'), null);
  });
});
