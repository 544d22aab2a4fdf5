/**
 * The transparent SNI/Host proxy on loopback, with the original destination given by the test
 * (the real SO_ORIGINAL_DST path is in test/integration/proxy). Backends on 127.0.0.1 and
 * 127.0.0.2 record what reaches them, so "closed before any upstream connect" is checked, not
 * assumed. Cases: SNI-01, -02, -04, -05, -08, -09, -11, TLS-03, -04, -05, -09, -11, -12, -15,
 * NODE-01, -03, -04, -05, -08, CON-12 (idle), audit mode, limits.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, test } from 'node:test';
import tls from 'node:tls';
import { connectLiteral } from '../../../src/proxy/server.ts';
import { echOuterExt, reframe, simpleHello } from './hello-builder.ts';
import {
  backend,
  certificate,
  client,
  closeLine,
  decisionLine,
  GROUPS,
  Learned,
  policy,
  sniProxy,
  until,
} from './helpers.ts';

const DATA = path.join(import.meta.dirname, '../../testdata/proxy');
const curlHello = readFileSync(path.join(DATA, 'curl-default.bin'));
const earlyHello = readFileSync(path.join(DATA, 'openssl-psk-early.bin'));
const noSniHello = readFileSync(path.join(DATA, 'curl-ip-no-sni.bin'));
const ALERT_ACCESS_DENIED = Buffer.from([21, 3, 3, 0, 2, 2, 49]);

function rule(port: number, names = ['api.example.com', 'cdn-neighbour.example.net']) {
  return policy({
    egress: [{ toFQDNs: names.map((name) => ({ name })), ports: [{ port, protocol: 'TCP' }], verify: 'SNI' }],
  });
}

describe('SNI proxy: TLS', () => {
  test('allowed: SNI allowed and the IP learned for it -> the held hello reaches the server untouched', async (t) => {
    const b = await backend(t);
    const learned = new Learned().add('127.0.0.1', 'api.example.com', '127.0.0.2');
    const h = await sniProxy(t, {
      policies: [rule(b.port)],
      learned,
      dst: { address: '127.0.0.2', port: b.port },
    });
    const r = await client(h.port, [curlHello], { until: 5 });
    assert.match(r.data.toString(), /^pong:517;/);
    assert.deepEqual(await b.bytes(0, curlHello.length), curlHello);
    const d = await decisionLine(h.lines);
    assert.equal(d['verdict'], 'allow');
    assert.equal(d['sni'], 'api.example.com');
    assert.equal(d['dst'], '127.0.0.2');
    assert.equal(d['policy'], 'p');
    assert.deepEqual(d['alpn'], ['h2', 'http/1.1']);
    const c = await closeLine(h.lines);
    assert.equal(c['bytes_up'], 517);
  });

  test('SNI-01: SNI allowed but the IP never learned -> access_denied alert, no upstream connection', async (t) => {
    const b = await backend(t);
    const h = await sniProxy(t, {
      policies: [rule(b.port)],
      learned: new Learned(),
      dst: { address: '127.0.0.2', port: b.port },
    });
    const r = await client(h.port, [curlHello]);
    assert.deepEqual(r.data, ALERT_ACCESS_DENIED);
    assert.equal(b.connections.length, 0);
    assert.equal((await decisionLine(h.lines))['reason'], 'sni_ip_mismatch');
  });

  test('SNI-02: the CDN case: the IP was learned, but for another allowed name', async (t) => {
    const b = await backend(t);
    const learned = new Learned().add('127.0.0.1', 'api.example.com', '127.0.0.2');
    const h = await sniProxy(t, {
      policies: [rule(b.port)],
      learned,
      dst: { address: '127.0.0.2', port: b.port },
    });
    const r = await client(h.port, [simpleHello('cdn-neighbour.example.net')]);
    assert.deepEqual(r.data, ALERT_ACCESS_DENIED);
    assert.equal(b.connections.length, 0);
    const d = await decisionLine(h.lines);
    assert.equal(d['reason'], 'sni_ip_mismatch');
    assert.equal(d['sni'], 'cdn-neighbour.example.net');
  });

  test('a name no rule allows (and one learned by another source) -> sni_not_allowed', async (t) => {
    const b = await backend(t);
    const learned = new Learned().add('127.0.0.1', 'evil.example.com', '127.0.0.2');
    const h = await sniProxy(t, {
      policies: [rule(b.port)],
      learned,
      dst: { address: '127.0.0.2', port: b.port },
    });
    await client(h.port, [simpleHello('evil.example.com')]);
    assert.equal((await decisionLine(h.lines))['reason'], 'sni_not_allowed');
    assert.equal(b.connections.length, 0);
  });

  test('the port must be allowed too', async (t) => {
    const b = await backend(t);
    const learned = new Learned().add('127.0.0.1', 'api.example.com', '127.0.0.2');
    const h = await sniProxy(t, {
      policies: [rule(b.port + 1)],
      learned,
      dst: { address: '127.0.0.2', port: b.port },
    });
    await client(h.port, [curlHello]);
    assert.equal((await decisionLine(h.lines))['reason'], 'sni_not_allowed');
  });

  const refused: Array<[string, Buffer[], string]> = [
    ['TLS-05: no SNI (curl to an IP)', [noSniHello], 'no_sni'],
    ['TLS-09: SSH banner', [Buffer.from('SSH-2.0-OpenSSH_9.2\r\n')], 'not_tls'],
    ['TLS-09: random bytes', [Buffer.from([0x16, 0x01, 0x02, 0x03])], 'not_tls'],
    [
      'TLS-03: a handshake claiming 16 MB',
      [Buffer.from([22, 3, 1, 0x40, 0, 1, 0xff, 0xff, 0xff])],
      'too_large',
    ],
    ['TLS-07: trailing dot', [simpleHello('api.example.com.')], 'name_invalid'],
    ['TLS-08: IP literal SNI', [simpleHello('127.0.0.2')], 'ip_sni'],
  ];
  for (const [what, chunks, reason] of refused) {
    test(`${what} -> ${reason}, no upstream connection`, async (t) => {
      const b = await backend(t);
      const learned = new Learned().add('127.0.0.1', 'api.example.com', '127.0.0.2');
      const h = await sniProxy(t, {
        policies: [rule(b.port)],
        learned,
        dst: { address: '127.0.0.2', port: b.port },
      });
      const r = await client(h.port, chunks);
      assert.ok(r.closed);
      assert.equal((await decisionLine(h.lines))['reason'], reason);
      assert.equal(b.connections.length, 0);
    });
  }

  test('TLS-04: slowloris (one byte, then silence) -> timeout, closed', async (t) => {
    const b = await backend(t);
    const h = await sniProxy(t, {
      policies: [rule(b.port)],
      learned: new Learned(),
      dst: { address: '127.0.0.2', port: b.port },
      config: { peekTimeoutMs: 200 },
    });
    const r = await client(h.port, [curlHello.subarray(0, 1)]);
    assert.ok(r.closed);
    assert.equal((await decisionLine(h.lines))['reason'], 'timeout');
    assert.equal(b.connections.length, 0);
  });

  test('TLS-01: a hello in 40-byte records sent as separate segments -> allowed; nothing upstream before the last byte', async (t) => {
    const b = await backend(t);
    const learned = new Learned().add('127.0.0.1', 'api.example.com', '127.0.0.2');
    const dst = { address: '127.0.0.2', port: b.port };
    let accepted: net.Socket | null = null;
    const h = await sniProxy(t, {
      policies: [rule(b.port)],
      learned,
      dst,
      originalDestination: (socket) => {
        accepted = socket;
        return dst;
      },
    });
    const framed = reframe(curlHello, 40);
    const s = net.connect(h.port, '127.0.0.1');
    t.after(() => s.destroy());
    await new Promise((r) => s.once('connect', r));
    s.write(framed.subarray(0, framed.length - 1));
    // The proxy's end of the connection has read every byte but the last and handed them all to
    // its parser (none left buffered in the socket): the state a premature verdict would follow.
    const side = await until('the proxy read all but the last byte', () => {
      const a = accepted as net.Socket | null;
      return a !== null && a.bytesRead === framed.length - 1 && a.readableLength === 0 ? a : null;
    });
    // A verdict pauses the socket (peek.ts): still flowing means still reading the hello.
    assert.equal(side.readableFlowing, true, 'no verdict before the last byte');
    assert.equal(h.lines.length, 0, 'no decision line before the last byte');
    assert.equal(b.connections.length, 0, 'no upstream before the verdict');
    s.write(framed.subarray(framed.length - 1));
    assert.deepEqual(await b.bytes(0, framed.length), framed);
  });

  test('TLS-15: 0-RTT early data after the hello is held and forwarded after the verdict, in order', async (t) => {
    const b = await backend(t);
    const learned = new Learned().add('127.0.0.1', 'api.example.com', '127.0.0.2');
    const h = await sniProxy(t, {
      policies: [rule(b.port)],
      learned,
      dst: { address: '127.0.0.2', port: b.port },
    });
    await client(h.port, [earlyHello], { until: 1 });
    assert.deepEqual(await b.bytes(0, earlyHello.length), earlyHello);
  });

  test('TLS-11 / TLS-12: an ECH hello is decided on its outer name (allowed here, as GREASE ECH would be)', async (t) => {
    const b = await backend(t);
    const learned = new Learned().add('127.0.0.1', 'api.example.com', '127.0.0.2');
    const h = await sniProxy(t, {
      policies: [rule(b.port)],
      learned,
      dst: { address: '127.0.0.2', port: b.port },
    });
    await client(h.port, [simpleHello('api.example.com', [echOuterExt()])], { until: 1 });
    const d = await decisionLine(h.lines);
    assert.equal(d['verdict'], 'allow');
    assert.equal(d['ech'], true);
  });

  test('TLS-11: real ECH with a public_name the pod never resolved -> refused', async (t) => {
    const b = await backend(t);
    const learned = new Learned().add('127.0.0.1', 'api.example.com', '127.0.0.2');
    const h = await sniProxy(t, {
      policies: [rule(b.port, ['api.example.com', 'ech-public.example.net'])],
      learned,
      dst: { address: '127.0.0.2', port: b.port },
    });
    await client(h.port, [simpleHello('ech-public.example.net', [echOuterExt()])]);
    const d = await decisionLine(h.lines);
    assert.equal(d['reason'], 'sni_ip_mismatch');
    assert.equal(d['ech'], true);
  });

  test('dual-stack: an address learned by the IPv4 sibling counts for the IPv6 source', async (t) => {
    const b = await backend(t);
    const learned = new Learned().add('127.0.0.1', 'api.example.com', '127.0.0.2');
    const h = await sniProxy(t, {
      policies: [rule(b.port)],
      learned,
      dst: { address: '127.0.0.2', port: b.port },
      listen: ['[::1]:0'],
    });
    const r = await client(h.port, [curlHello], { host: '::1', until: 1 });
    assert.ok(r.data.length > 0);
    assert.equal((await decisionLine(h.lines))['src'], '::1');
  });

  test('a real TLS handshake through the proxy (node tls client and server)', async (t) => {
    const { cert, key } = await certificate(t, ['api.example.com']);
    const server = tls.createServer({ cert, key }, (s) => s.end('hello from api.example.com\n'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.2', r));
    t.after(() => server.close());
    const port = (server.address() as net.AddressInfo).port;
    const learned = new Learned().add('127.0.0.1', 'api.example.com', '127.0.0.2');
    const h = await sniProxy(t, { policies: [rule(port)], learned, dst: { address: '127.0.0.2', port } });
    const text = await new Promise<string>((resolve, reject) => {
      const s = tls.connect({ port: h.port, host: '127.0.0.1', servername: 'api.example.com', ca: cert });
      let got = '';
      s.on('data', (d: Buffer) => {
        got += d.toString();
      });
      s.on('end', () => resolve(got));
      s.on('error', reject);
    });
    assert.equal(text, 'hello from api.example.com\n');
  });
});

describe('SNI proxy: plain HTTP on a verify port', () => {
  const req = (host: string, extra = '') => Buffer.from(`GET / HTTP/1.1\r\nHost: ${host}\r\n${extra}\r\n`);

  async function setup(t: import('node:test').TestContext) {
    const b = await backend(t);
    const learned = new Learned().add('127.0.0.1', 'api.example.com', '127.0.0.2');
    const h = await sniProxy(t, {
      policies: [rule(b.port)],
      learned,
      dst: { address: '127.0.0.2', port: b.port },
    });
    return { b, h };
  }

  test('SNI-11: Host with port, uppercase and a trailing dot is normalised and allowed', async (t) => {
    const { b, h } = await setup(t);
    const bytes = req(`API.Example.COM.:${b.port}`);
    await client(h.port, [bytes], { until: 1 });
    assert.deepEqual(await b.bytes(0, bytes.length), bytes);
    assert.equal((await decisionLine(h.lines))['host'], 'api.example.com');
  });

  const cases: Array<[string, (port: number) => Buffer, string, RegExp | null]> = [
    [
      'SNI-04: Host of a name learned for another IP',
      (p) => req(`cdn-neighbour.example.net:${p}`),
      'host_ip_mismatch',
      /^HTTP\/1\.1 403/,
    ],
    [
      'SNI-11: Host port differs from the original port',
      () => req('api.example.com:1'),
      'host_port_mismatch',
      /^HTTP\/1\.1 403/,
    ],
    [
      'SNI-11: Host without a port means 80',
      () => req('api.example.com'),
      'host_port_mismatch',
      /^HTTP\/1\.1 403/,
    ],
    [
      'SNI-05: absolute-form authority differs',
      (p) => Buffer.from(`GET http://evil.com/ HTTP/1.1\r\nHost: api.example.com:${p}\r\n\r\n`),
      'authority_mismatch',
      /^HTTP\/1\.1 400/,
    ],
    [
      'SNI-08: Upgrade h2c',
      (p) => req(`api.example.com:${p}`, 'Upgrade: h2c\r\nHTTP2-Settings: AA\r\n'),
      'h2c_upgrade',
      /^HTTP\/1\.1 403/,
    ],
    [
      'SNI-09: HTTP/2 prior knowledge',
      () => Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
      'h2_prior_knowledge',
      null,
    ],
    [
      'NODE-08: LF-only lines',
      (p) => Buffer.from(`GET / HTTP/1.1\nHost: api.example.com:${p}\n\n`),
      'bare_lf',
      /^HTTP\/1\.1 400/,
    ],
    [
      'NODE-08: duplicate Content-Length',
      (p) => req(`api.example.com:${p}`, 'Content-Length: 1\r\nContent-Length: 2\r\n'),
      'bad_length',
      /^HTTP\/1\.1 400/,
    ],
    ['Host is an IP literal', (p) => req(`127.0.0.2:${p}`), 'host_is_ip', /^HTTP\/1\.1 403/],
  ];
  for (const [what, make, reason, response] of cases) {
    test(`${what} -> ${reason}`, async (t) => {
      const { b, h } = await setup(t);
      const r = await client(h.port, [make(b.port)]);
      if (response) assert.match(r.data.toString(), response);
      else assert.equal(r.data.length, 0);
      assert.equal((await decisionLine(h.lines))['reason'], reason);
      assert.equal(b.connections.length, 0);
    });
  }

  test('keep-alive: a second request for another Host closes the connection; the server never sees it', async (t) => {
    const { b, h } = await setup(t);
    const first = req(`api.example.com:${b.port}`);
    const s = net.connect(h.port, '127.0.0.1');
    s.on('error', () => {});
    s.resume();
    s.write(first);
    await b.bytes(0, first.length);
    const closed = new Promise((r) => s.once('close', r));
    s.write(req(`cdn-neighbour.example.net:${b.port}`));
    await closed;
    assert.deepEqual(b.received[0], first);
    const lines = h.lines.filter((l) => l['event'] === 'proxy');
    assert.equal(lines.at(-1)!['reason'], 'host_ip_mismatch');
  });
});

describe('SNI proxy: sources, audit, failures, limits', () => {
  test('NODE-01: no original destination -> closed, nothing dialled', async (t) => {
    const b = await backend(t);
    const h = await sniProxy(t, { policies: [rule(b.port)], learned: new Learned(), dst: null });
    const r = await client(h.port, [curlHello]);
    assert.ok(r.closed);
    assert.equal((await decisionLine(h.lines))['reason'], 'no_original_dst');
    assert.equal(b.connections.length, 0);
  });

  test('a connection made straight to the proxy (its own address as destination) is refused', async (t) => {
    const b = await backend(t);
    let self: { address: string; port: number } | null = null;
    const h = await sniProxy(t, {
      policies: [rule(b.port)],
      learned: new Learned(),
      dst: null,
      originalDestination: () => self,
    });
    self = { address: '127.0.0.1', port: h.port };
    await client(h.port, [curlHello]);
    assert.equal((await decisionLine(h.lines))['reason'], 'loop');
  });

  test('NODE-05: a lookup that throws closes that connection only; the next one is served', async (t) => {
    const b = await backend(t);
    const learned = new Learned().add('127.0.0.1', 'api.example.com', '127.0.0.2');
    let calls = 0;
    const h = await sniProxy(t, {
      policies: [rule(b.port)],
      learned,
      dst: null,
      originalDestination: () => {
        if (calls++ === 0) throw new Error('boom');
        return { address: '127.0.0.2', port: b.port };
      },
    });
    assert.ok((await client(h.port, [curlHello])).closed);
    const r = await client(h.port, [curlHello], { until: 1 });
    assert.ok(r.data.length > 0);
  });

  test('ungoverned and unknown sources are refused (only governed sources are redirected here)', async (t) => {
    const b = await backend(t);
    const h = await sniProxy(t, {
      policies: [policy({ podSelector: { matchLabels: { app: 'other' } }, egress: [] })],
      learned: new Learned(),
      dst: { address: '127.0.0.2', port: b.port },
    });
    await client(h.port, [curlHello]);
    assert.equal((await decisionLine(h.lines))['reason'], 'ungoverned');
    const h2 = await sniProxy(t, {
      policies: [rule(b.port)],
      learned: new Learned(),
      dst: { address: '127.0.0.2', port: b.port },
      groups: [{ name: 'x', namespace: 'default', labels: {}, cidrs: ['10.0.0.0/8'] }],
    });
    await client(h2.port, [curlHello]);
    assert.equal((await decisionLine(h2.lines))['reason'], 'unknown_source');
  });

  test('Audit: would-be denials (IP mismatch, no SNI) are logged as audit and pass', async (t) => {
    const b = await backend(t);
    const audit = policy(
      {
        egress: [
          {
            toFQDNs: [{ name: 'api.example.com' }],
            ports: [{ port: b.port, protocol: 'TCP' }],
            verify: 'SNI',
          },
        ],
      },
      'audit',
      'Audit',
    );
    const h = await sniProxy(t, {
      policies: [audit],
      learned: new Learned(),
      dst: { address: '127.0.0.2', port: b.port },
    });
    assert.ok((await client(h.port, [curlHello], { until: 1 })).data.length > 0);
    assert.ok((await client(h.port, [noSniHello], { until: 1 })).data.length > 0);
    const lines = h.lines.filter((l) => l['event'] === 'proxy');
    assert.deepEqual(
      lines.map((l) => [l['verdict'], l['reason']]),
      [
        ['audit', 'sni_ip_mismatch'],
        ['audit', 'no_sni'],
      ],
    );
  });

  test('a toCIDRs rule for the destination allows without a name (raw TCP)', async (t) => {
    const b = await backend(t);
    const cidr = policy({
      egress: [{ toCIDRs: [{ cidr: '127.0.0.2/32' }], ports: [{ port: b.port, protocol: 'TCP' }] }],
    });
    const h = await sniProxy(t, {
      policies: [cidr],
      learned: new Learned(),
      dst: { address: '127.0.0.2', port: b.port },
    });
    const r = await client(h.port, [Buffer.from('SSH-2.0-x\r\n')], { until: 1 });
    assert.ok(r.data.length > 0);
    assert.equal((await decisionLine(h.lines))['reason'], 'cidr_rule');
  });

  test('NODE-04: half-close propagates: client FIN reaches the server, the server answers after it', async (t) => {
    const srv = net.createServer({ allowHalfOpen: true }, (s) => {
      let n = 0;
      s.on('data', (d: Buffer) => {
        n += d.length;
      });
      s.on('end', () => s.end(`got ${n} then FIN`));
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.2', r));
    t.after(() => srv.close());
    const port = (srv.address() as net.AddressInfo).port;
    const learned = new Learned().add('127.0.0.1', 'api.example.com', '127.0.0.2');
    const h = await sniProxy(t, { policies: [rule(port)], learned, dst: { address: '127.0.0.2', port } });
    const r = await client(h.port, [curlHello], { end: true });
    assert.equal(r.data.toString(), `got ${curlHello.length} then FIN`);
    const c = await closeLine(h.lines);
    assert.equal(c['bytes_down'], `got ${curlHello.length} then FIN`.length);
    assert.equal(h.proxy.active, 0);
  });

  test('NODE-03: a client that stops reading stops the server (backpressure), then gets every byte', async (t) => {
    const total = 64 * 1024 * 1024;
    let sent = 0;
    // The proxy's two sockets: towards the client (what it buffers for a client that reads
    // nothing) and towards the server (paused while that buffer is full).
    let toClient: net.Socket | null = null;
    let toServer: net.Socket | null = null;
    let mostBuffered = 0;
    const srv = net.createServer((s) => {
      const chunk = Buffer.alloc(1024 * 1024, 1);
      const pump = () => {
        while (sent < total) {
          sent += chunk.length;
          const more = s.write(chunk);
          mostBuffered = Math.max(mostBuffered, (toClient as net.Socket | null)?.writableLength ?? 0);
          if (!more) return void s.once('drain', pump);
        }
        s.end();
      };
      s.once('data', pump);
      s.on('error', () => {});
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.2', r));
    t.after(() => srv.close());
    const port = (srv.address() as net.AddressInfo).port;
    const dst = { address: '127.0.0.2', port };
    const learned = new Learned().add('127.0.0.1', 'api.example.com', '127.0.0.2');
    const h = await sniProxy(t, {
      policies: [rule(port)],
      learned,
      dst,
      originalDestination: (socket) => {
        toClient = socket;
        return dst;
      },
      dial: (d) => {
        toServer = connectLiteral(d.address, d.port);
        return toServer;
      },
    });
    const s = net.connect(h.port, '127.0.0.1');
    t.after(() => s.destroy());
    s.pause();
    s.write(curlHello);
    // The client reads nothing: the proxy must stop reading from the server once its buffer
    // towards the client is full (the server's writes then block), not take in the whole
    // transfer. Either that state comes, or the server gets everything out (no backpressure).
    const outcome = await until('the proxy paused the server, or the server sent everything', () => {
      const up = toServer as net.Socket | null;
      const down = toClient as net.Socket | null;
      if (up?.isPaused() && down?.writableNeedDrain) return 'paused';
      return sent >= total ? 'everything sent' : null;
    });
    assert.equal(outcome, 'paused', `the server could send ${sent} bytes to a client that reads nothing`);
    let got = 0;
    await new Promise<void>((resolve) => {
      s.on('data', (d: Buffer) => {
        got += d.length;
      });
      s.on('end', () => resolve());
      s.resume();
    });
    assert.equal(got, total);
    // What the proxy held for the client never grew past one read from the server beyond its
    // high-water mark (sampled at every megabyte the server wrote).
    assert.ok(mostBuffered <= 1024 * 1024, `the proxy buffered ${mostBuffered} bytes for the client`);
  });

  test('limits: a second connection from the same source over maxConnectionsPerSource is dropped', async (t) => {
    const b = await backend(t);
    const learned = new Learned().add('127.0.0.1', 'api.example.com', '127.0.0.2');
    const h = await sniProxy(t, {
      policies: [rule(b.port)],
      learned,
      dst: { address: '127.0.0.2', port: b.port },
      config: { maxConnectionsPerSource: 1 },
    });
    const first = net.connect(h.port, '127.0.0.1');
    first.write(curlHello);
    await b.bytes(0, curlHello.length);
    const second = await client(h.port, [curlHello]);
    assert.ok(second.closed);
    assert.equal(b.connections.length, 1);
    first.destroy();
  });

  test('CON-12: an idle relayed connection is closed after idleTimeoutMs', async (t) => {
    const b = await backend(t, { reply: false });
    const learned = new Learned().add('127.0.0.1', 'api.example.com', '127.0.0.2');
    const h = await sniProxy(t, {
      policies: [rule(b.port)],
      learned,
      dst: { address: '127.0.0.2', port: b.port },
      config: { idleTimeoutMs: 1000 },
    });
    const r = await client(h.port, [curlHello]);
    assert.ok(r.closed);
    assert.equal((await closeLine(h.lines))['err'], 'idle');
  });

  test('metrics per reason', async (t) => {
    const b = await backend(t);
    const h = await sniProxy(t, {
      policies: [rule(b.port)],
      learned: new Learned(),
      dst: { address: '127.0.0.2', port: b.port },
    });
    await client(h.port, [curlHello]);
    await decisionLine(h.lines);
    const text = await h.registry.metrics();
    assert.match(
      text,
      /namegate_proxy_connections_total\{proxy="sni",verdict="deny",reason="sni_ip_mismatch"\} 1/,
    );
    void GROUPS;
  });
});
