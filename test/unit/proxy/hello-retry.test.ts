/**
 * A HelloRetryRequest through the SNI proxy (issue 13, item 7): the second ClientHello must name
 * the server the first one named, or the connection closes with a reason in the flow log.
 * Driven for real: `openssl s_server -groups P-384` behind the proxy answers a client that
 * offers an X25519 key share first with a retry request, for `openssl s_client` (which then
 * completes the handshake through the proxy) and for a hand-built client that sends a second
 * hello with another name, none, or the same one. The readers themselves are checked on bytes.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createECDH } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { Registry } from 'prom-client';
import { proxySettings } from '../../../src/config/proxy.ts';
import { StaticGroups } from '../../../src/identity/static-groups.ts';
import { silentLogger } from '../../../src/observe/log.ts';
import { CompiledPolicies } from '../../../src/policy/compile.ts';
import { DEFAULT_HELLO_LIMITS } from '../../../src/proxy/client-hello.ts';
import { ConnectProxy } from '../../../src/proxy/connect-proxy.ts';
import { HRR_RANDOM, readRetryHello, readServerFirst } from '../../../src/proxy/hello-retry.ts';
import { RetryGate } from '../../../src/proxy/retry-gate.ts';
import { connectLiteral } from '../../../src/proxy/server.ts';
import { type Extension, hello, sniExt, versionsExt } from './hello-builder.ts';
import { certificate, closeLine, decisionLine, GROUPS, Learned, line, policy, sniProxy } from './helpers.ts';

const u16 = (n: number) => Buffer.from([(n >> 8) & 0xff, n & 0xff]);
const X25519 = 0x001d;
const P384 = 0x0018;

function groupsExt(...groups: number[]): Extension {
  return [10, Buffer.concat([u16(groups.length * 2), ...groups.map(u16)])];
}
function keyShareExt(group: number, key: Buffer): Extension {
  const entry = Buffer.concat([u16(group), u16(key.length), key]);
  return [51, Buffer.concat([u16(entry.length), entry])];
}
const sigAlgsExt: Extension = [
  13,
  Buffer.concat([u16(8), u16(0x0403), u16(0x0804), u16(0x0805), u16(0x0401)]),
];

/** A TLS 1.3 hello OpenSSL accepts; `share` picks the key share offered. */
function tls13Hello(name: string | null, share: 'x25519' | 'p384'): Buffer {
  const key =
    share === 'x25519'
      ? keyShareExt(X25519, Buffer.alloc(32, 9))
      : keyShareExt(P384, createECDH('secp384r1').generateKeys());
  return hello({
    extensions: [
      ...(name === null ? [] : [sniExt(name)]),
      versionsExt(0x0304),
      groupsExt(X25519, P384),
      sigAlgsExt,
      key,
    ],
    suites: [0x1301],
  });
}

const CCS = Buffer.from([20, 3, 3, 0, 1, 1]);

function serverHello(random: Buffer): Buffer {
  const body = Buffer.concat([u16(0x0303), random, Buffer.from([0]), u16(0x1301), Buffer.from([0]), u16(0)]);
  const msg = Buffer.concat([Buffer.from([2, 0, 0, body.length]), body]);
  return Buffer.concat([Buffer.from([22, 3, 3]), u16(msg.length), msg]);
}

describe('readServerFirst / readRetryHello', () => {
  test('a retry request, a ServerHello, an alert and garbage are told apart', () => {
    assert.equal(readServerFirst(serverHello(HRR_RANDOM)), 'retry');
    assert.equal(readServerFirst(serverHello(Buffer.alloc(32, 7))), 'no_retry');
    assert.equal(readServerFirst(Buffer.from([21, 3, 3, 0, 2, 2, 40])), 'no_retry');
    assert.equal(readServerFirst(Buffer.from('HTTP/1.1 400 Bad Request\r\n')), 'no_retry');
    assert.equal(readServerFirst(Buffer.from([22, 3, 3, 0, 4, 11, 0, 0, 0])), 'no_retry');
  });

  test('the retry request is recognised byte by byte and across records', () => {
    const hrr = serverHello(HRR_RANDOM);
    for (let n = 0; n < 43; n++) assert.equal(readServerFirst(hrr.subarray(0, n)), 'more', `at ${n}`);
    assert.equal(readServerFirst(hrr.subarray(0, 43)), 'retry');
    const msg = hrr.subarray(5);
    const split = Buffer.concat([
      Buffer.from([22, 3, 3, 0, 10]),
      msg.subarray(0, 10),
      Buffer.from([22, 3, 3]),
      u16(msg.length - 10),
      msg.subarray(10),
    ]);
    assert.equal(readServerFirst(split), 'retry');
  });

  test('the second hello may follow change_cipher_spec and early data; its name is read', () => {
    const ch2 = tls13Hello('api.example.com', 'p384');
    const early = Buffer.concat([Buffer.from([23, 3, 3, 0, 5]), Buffer.alloc(5, 1)]);
    const r = readRetryHello(Buffer.concat([early, CCS, ch2]), DEFAULT_HELLO_LIMITS, 1024);
    assert.equal(r.kind, 'hello');
    assert.equal(r.kind === 'hello' && r.sni, 'api.example.com');
    assert.equal(r.kind === 'hello' && r.consumed, early.length + CCS.length + ch2.length);
    for (let n = 0; n < early.length + CCS.length + ch2.length; n += 7) {
      assert.equal(
        readRetryHello(Buffer.concat([early, CCS, ch2]).subarray(0, n), DEFAULT_HELLO_LIMITS, 1024).kind,
        'more',
      );
    }
  });

  test('bounded: skipped records beyond the cap, a hello without a name, not a hello', () => {
    const early = Buffer.concat([Buffer.from([23, 3, 3, 0x40, 0]), Buffer.alloc(0x4000)]);
    const big = readRetryHello(Buffer.concat([early, early]), DEFAULT_HELLO_LIMITS, 20_000);
    assert.equal(big.kind === 'error' && big.reason, 'too_large');
    const none = readRetryHello(tls13Hello(null, 'p384'), DEFAULT_HELLO_LIMITS, 1024);
    assert.equal(none.kind === 'error' && none.reason, 'no_sni');
    const alert = readRetryHello(Buffer.from([21, 3, 3, 0, 2, 2, 40]), DEFAULT_HELLO_LIMITS, 1024);
    assert.equal(alert.kind, 'error');
  });
});

/** Run bytes through a gate; collect what it lets through, its refusals and its error. */
function gate(enforce: boolean) {
  const out: Buffer[] = [];
  const refusals: string[] = [];
  let error: Error | null = null;
  const g = new RetryGate({
    sni: 'api.example.com',
    limits: DEFAULT_HELLO_LIMITS,
    timeoutMs: 60_000,
    enforce,
    onRefusal: (r) => refusals.push(r.reason),
  });
  g.on('data', (d: Buffer) => out.push(d));
  g.on('error', (e: Error) => {
    error = e;
  });
  return { g, out: () => Buffer.concat(out), refusals, error: () => error };
}

describe('RetryGate', () => {
  const early = Buffer.concat([Buffer.from([23, 3, 3, 0, 3]), Buffer.from('abc')]);

  test('bytes after the first hello wait for the server; a ServerHello lets them through, then everything', () => {
    const r = gate(true);
    r.g.write(early);
    assert.equal(r.out().length, 0, 'held until the server answered');
    r.g.serverData(serverHello(Buffer.alloc(32, 7)));
    assert.ok(r.g.settled);
    r.g.write(Buffer.from('more'));
    assert.deepEqual(r.out(), Buffer.concat([early, Buffer.from('more')]));
    assert.deepEqual(r.refusals, []);
  });

  test('a client that ends while bytes are held: no second hello can follow, so they go on at once', async () => {
    const r = gate(true);
    const ended = new Promise<void>((resolve) => r.g.once('end', () => resolve()));
    r.g.end(early);
    await ended;
    assert.deepEqual(r.out(), early);
    assert.deepEqual(r.refusals, []);
  });

  test('after a retry request, a client that ends before a complete second hello is refused', () => {
    const r = gate(true);
    r.g.serverData(serverHello(HRR_RANDOM));
    r.g.end(tls13Hello('api.example.com', 'p384').subarray(0, 20));
    assert.deepEqual(r.refusals, ['retry_hello_invalid']);
    assert.equal(r.out().length, 0);
  });

  test('retry request + same name: opens; + another name: refused and nothing passes', () => {
    const ok = gate(true);
    ok.g.serverData(serverHello(HRR_RANDOM));
    const same = Buffer.concat([CCS, tls13Hello('api.example.com', 'p384')]);
    ok.g.write(same);
    assert.deepEqual(ok.out(), same);
    const bad = gate(true);
    bad.g.serverData(serverHello(HRR_RANDOM));
    bad.g.write(Buffer.concat([CCS, tls13Hello('evil.example.org', 'p384')]));
    assert.equal(bad.out().length, 0);
    assert.deepEqual(bad.refusals, ['retry_name_mismatch']);
    assert.ok(bad.g.destroyed);
  });

  test('audit: the refusal is reported and the bytes pass', () => {
    const r = gate(false);
    r.g.serverData(serverHello(HRR_RANDOM));
    const other = tls13Hello('evil.example.org', 'p384');
    r.g.write(other);
    assert.deepEqual(r.refusals, ['retry_name_mismatch']);
    assert.deepEqual(r.out(), other);
  });

  test('a server that does not speak TLS never asked for a retry: the bytes pass', () => {
    const r = gate(true);
    r.g.write(early);
    r.g.serverData(Buffer.from('pong'));
    assert.deepEqual(r.refusals, []);
    assert.deepEqual(r.out(), early);
  });

  test('bounded: before the server answers, the client is paused past the cap; after a retry request, refused', async () => {
    const chunk = Buffer.concat([Buffer.from([23, 3, 3, 0x40, 0]), Buffer.alloc(0x4000)]);
    const waiting = gate(true);
    let written = 0;
    for (let i = 0; i < 8; i++) waiting.g.write(chunk, () => written++);
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.ok(written < 8, `${written} writes done: the gate stopped taking bytes`);
    waiting.g.serverData(serverHello(Buffer.alloc(32, 7)));
    await new Promise<void>((resolve) => waiting.g.write(Buffer.alloc(1), () => resolve()));
    assert.equal(waiting.out().length, 8 * chunk.length + 1, 'everything passes once the server answered');
    const retry = gate(true);
    retry.g.serverData(serverHello(HRR_RANDOM));
    for (let i = 0; i < 6 && !retry.g.destroyed; i++) retry.g.write(chunk);
    assert.deepEqual(retry.refusals, ['retry_hello_invalid']);
  });
});

interface OpensslServer {
  readonly port: number;
}

/** openssl s_server on 127.0.0.2 that only takes P-384: an X25519 key share gets a retry request. */
async function retryServer(t: TestContext): Promise<OpensslServer> {
  const dir = await mkdtemp(path.join(tmpdir(), 'namegate-hrr-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const { cert, key } = await certificate(t, ['api.example.com']);
  await writeFile(path.join(dir, 'cert.pem'), cert);
  await writeFile(path.join(dir, 'key.pem'), key);
  const child: ChildProcess = spawn(
    'openssl',
    [
      's_server',
      '-accept',
      '127.0.0.2:0',
      '-cert',
      path.join(dir, 'cert.pem'),
      '-key',
      path.join(dir, 'key.pem'),
      '-groups',
      'P-384',
      '-tls1_3',
      '-www',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  t.after(() => {
    child.kill();
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /ACCEPT 127\.0\.0\.2:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`openssl s_server exited ${code}: ${out}`)));
  });
  return { port };
}

/** The SNI proxy in front of `server`, recording every byte it writes to the server. */
async function proxyTo(t: TestContext, server: OpensslServer) {
  const up: Buffer[] = [];
  const h = await sniProxy(t, {
    policies: [
      policy({
        egress: [
          {
            toFQDNs: [{ name: 'api.example.com' }],
            ports: [{ port: server.port, protocol: 'TCP' }],
            verify: 'SNI',
          },
        ],
      }),
    ],
    learned: new Learned().add('127.0.0.1', 'api.example.com', '127.0.0.2'),
    dst: { address: '127.0.0.2', port: server.port },
    dial: (dst) => {
      const s = connectLiteral(dst.address, dst.port);
      const write = s.write.bind(s) as (chunk: Buffer) => boolean;
      s.write = ((chunk: Buffer, ...rest: unknown[]) => {
        up.push(Buffer.from(chunk));
        return (write as (...a: unknown[]) => boolean)(chunk, ...rest);
      }) as typeof s.write;
      return s;
    },
  });
  return { h, upstreamBytes: () => Buffer.concat(up) };
}

/** Plaintext ServerHello messages (the retry request counts) at the start of a server stream. */
function serverHellos(buf: Buffer): number {
  let n = 0;
  for (let at = 0; at + 5 < buf.length; ) {
    const len = buf.readUInt16BE(at + 3);
    if (buf[at] === 22 && buf[at + 5] === 2) n++;
    at += 5 + len;
  }
  return n;
}

/**
 * A raw client: send `preamble` and CH1, wait for the retry request (after `skip` bytes of the
 * reply, e.g. a CONNECT 200), send `second`; resolve when the connection closes.
 */
function rawRetry(
  port: number,
  first: Buffer,
  second: Buffer,
  opts: { preamble?: Buffer; skip?: number; untilServerHellos?: number } = {},
): Promise<{ sawRetry: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    let got = Buffer.alloc(0);
    let sawRetry = false;
    s.on('error', () => {});
    s.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (!sawRetry && readServerFirst(got.subarray(opts.skip ?? 0)) === 'retry') {
        sawRetry = true;
        s.write(second);
      }
      // Done without waiting for a close: the server answered the second hello too.
      if (opts.untilServerHellos && serverHellos(got.subarray(opts.skip ?? 0)) >= opts.untilServerHellos)
        s.destroy();
    });
    s.once('close', () => resolve({ sawRetry }));
    s.write(opts.preamble ? Buffer.concat([opts.preamble, first]) : first);
  });
}

describe('SNI proxy: HelloRetryRequest', { concurrency: 2 }, () => {
  test('openssl s_client offering X25519 first gets a retry request from s_server -groups P-384 and completes through the proxy', async (t) => {
    const server = await retryServer(t);
    const { h, upstreamBytes } = await proxyTo(t, server);
    const client = spawn(
      'openssl',
      [
        's_client',
        '-connect',
        `127.0.0.1:${h.port}`,
        '-servername',
        'api.example.com',
        '-groups',
        'X25519:P-384',
        '-tls1_3',
        '-msg',
        '-ign_eof',
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    t.after(() => client.kill());
    let out = '';
    client.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    client.stdin.end('GET / HTTP/1.0\r\n\r\n');
    const code = await new Promise<number | null>((r) => client.once('exit', r));
    assert.equal(code, 0, out);
    // -msg shows both hellos: the server asked for a retry, and the second hello went through.
    assert.equal(out.match(/>>> TLS 1\.3, Handshake \[length [0-9a-f]+\], ClientHello/g)?.length, 2, out);
    assert.match(out, /Server Temp Key: ECDH, secp384r1/);
    assert.match(out, /HTTP\/1\.0 200 ok/);
    const d = await decisionLine(h.lines);
    assert.equal(d['verdict'], 'allow');
    assert.equal(d['sni'], 'api.example.com');
    const c = await closeLine(h.lines);
    assert.equal(c['error'], undefined);
    assert.ok(!h.lines.some((l) => String(l['reason']).startsWith('retry_')), JSON.stringify(h.lines));
    assert.ok(upstreamBytes().length > 0);
  });

  for (const [what, second] of [
    ['another name', 'evil.example.org'],
    ['no name', null],
  ] as const) {
    test(`a second hello with ${what} closes the connection (retry_name_mismatch); it never reaches the server`, async (t) => {
      const server = await retryServer(t);
      const { h, upstreamBytes } = await proxyTo(t, server);
      const ch1 = tls13Hello('api.example.com', 'x25519');
      const ch2 = Buffer.concat([CCS, tls13Hello(second, 'p384')]);
      // Stop at the close, or (a failure) at the server's answer to the second hello.
      const r = await rawRetry(h.port, ch1, ch2, { untilServerHellos: 2 });
      assert.ok(r.sawRetry, 'the server answered with a retry request');
      const refused = await line(h.lines, (l) => l['reason'] === 'retry_name_mismatch');
      assert.equal(refused['verdict'], 'deny');
      assert.equal(refused['sni'] ?? refused['name'], 'api.example.com');
      await closeLine(h.lines);
      assert.deepEqual(upstreamBytes(), ch1, 'only the first hello reached the server');
    });
  }

  test('a second hello with the same name passes to the server', async (t) => {
    const server = await retryServer(t);
    const { h, upstreamBytes } = await proxyTo(t, server);
    const ch1 = tls13Hello('api.example.com', 'x25519');
    const ch2 = Buffer.concat([CCS, tls13Hello('api.example.com', 'p384')]);
    // The server's ServerHello to the second hello proves it arrived; no need to wait for a close.
    const r = await rawRetry(h.port, ch1, ch2, { untilServerHellos: 2 });
    assert.ok(r.sawRetry);
    await closeLine(h.lines);
    assert.deepEqual(upstreamBytes().subarray(0, ch1.length + ch2.length), Buffer.concat([ch1, ch2]));
    assert.ok(!h.lines.some((l) => String(l['reason']).startsWith('retry_')), JSON.stringify(h.lines));
  });

  test('CONNECT tunnel: a second hello with another name closes the tunnel (retry_name_mismatch)', async (t) => {
    const server = await retryServer(t);
    const lines: Array<Record<string, unknown>> = [];
    const port = server.port;
    const proxy = await ConnectProxy.start({
      policies: {
        current: () =>
          new CompiledPolicies([
            policy({
              egress: [
                { toFQDNs: [{ name: 'api.example.com' }], ports: [{ port, protocol: 'TCP' }] },
                { toCIDRs: [{ cidr: '127.0.0.2/32' }], ports: [{ port, protocol: 'TCP' }] },
              ],
            }),
          ]),
      },
      identities: new StaticGroups(GROUPS),
      resolver: { resolve: async () => [{ ip: '127.0.0.2', family: 4 as const }] },
      log: silentLogger(),
      registry: new Registry(),
      flowLog: { write: (l: string) => lines.push(JSON.parse(l)) },
      settings: proxySettings({
        peekTimeoutMs: 2000,
        connect: { listen: ['127.0.0.1:0'], tlsPorts: [port] },
      }),
    });
    t.after(() => proxy.stop());
    const established = 'HTTP/1.1 200 Connection Established\r\n\r\n';
    const r = await rawRetry(
      proxy.addresses()[0]!.port,
      tls13Hello('api.example.com', 'x25519'),
      Buffer.concat([CCS, tls13Hello('evil.example.org', 'p384')]),
      {
        preamble: Buffer.from(
          `CONNECT api.example.com:${port} HTTP/1.1\r\nHost: api.example.com:${port}\r\n\r\n`,
        ),
        skip: established.length,
        untilServerHellos: 2,
      },
    );
    assert.ok(r.sawRetry, 'the server answered with a retry request through the tunnel');
    const refused = await line(lines, (l) => l['reason'] === 'retry_name_mismatch');
    assert.equal(refused['verdict'], 'deny');
  });

  test('no second hello within the peek deadline: retry_timeout, closed', async (t) => {
    const server = await retryServer(t);
    const { h, upstreamBytes } = await proxyTo(t, server);
    const ch1 = tls13Hello('api.example.com', 'x25519');
    // The "second hello" is only its first three bytes: the gate waits for the rest, then gives up.
    const r = await rawRetry(h.port, ch1, tls13Hello('api.example.com', 'p384').subarray(0, 3));
    assert.ok(r.sawRetry);
    await line(h.lines, (l) => l['reason'] === 'retry_timeout');
    assert.deepEqual(upstreamBytes(), ch1);
  });
});
