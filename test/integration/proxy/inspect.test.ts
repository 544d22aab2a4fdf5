/**
 * The inspecting proxy with real clients over real sockets (loopback): curl over HTTP/1.1 and
 * HTTP/2, openssl s_client, Python's ssl + http.client, Node's https, a gRPC call (grpc-js),
 * websocket upgrades, request smuggling attempts over a raw TLS socket, an upstream with an
 * untrusted certificate, a certificate-pinning client, CA rotation, and the property that a
 * request the policy denies never reaches the destination (counted at the destination).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, readFileSync } from 'node:fs';
import https from 'node:https';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { makeCa, Rig, run } from './inspect-fixture.ts';

const API = 'api.example.test';
const OLD = 'old.h1.test';
const GRPC = 'grpc.example.test';
const OPEN = 'open.example.test';
const BAD = 'bad.example.test';

let rig: Rig;

before(async () => {
  rig = await Rig.start({
    rules: {
      [API]: [
        { methods: ['GET', 'HEAD'], path: { prefix: '/repos/org/' } },
        {
          methods: ['POST'],
          path: { regex: '/repos/org/[a-z]+/issues' },
          headers: [{ name: 'content-type', value: 'application/json' }],
        },
        { methods: ['GET'], path: { exact: '/socket' }, websocket: true },
        { methods: ['GET'], path: { exact: '/plain' } },
      ],
      [OLD]: [
        { methods: ['GET'], path: { prefix: '/ok' } },
        { path: { exact: '/ws' }, websocket: true },
      ],
      [GRPC]: [{ methods: ['POST'], path: { exact: '/echo.Echo/Say' } }],
      [OPEN]: null,
    },
    badCertName: BAD,
  });
});
after(async () => {
  await rig?.close();
});

const reached = (path: string) => rig.seen.filter((s) => s.path === path).length;

describe('curl, HTTP/1.1 and HTTP/2', () => {
  for (const [label, flag] of [
    ['HTTP/1.1', '--http1.1'],
    ['HTTP/2', '--http2'],
  ] as const) {
    test(`${label}: an allowed path reaches the destination, with the SNI as Host`, async () => {
      const r = await rig.curl(`https://${API}/repos/org/a?x=1`, [flag]);
      assert.equal(r.status, 200, r.stderr);
      const body = JSON.parse(r.body) as { path: string; host: string };
      assert.equal(body.path, '/repos/org/a?x=1');
      assert.equal(body.host, API);
      const last = rig.seen.at(-1)!;
      assert.equal(last.proto, flag === '--http2' ? 'h2' : 'h1');
    });

    test(`${label}: a path no HTTP rule allows gets 403 path_not_allowed and never reaches the destination`, async () => {
      const before = reached('/admin');
      const r = await rig.curl(`https://${API}/admin`, [flag]);
      assert.equal(r.status, 403);
      assert.equal(r.body, 'namegate: path_not_allowed');
      assert.equal(reached('/admin'), before);
      const line = rig.lines.findLast((l) => l['event'] === 'proxy_request' && l['path'] === '/admin')!;
      assert.equal(line['verdict'], 'deny');
      assert.equal(line['reason'], 'path_not_allowed');
      assert.equal(line['method'], 'GET');
      assert.equal(line['authority'], API);
      assert.equal(line['policy'], 'test/inspect');
    });

    test(`${label}: a method no HTTP rule allows gets 403 method_not_allowed`, async () => {
      const r = await rig.curl(`https://${API}/repos/org/a`, [flag, '-X', 'DELETE']);
      assert.equal(r.status, 403);
      assert.equal(r.body, 'namegate: method_not_allowed');
      assert.equal(rig.seen.filter((s) => s.method === 'DELETE').length, 0);
    });

    test(`SNI-10: domain fronting (Host differs from the SNI) is refused (${label})`, async () => {
      const r = await rig.curl(`https://${API}/repos/org/a`, [flag, '-H', `Host: ${OPEN}`]);
      assert.equal(r.status, 403);
      assert.equal(r.body, 'namegate: domain_fronting');
      assert.equal(rig.seen.filter((s) => s.host === OPEN).length, 0);
    });

    test(`${label}: header matchers: POST with the required content type passes, without it 403`, async () => {
      const ok = await rig.curl(`https://${API}/repos/org/x/issues`, [
        flag,
        '-X',
        'POST',
        '-H',
        'content-type: application/json',
        '-d',
        '{}',
      ]);
      assert.equal(ok.status, 200);
      const no = await rig.curl(`https://${API}/repos/org/x/issues`, [
        flag,
        '-X',
        'POST',
        '-H',
        'content-type: text/plain',
        '-d',
        'x',
      ]);
      assert.equal(no.status, 403);
      assert.equal(no.body, 'namegate: header_not_allowed');
    });
  }

  test('a rule without inspection lets every request through (but fronting is still refused)', async () => {
    assert.equal((await rig.curl(`https://${OPEN}/anything`, ['--http2'])).status, 200);
    const fronted = await rig.curl(`https://${OPEN}/anything`, ['--http1.1', '-H', `Host: ${API}`]);
    assert.equal(fronted.status, 403);
  });

  test('several requests in one curl run (allowed, denied, allowed): each is judged', async () => {
    const before = rig.seen.length;
    const r = await rig.curl(`https://${API}/repos/org/1`, [
      '--http1.1',
      '-o',
      '/dev/null',
      '--next',
      '--cacert',
      rig.inspectCa.cert,
      '--connect-to',
      `::127.0.0.1:${rig.frontPort}`,
      `https://${API}/forbidden`,
      '--next',
      '--cacert',
      rig.inspectCa.cert,
      '--connect-to',
      `::127.0.0.1:${rig.frontPort}`,
      `https://${API}/repos/org/2`,
    ]);
    assert.equal(r.code, 0);
    assert.match(r.body, /namegate: path_not_allowed/);
    assert.deepEqual(
      rig.seen
        .slice(before)
        .map((s) => s.path)
        .sort(),
      ['/repos/org/1', '/repos/org/2'],
    );
  });

  test('the destination chooses the protocol and the client gets the same (ALPN mirrored)', async () => {
    const r = await rig.curl(`https://${OLD}/ok`, ['--http2']);
    assert.equal(r.status, 200);
    assert.equal(rig.seen.at(-1)!.proto, 'h1');
  });
});

describe('other real clients', () => {
  test('openssl s_client verifies the minted leaf against the inspection CA and gets its answer', async () => {
    const r = await run(
      'openssl',
      [
        's_client',
        '-connect',
        `127.0.0.1:${rig.frontPort}`,
        '-servername',
        API,
        '-CAfile',
        rig.inspectCa.cert,
        '-verify_return_error',
        '-quiet',
        '-alpn',
        'http/1.1',
        '-ign_eof',
      ],
      `GET /repos/org/s HTTP/1.1\r\nHost: ${API}\r\nConnection: close\r\n\r\n`,
    );
    const out = r.stdout;
    assert.match(out, /^HTTP\/1\.1 200 /);
    assert.match(out, /"path":"\/repos\/org\/s"/);
  });

  test('the minted leaf: ECDSA P-256, the SNI as subjectAltName, issued by the inspection CA, short-lived', async () => {
    const r = await run('openssl', [
      's_client',
      '-connect',
      `127.0.0.1:${rig.frontPort}`,
      '-servername',
      API,
      '-showcerts',
    ]);
    const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(r.stdout)![0];
    const text = execFileSync('openssl', ['x509', '-noout', '-text'], { input: pem }).toString();
    assert.match(text, /ASN1 OID: prime256v1/);
    assert.match(text, new RegExp(`DNS:${API.replace(/\./g, '\\.')}`));
    assert.match(text, /Issuer: CN ?= ?inspection-ca/);
    assert.match(text, /TLS Web Server Authentication/);
    const notAfter = new Date(/Not After : (.+)/.exec(text)![1]!);
    assert.ok(notAfter.getTime() - Date.now() <= 3600_000 + 60_000);
  });

  test('Python (ssl + http.client) trusting the CA: allowed 200, denied 403', async () => {
    const script = `
import http.client, socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
def get(path):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[2]))), server_hostname=sys.argv[3])
    s.sendall(("GET %s HTTP/1.1\\r\\nHost: %s\\r\\nConnection: close\\r\\n\\r\\n" % (path, sys.argv[3])).encode())
    r = http.client.HTTPResponse(s); r.begin(); body = r.read(); s.close()
    return r.status, body
print(get("/repos/org/py")[0], get("/etc/passwd")[0])
`;
    const out = (
      await run('python3', ['-c', script, rig.inspectCa.cert, String(rig.frontPort), API])
    ).stdout.trim();
    assert.equal(out, '200 403');
  });

  test('Node https trusting the CA', async () => {
    const get = (p: string) =>
      new Promise<number>((resolve, reject) => {
        https
          .get(
            {
              host: '127.0.0.1',
              port: rig.frontPort,
              servername: API,
              path: p,
              headers: { host: API },
              ca: readFileSync(rig.inspectCa.cert),
            },
            (res) => {
              res.resume();
              resolve(res.statusCode ?? 0);
            },
          )
          .on('error', reject);
      });
    assert.equal(await get('/repos/org/node'), 200);
    assert.equal(await get('/private'), 403);
  });

  test('gRPC over HTTP/2: a unary call on an allowed method path works, another path is PERMISSION_DENIED', async () => {
    // Unary methods on raw bytes: no .proto needed to put a real gRPC call on the wire.
    const unary = (path: string) => ({
      path,
      requestStream: false,
      responseStream: false,
      requestSerialize: (b: Buffer) => b,
      requestDeserialize: (b: Buffer) => b,
      responseSerialize: (b: Buffer) => b,
      responseDeserialize: (b: Buffer) => b,
    });
    const Client = grpc.makeGenericClientConstructor(
      { Say: unary('/echo.Echo/Say'), Delete: unary('/echo.Echo/Delete') },
      'echo.Echo',
    );
    const client = new Client(
      `127.0.0.1:${rig.frontPort}`,
      grpc.credentials.createSsl(readFileSync(rig.inspectCa.cert)),
      {
        'grpc.ssl_target_name_override': GRPC,
        'grpc.default_authority': GRPC,
      },
    ) as unknown as Record<
      string,
      (m: Buffer, cb: (e: grpc.ServiceError | null, r?: Buffer) => void) => void
    > &
      grpc.Client;
    try {
      const call = (name: string) =>
        new Promise<{ err: grpc.ServiceError | null; reply?: Buffer }>((resolve) =>
          client[name]!.call(client, Buffer.from([0, 0, 0, 0, 3, 1, 2, 3]).subarray(5), (err, reply) =>
            resolve({ err, ...(reply ? { reply } : {}) }),
          ),
        );
      const ok = await call('Say');
      assert.equal(ok.err, null);
      assert.deepEqual([...ok.reply!], [1, 2, 3]);
      const denied = await call('Delete');
      assert.equal(denied.err?.code, grpc.status.PERMISSION_DENIED);
      assert.equal(rig.seen.filter((s) => s.path === '/echo.Echo/Delete').length, 0);
    } finally {
      client.close();
    }
  });
});

/** Raw request bytes over TLS to the front; resolves with everything the proxy sent back. */
function raw(name: string, bytes: string, alpn = 'http/1.1'): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect(
      {
        host: '127.0.0.1',
        port: rig.frontPort,
        servername: name,
        ca: readFileSync(rig.inspectCa.cert),
        ALPNProtocols: [alpn],
      },
      () => s.write(bytes),
    );
    let out = '';
    s.on('data', (d: Buffer) => {
      out += d.toString('latin1');
    });
    s.on('close', () => resolve(out));
    s.on('error', reject);
    s.setTimeout(5000, () => s.destroy());
  });
}

describe('NODE-08: request smuggling and framing, refused before anything reaches the destination', () => {
  const cases: Array<[string, string, RegExp]> = [
    [
      'Content-Length with Transfer-Encoding',
      `POST /repos/org/a HTTP/1.1\r\nHost: ${API}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      /^HTTP\/1\.1 400 [^\r]*\r\n[\s\S]*namegate: bad_length/,
    ],
    [
      'two Hosts',
      `GET /repos/org/a HTTP/1.1\r\nHost: ${API}\r\nHost: ${OPEN}\r\n\r\n`,
      /^HTTP\/1\.1 400 [\s\S]*namegate: bad_host/,
    ],
    [
      'obs-fold',
      `GET /repos/org/a HTTP/1.1\r\nHost: ${API}\r\nX-A: 1\r\n 2\r\n\r\n`,
      /^HTTP\/1\.1 400 [\s\S]*namegate: obs_fold/,
    ],
    ['bare LF', `GET /repos/org/a HTTP/1.1\nHost: ${API}\n\n`, /^HTTP\/1\.1 400 [\s\S]*namegate: bare_lf/],
    [
      'oversized head',
      `GET /repos/org/a HTTP/1.1\r\nHost: ${API}\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
      /^HTTP\/1\.1 431 [\s\S]*namegate: too_large/,
    ],
    [
      'a dot segment climbing out of an allowed prefix',
      `GET /repos/org/../../admin HTTP/1.1\r\nHost: ${API}\r\n\r\n`,
      /^HTTP\/1\.1 400 [\s\S]*namegate: dot_segment/,
    ],
    [
      'an encoded slash',
      `GET /repos/org/a%2F..%2F..%2Fadmin HTTP/1.1\r\nHost: ${API}\r\n\r\n`,
      /^HTTP\/1\.1 400 [\s\S]*namegate: ambiguous_path/,
    ],
    [
      'h2c upgrade inside TLS',
      `GET /repos/org/a HTTP/1.1\r\nHost: ${API}\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n`,
      /^HTTP\/1\.1 400 [\s\S]*namegate: h2c_upgrade/,
    ],
    [
      'CONNECT inside the inspected connection',
      `CONNECT ${OPEN}:443 HTTP/1.1\r\nHost: ${OPEN}:443\r\n\r\n`,
      /^HTTP\/1\.1 40[03] [\s\S]*namegate: (nested_connect|domain_fronting)/,
    ],
  ];
  for (const [label, bytes, expect] of cases) {
    test(label, async () => {
      const before = rig.seen.length;
      const out = await raw(API, bytes);
      assert.match(out, expect);
      assert.equal(rig.seen.length, before, 'nothing reached the destination');
    });
  }

  test('pipelined: the allowed first request is answered, then the smuggled second gets 403, never forwarded', async () => {
    const before = rig.seen.length;
    const out = await raw(
      API,
      `GET /repos/org/first HTTP/1.1\r\nHost: ${API}\r\n\r\nGET /admin HTTP/1.1\r\nHost: ${API}\r\n\r\nGET /repos/org/third HTTP/1.1\r\nHost: ${API}\r\n\r\n`,
    );
    const statuses = [...out.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
    assert.deepEqual(statuses, ['200', '403']);
    assert.deepEqual(
      rig.seen.slice(before).map((s) => s.path),
      ['/repos/org/first'],
    );
  });

  test('a body that hides a request (Content-Length framing) is body, not a second request', async () => {
    const before = rig.seen.length;
    const inner = `GET /admin HTTP/1.1\r\nHost: ${API}\r\n\r\n`;
    const out = await raw(
      API,
      `POST /repos/org/x/issues HTTP/1.1\r\nHost: ${API}\r\nContent-Type: application/json\r\nContent-Length: ${inner.length}\r\nConnection: close\r\n\r\n${inner}`,
    );
    assert.match(out, /^HTTP\/1\.1 200/);
    assert.deepEqual(
      rig.seen.slice(before).map((s) => s.path),
      ['/repos/org/x/issues'],
    );
  });
});

describe('websocket', () => {
  const upgrade = (name: string, path: string) =>
    raw(
      name,
      `GET ${path} HTTP/1.1\r\nHost: ${name}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nhello`,
    );
  test('an upgrade on a path whose rule says websocket: true switches, and the tunnel carries data', async () => {
    const out = await upgrade(OLD, '/ws');
    assert.match(out, /^HTTP\/1\.1 101 /);
    assert.match(out, /hello$/);
  });
  test('an upgrade on a path allowed only for plain requests is refused', async () => {
    const before = rig.seen.length;
    const out = await upgrade(OLD, '/ok');
    assert.match(out, /^HTTP\/1\.1 403 [\s\S]*namegate: websocket_not_allowed/);
    assert.equal(rig.seen.length, before);
  });
});

describe('the destination and the CA', () => {
  test('a destination whose certificate does not verify gets no request; the client gets 502 with the reason', async () => {
    const r = await rig.curl(`https://${BAD}/x`, ['--http1.1']);
    assert.equal(
      r.status,
      502,
      `${r.stderr} ${JSON.stringify(rig.lines.slice(-3))} ${JSON.stringify(rig.ends.slice(-3))}`,
    );
    assert.match(r.body, /^namegate: upstream_cert_invalid/);
    assert.equal(rig.seen.filter((s) => s.proto === 'bad').length, 0);
    const h2 = await rig.curl(`https://${BAD}/x`, ['--http2']);
    assert.equal(h2.status, 502);
  });

  test('a client that pins the destination key fails closed on an inspected name (nothing reaches the destination)', async () => {
    const pin = execFileSync('sh', [
      '-c',
      `openssl x509 -in ${rig.dir}/upstream.crt -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`,
    ])
      .toString()
      .trim();
    const before = rig.seen.length;
    const r = await rig.curl(`https://${API}/repos/org/pinned`, ['--pinnedpubkey', `sha256//${pin}`]);
    assert.notEqual(r.code, 0);
    assert.equal(r.status, 0);
    assert.equal(rig.seen.length, before);
  });

  test('CA rotation: new connections present leaves from the new CA; the old CA no longer verifies', async () => {
    const next = makeCa(rig.dir, 'inspection-ca-2');
    const before = rig.store.current.fingerprint;
    copyFileSync(next.key, rig.inspectCa.key);
    copyFileSync(next.cert, rig.inspectCa.cert + '.new');
    const oldCa = readFileSync(rig.inspectCa.cert);
    copyFileSync(next.cert, rig.inspectCa.cert);
    // The rig's own 50 ms watch may be mid-check (then check() returns at once): poll until the
    // new pair is in use.
    for (let i = 0; i < 250 && rig.store.current.fingerprint === before; i++) {
      await rig.store.check();
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.notEqual(rig.store.current.fingerprint, before);
    rig.minter.reset();
    assert.equal((await rig.curl(`https://${API}/repos/org/rotated`)).status, 200);
    const stale = await new Promise<string>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: rig.frontPort, servername: API, ca: oldCa }, () =>
        resolve('verified'),
      );
      s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });
    assert.notEqual(stale, 'verified');
  });
});

describe('property: a request the policy denies never reaches the destination', () => {
  test('random methods and paths over one keep-alive connection: what arrives is exactly what the rules allow', async () => {
    const agent = new https.Agent({
      keepAlive: true,
      maxSockets: 1,
      ca: readFileSync(rig.inspectCa.cert),
      servername: API,
    });
    const request = (method: string, path: string) =>
      new Promise<number>((resolve, reject) => {
        const req = https.request(
          {
            host: '127.0.0.1',
            port: rig.frontPort,
            method,
            path,
            agent,
            servername: API,
            headers: { host: API },
          },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', reject);
        req.end();
      });
    const segment = fc.constantFrom('repos', 'org', 'a', 'admin', 'issues', '..', '.', '%2e', 'x');
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'DELETE'),
        fc.array(segment, { minLength: 0, maxLength: 4 }),
        async (method, segs) => {
          const path = `/${segs.join('/')}`;
          const before = rig.seen.length;
          const status = await request(method, path);
          const arrived = rig.seen.length - before;
          const allowed =
            (['GET', 'HEAD'].includes(method) &&
              path.startsWith('/repos/org/') &&
              !segs.some((s) => s === '..' || s === '.' || s === '%2e')) ||
            (method === 'GET' && path === '/plain');
          assert.equal(arrived, allowed ? 1 : 0, `${method} ${path} -> ${status}`);
          assert.equal(status === 200, allowed);
        },
      ),
      { numRuns: 60 },
    );
    agent.destroy();
  });
});
