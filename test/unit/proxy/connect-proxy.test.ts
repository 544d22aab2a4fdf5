/**
 * The CONNECT proxy on loopback with a programmable resolver (and once with the real upstream
 * client against a UDP DNS server written with dns-packet). Backends on 127.0.0.2 are reachable
 * only because a toCIDRs rule covers that loopback address (CON-05's exception). Cases: CON-01,
 * -04, -05, -06, -07, -08, -09, -10, -12, -13.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { describe, type TestContext, test } from 'node:test';
import dnsPacket from 'dns-packet';
import { Registry } from 'prom-client';
import { type ProxySectionInput, proxySettings } from '../../../src/config/proxy.ts';
import { RandomIds } from '../../../src/dns/random.ts';
import { UpstreamClient } from '../../../src/dns/upstream.ts';
import { StaticGroups } from '../../../src/identity/static-groups.ts';
import { silentLogger } from '../../../src/observe/log.ts';
import { CompiledPolicies } from '../../../src/policy/compile.ts';
import { ConnectProxy, rewriteRequest } from '../../../src/proxy/connect-proxy.ts';
import { parseRequestHead } from '../../../src/proxy/http-head.ts';
import { type NameResolver, UpstreamResolver } from '../../../src/proxy/resolver.ts';
import { simpleHello } from './hello-builder.ts';
import { backend, client, decisionLine, GROUPS, policy } from './helpers.ts';

function rules(port: number) {
  return policy({
    egress: [
      {
        toFQDNs: [
          { name: 'api.example.com' },
          { name: 'meta.example.com' },
          { name: 'self.example.com' },
          { name: 'gone.example.com' },
        ],
        ports: [{ port, protocol: 'TCP' }],
      },
      { toCIDRs: [{ cidr: '127.0.0.0/8' }], ports: [{ port, protocol: 'TCP' }] },
    ],
  });
}

class FakeResolver implements NameResolver {
  readonly calls: string[] = [];
  readonly table: Record<string, string[] | 'fail'>;
  constructor(table: Record<string, string[] | 'fail'>) {
    this.table = table;
  }
  async resolve(name: string) {
    this.calls.push(name);
    const v = this.table[name];
    if (v === 'fail') throw new Error('upstream 192.0.2.53 timed out');
    return (v ?? []).map((ip) => ({ ip, family: (ip.includes(':') ? 6 : 4) as 4 | 6 }));
  }
}

const TABLE = {
  'api.example.com': ['127.0.0.2'],
  'meta.example.com': ['169.254.169.254', '10.0.0.5'],
  'self.example.com': ['127.0.0.1'],
  'gone.example.com': 'fail' as const,
};

async function setup(
  t: TestContext,
  port: number,
  opts: { config?: ProxySectionInput; table?: FakeResolver['table'] } = {},
) {
  const lines: Array<Record<string, unknown>> = [];
  const resolver = new FakeResolver(opts.table ?? TABLE);
  const proxy = await ConnectProxy.start({
    policies: { current: () => new CompiledPolicies([rules(port)]) },
    identities: new StaticGroups(GROUPS),
    resolver,
    log: silentLogger(),
    registry: new Registry(),
    flowLog: { write: (l: string) => lines.push(JSON.parse(l)) },
    settings: proxySettings({
      ...opts.config,
      connect: { listen: ['127.0.0.1:0'], tlsPorts: [port], ...opts.config?.connect },
    }),
  });
  t.after(() => proxy.stop());
  return { proxy, port: proxy.addresses()[0]!.port, lines, resolver };
}

const connect = (authority: string) =>
  Buffer.from(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
const ESTABLISHED = 'HTTP/1.1 200 Connection Established\r\n\r\n';

describe('CONNECT proxy', () => {
  test('allowed: resolved by the proxy, the checked address dialled, tunnel SNI = CONNECT host (CON-06, CON-09)', async (t) => {
    const b = await backend(t);
    const s = await setup(t, b.port);
    const hello = simpleHello('api.example.com');
    const r = await client(s.port, [connect(`api.example.com:${b.port}`), hello], {
      until: ESTABLISHED.length + 4,
    });
    assert.ok(r.data.toString().startsWith(`${ESTABLISHED}pong`));
    assert.deepEqual(await b.bytes(0, hello.length), hello);
    assert.deepEqual(s.resolver.calls, ['api.example.com']);
    const d = await decisionLine(s.lines);
    assert.equal(d['verdict'], 'allow');
    assert.equal(d['authority'], 'api.example.com');
    assert.equal(d['dst'], '127.0.0.2');
  });

  test('a hello sent optimistically with the CONNECT (same segment) is held and checked', async (t) => {
    const b = await backend(t);
    const s = await setup(t, b.port);
    const hello = simpleHello('API.example.com');
    const r = await client(s.port, [Buffer.concat([connect(`api.example.com:${b.port}`), hello])], {
      until: ESTABLISHED.length + 4,
    });
    assert.ok(r.data.toString().startsWith(ESTABLISHED));
    assert.deepEqual(await b.bytes(0, hello.length), hello);
  });

  const refused: Array<[string, (port: number) => Buffer, RegExp, string]> = [
    [
      'CON-01: an IP literal without a CIDR rule',
      () => connect('203.0.113.10:443'),
      /^HTTP\/1\.1 403/,
      'ip_literal',
    ],
    [
      'CON-04: an allowed name on another port',
      () => connect('api.example.com:22'),
      /^HTTP\/1\.1 403/,
      'name_not_allowed',
    ],
    ['a name no rule allows', (p) => connect(`evil.example.com:${p}`), /^HTTP\/1\.1 403/, 'name_not_allowed'],
    [
      'CON-05: a name resolving to metadata and private addresses',
      (p) => connect(`meta.example.com:${p}`),
      /^HTTP\/1\.1 403/,
      'denied_address',
    ],
    [
      'CON-07: a name resolving to the proxy host itself',
      (p) => connect(`self.example.com:${p}`),
      /^HTTP\/1\.1 403/,
      'own_address',
    ],
    [
      'CON-13: resolution fails -> 502 without upstream details',
      (p) => connect(`gone.example.com:${p}`),
      /^HTTP\/1\.1 502/,
      'resolve_failed',
    ],
    [
      'a request that is not for a proxy',
      () => Buffer.from('GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n'),
      /^HTTP\/1\.1 400/,
      'not_a_proxy_request',
    ],
    [
      'a malformed request (LF only)',
      () => Buffer.from('CONNECT a.example.com:443 HTTP/1.1\nHost: a\n\n'),
      /^HTTP\/1\.1 400/,
      'bare_lf',
    ],
    [
      'an https absolute-form request',
      (p) => Buffer.from(`GET https://api.example.com:${p}/ HTTP/1.1\r\nHost: api.example.com:${p}\r\n\r\n`),
      /^HTTP\/1\.1 400/,
      'not_a_proxy_request',
    ],
  ];
  for (const [what, make, status, reason] of refused) {
    test(`${what} -> ${reason}`, async (t) => {
      const b = await backend(t);
      const s = await setup(t, b.port);
      const r = await client(s.port, [make(b.port)]);
      assert.match(r.data.toString(), status);
      assert.ok(r.data.toString().endsWith(`namegate: ${reason}\n`), r.data.toString());
      assert.doesNotMatch(
        r.data.toString(),
        /192\.0\.2\.53|169\.254|10\.0\.0\.5|timed out/,
        'CON-13: nothing internal leaks',
      );
      assert.equal((await decisionLine(s.lines))['reason'], reason);
      assert.equal(b.connections.length, 0);
    });
  }

  test('CON-08: a denied CONNECT followed by pipelined bytes: one answer, then closed; leftovers never parsed', async (t) => {
    const b = await backend(t);
    const s = await setup(t, b.port);
    const pipelined = Buffer.concat([
      connect(`evil.example.com:${b.port}`),
      connect(`api.example.com:${b.port}`),
      Buffer.from(
        `GET http://api.example.com:${b.port}/ HTTP/1.1\r\nHost: api.example.com:${b.port}\r\n\r\n`,
      ),
    ]);
    const r = await client(s.port, [pipelined]);
    assert.ok(r.closed);
    assert.equal((r.data.toString().match(/HTTP\/1\.1/g) ?? []).length, 1);
    assert.match(r.data.toString(), /^HTTP\/1\.1 403/);
    assert.equal(s.lines.filter((l) => l['event'] === 'proxy').length, 1);
    assert.equal(b.connections.length, 0);
  });

  test('CON-09: tunnel SNI differs from the CONNECT host -> closed, nothing reaches the server', async (t) => {
    const b = await backend(t);
    const s = await setup(t, b.port);
    const r = await client(s.port, [connect(`api.example.com:${b.port}`), simpleHello('other.example.com')]);
    assert.equal(r.data.toString(), ESTABLISHED);
    assert.ok(r.closed);
    const d = await decisionLine(s.lines);
    assert.equal(d['reason'], 'sni_mismatch');
    // The tunnel's upstream was dialled before the hello was read; once the proxy closed it,
    // everything it ever carried has arrived.
    assert.equal((await b.whole(0)).length, 0);
  });

  test('CON-10: a CONNECT nested inside an allowed tunnel is not a ClientHello -> closed', async (t) => {
    const b = await backend(t);
    const s = await setup(t, b.port);
    await client(s.port, [connect(`api.example.com:${b.port}`), connect(`evil.example.com:${b.port}`)]);
    assert.equal((await decisionLine(s.lines))['reason'], 'not_tls');
  });

  test('CON-10: absolute-form GET is filtered the same way, rewritten, one request per connection', async (t) => {
    const b = await backend(t, { reply: false });
    const s = await setup(t, b.port);
    const req = `GET http://api.example.com:${b.port}/x?y=1 HTTP/1.1\r\nHost: api.example.com:${b.port}\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic eDp5\r\nContent-Length: 3\r\n\r\nabc`;
    const second = `GET http://api.example.com:${b.port}/second HTTP/1.1\r\nHost: api.example.com:${b.port}\r\n\r\n`;
    const sock = net.connect(s.port, '127.0.0.1');
    sock.on('error', () => {});
    t.after(() => sock.destroy());
    // The client's FIN comes after every byte it sent, through the proxy's check: once the server
    // sees it, whatever the proxy forwards of the second request has arrived.
    sock.end(req + second);
    const all = (await b.whole(0)).toString();
    assert.ok(all.startsWith('GET /x?y=1 HTTP/1.1\r\n'), all);
    assert.doesNotMatch(all, /proxy-/i);
    assert.match(all, /connection: close\r\n\r\nabc$/);
    assert.doesNotMatch(all, /second/);
  });

  test('unknown sources are refused by default', async (t) => {
    const b = await backend(t);
    const lines: Array<Record<string, unknown>> = [];
    const proxy = await ConnectProxy.start({
      settings: proxySettings({ connect: { listen: ['127.0.0.1:0'] } }),
      policies: { current: () => new CompiledPolicies([rules(b.port)]) },
      identities: new StaticGroups([{ name: 'x', namespace: 'default', labels: {}, cidrs: ['10.0.0.0/8'] }]),
      resolver: new FakeResolver(TABLE),
      log: silentLogger(),
      registry: new Registry(),
      flowLog: { write: (l: string) => lines.push(JSON.parse(l)) },
    });
    t.after(() => proxy.stop());
    const r = await client(proxy.addresses()[0]!.port, [connect(`api.example.com:${b.port}`)]);
    assert.match(r.data.toString(), /^HTTP\/1\.1 403/);
    assert.equal((await decisionLine(lines))['reason'], 'unknown_source');
  });

  test('upstream unreachable -> 502 upstream_unreachable', async (t) => {
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.2', r));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const s = await setup(t, port);
    const r = await client(s.port, [connect(`api.example.com:${port}`)]);
    assert.match(r.data.toString(), /^HTTP\/1\.1 502[\s\S]*namegate: upstream_unreachable\n$/);
  });

  test('CON-12: an idle tunnel is closed', async (t) => {
    const b = await backend(t, { reply: false });
    const s = await setup(t, b.port, { config: { idleTimeoutMs: 1000, connect: { tlsPorts: [] } } });
    const r = await client(s.port, [connect(`api.example.com:${b.port}`)]);
    assert.equal(r.data.toString(), ESTABLISHED);
    assert.ok(r.closed);
  });

  test('rewriteRequest drops hop-by-hop fields and those named by Connection', () => {
    const r = parseRequestHead(
      Buffer.from(
        'GET http://a.example.com HTTP/1.1\r\nHost: a.example.com\r\nConnection: x-secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nAccept: */*\r\n\r\n',
      ),
    );
    assert.equal(r.kind, 'head');
    if (r.kind !== 'head') return;
    assert.equal(
      rewriteRequest(r.head).toString(),
      'GET / HTTP/1.1\r\nhost: a.example.com\r\naccept: */*\r\nconnection: close\r\n\r\n',
    );
  });
});

describe('UpstreamResolver', () => {
  test('A and AAAA through the upstream client; the CNAME chain is followed; other owners ignored', async (t) => {
    const server = dgram.createSocket('udp4');
    server.on('message', (msg, rinfo) => {
      const q = dnsPacket.decode(msg);
      const question = q.questions![0]!;
      const answers: dnsPacket.Answer[] =
        question.type === 'A'
          ? [
              { type: 'CNAME', name: question.name, data: 'edge.example.net', ttl: 60 },
              { type: 'A', name: 'edge.example.net', data: '198.51.100.7', ttl: 60 },
              { type: 'A', name: 'smuggled.example.org', data: '198.51.100.66', ttl: 60 },
            ]
          : [{ type: 'AAAA', name: question.name, data: '2001:db8::7', ttl: 60 }];
      server.send(
        dnsPacket.encode({ type: 'response', id: q.id, flags: 0x8180, questions: q.questions!, answers }),
        rinfo.port,
        rinfo.address,
      );
    });
    await new Promise<void>((r) => server.bind(0, '127.0.0.1', r));
    t.after(() => server.close());
    const upstream = new UpstreamClient({
      servers: [{ host: '127.0.0.1', port: server.address().port, family: 4 }],
      timeoutMs: 1000,
      attempts: 1,
      socketsPerServer: 1,
      queriesPerSocket: 100,
      tcpFallback: false,
      ids: new RandomIds(),
      now: () => performance.now(),
    });
    t.after(() => upstream.close());
    const got = await new UpstreamResolver(upstream).resolve('www.example.org');
    assert.deepEqual(got, [
      { ip: '198.51.100.7', family: 4 },
      { ip: '2001:db8::7', family: 6 },
    ]);
  });
});
