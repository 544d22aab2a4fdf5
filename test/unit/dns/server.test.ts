/**
 * The sockets: UDP, and TCP framing per RFC 7766 (pipelined queries, split length prefixes,
 * out-of-order replies) with its bounds, against a handler that echoes a reply.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { describe, type TestContext, test } from 'node:test';
import dnsPacket from 'dns-packet';
import { Registry } from 'prom-client';
import { createDnsMetrics } from '../../../src/dns/metrics.ts';
import { DnsServer, type Handler, normalizeSource, type ServerLimits } from '../../../src/dns/server.ts';
import { silentLogger } from '../../../src/observe/log.ts';
import { A, query, reply } from './helpers.ts';

const LIMITS: ServerLimits = {
  tcpMaxConnections: 10,
  tcpMaxConnectionsPerSource: 3,
  tcpMaxInFlightPerConnection: 4,
  tcpIdleTimeoutMs: 5000,
  recvBufferBytes: 1 << 20,
};

/** Echoes an answer for the question; names starting with "slow" wait `slowMs`. */
function echo(slowMs = 0, seen: string[] = []): Handler & { inFlight: number; maxInFlight: number } {
  const h = {
    inFlight: 0,
    maxInFlight: 0,
    async handle(msg: Buffer, src: string) {
      h.inFlight++;
      h.maxInFlight = Math.max(h.maxInFlight, h.inFlight);
      const p = dnsPacket.decode(msg);
      const name = p.questions?.[0]?.name ?? '';
      seen.push(`${src} ${name}`);
      if (name.startsWith('slow')) await new Promise((r) => setTimeout(r, slowMs));
      const r = reply(name, 'A', [A(name, '198.51.100.1')]);
      r.writeUInt16BE(msg.readUInt16BE(0), 0);
      h.inFlight--;
      return r;
    },
  };
  return h;
}

async function serve(t: TestContext, handler: Handler, limits = LIMITS): Promise<number> {
  const server = new DnsServer(
    handler,
    [{ host: '127.0.0.1', port: 0, family: 4 }],
    limits,
    createDnsMetrics(new Registry()),
    silentLogger(),
  );
  await server.start();
  t.after(() => server.close());
  return server.addresses()[0]!.port;
}

function frame(msg: Buffer): Buffer {
  const head = Buffer.alloc(2);
  head.writeUInt16BE(msg.length);
  return Buffer.concat([head, msg]);
}

/** Connect and collect decoded replies until `count` arrived. */
function tcpClient(port: number): {
  sock: net.Socket;
  replies(count: number): Promise<dnsPacket.Packet[]>;
  closed: Promise<void>;
} {
  const sock = net.connect(port, '127.0.0.1');
  let buf = Buffer.alloc(0);
  const got: dnsPacket.Packet[] = [];
  let want = 0;
  let wake: (() => void) | null = null;
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      got.push(dnsPacket.decode(buf.subarray(2, 2 + buf.readUInt16BE(0))));
      buf = buf.subarray(2 + buf.readUInt16BE(0));
    }
    if (got.length >= want && wake) wake();
  });
  sock.on('error', () => {});
  const closed = new Promise<void>((r) => sock.once('close', () => r()));
  return {
    sock,
    closed,
    replies(count) {
      want = count;
      if (got.length >= count) return Promise.resolve(got.slice(0, count));
      return new Promise((resolve) => {
        wake = () => resolve(got.slice(0, count));
      });
    },
  };
}

describe('DnsServer', () => {
  test('UDP: a query gets its reply', async (t) => {
    const port = await serve(t, echo());
    const sock = dgram.createSocket('udp4');
    t.after(() => sock.close());
    const got = new Promise<Buffer>((r) => sock.once('message', (m) => r(m)));
    sock.send(query('api.example.com', 'A', { id: 77 }), port, '127.0.0.1');
    const r = dnsPacket.decode(await got);
    assert.equal(r.id, 77);
    assert.equal(r.answers?.length, 1);
  });

  test('DNS-02: pipelined queries in one write are all answered, slow ones after fast ones', async (t) => {
    const port = await serve(t, echo(30));
    const c = tcpClient(port);
    t.after(() => c.sock.destroy());
    c.sock.write(
      Buffer.concat([
        frame(query('slow.example.com', 'A', { id: 1 })),
        frame(query('fast1.example.com', 'A', { id: 2 })),
        frame(query('fast2.example.com', 'A', { id: 3 })),
      ]),
    );
    const replies = await c.replies(3);
    assert.deepEqual(
      replies.map((r) => r.id),
      [2, 3, 1],
      'answered as each completes (RFC 7766 allows out of order)',
    );
  });

  test('DNS-02: a length prefix split across reads, and a message split too', async (t) => {
    const port = await serve(t, echo());
    const c = tcpClient(port);
    t.after(() => c.sock.destroy());
    const f = frame(query('api.example.com', 'A', { id: 9 }));
    c.sock.write(f.subarray(0, 1));
    await new Promise((r) => setTimeout(r, 20));
    c.sock.write(f.subarray(1, 7));
    await new Promise((r) => setTimeout(r, 20));
    c.sock.write(
      Buffer.concat([f.subarray(7), frame(query('b.example.com', 'A', { id: 10 })).subarray(0, 3)]),
    );
    await new Promise((r) => setTimeout(r, 20));
    c.sock.write(frame(query('b.example.com', 'A', { id: 10 })).subarray(3));
    const replies = await c.replies(2);
    assert.deepEqual(
      replies.map((r) => r.id).sort((a, b) => (a ?? 0) - (b ?? 0)),
      [9, 10],
    );
  });

  test('a frame shorter than a DNS header closes the connection', async (t) => {
    const port = await serve(t, echo());
    const c = tcpClient(port);
    c.sock.write(Buffer.from([0, 5, 1, 2, 3, 4, 5]));
    await c.closed;
  });

  test('queries in progress per connection are bounded (reading pauses)', async (t) => {
    const handler = echo(40);
    const port = await serve(t, handler);
    const c = tcpClient(port);
    t.after(() => c.sock.destroy());
    const frames = [];
    for (let i = 0; i < 12; i++) frames.push(frame(query(`slow${i}.example.com`, 'A', { id: i })));
    c.sock.write(Buffer.concat(frames));
    const replies = await c.replies(12);
    assert.equal(replies.length, 12);
    assert.ok(handler.maxInFlight <= LIMITS.tcpMaxInFlightPerConnection, `max ${handler.maxInFlight}`);
  });

  test('connections per source are bounded', async (t) => {
    const port = await serve(t, echo());
    const conns = Array.from({ length: 5 }, () => tcpClient(port));
    t.after(() => {
      for (const c of conns) c.sock.destroy();
    });
    const results = await Promise.all(
      conns.map(
        (c) =>
          new Promise<string>((resolve) => {
            c.sock.write(frame(query('api.example.com')));
            c.replies(1).then(() => resolve('served'));
            c.closed.then(() => resolve('closed'));
          }),
      ),
    );
    assert.equal(results.filter((r) => r === 'served').length, LIMITS.tcpMaxConnectionsPerSource);
  });

  test('an idle connection is closed', async (t) => {
    const port = await serve(t, echo(), { ...LIMITS, tcpIdleTimeoutMs: 100 });
    const c = tcpClient(port);
    await c.closed;
  });

  test('sources: IPv4-mapped IPv6 becomes IPv4; zone ids are dropped', () => {
    assert.equal(normalizeSource('::ffff:10.0.1.5'), '10.0.1.5');
    assert.equal(normalizeSource('fe80::1%eth0'), 'fe80::1');
    assert.equal(normalizeSource('2001:db8::1'), '2001:db8::1');
  });

  test('IPv6 listener (UDP and TCP on ::1)', async (t) => {
    const seen: string[] = [];
    const server = new DnsServer(
      echo(0, seen),
      [{ host: '::1', port: 0, family: 6 }],
      LIMITS,
      createDnsMetrics(new Registry()),
      silentLogger(),
    );
    await server.start();
    t.after(() => server.close());
    const port = server.addresses()[0]!.port;
    const sock = dgram.createSocket('udp6');
    t.after(() => sock.close());
    const got = new Promise<Buffer>((r) => sock.once('message', (m) => r(m)));
    sock.send(query('api.example.com'), port, '::1');
    await got;
    assert.deepEqual(seen, ['::1 api.example.com']);
  });
});
