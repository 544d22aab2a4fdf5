/**
 * The upstream client against fake upstreams on loopback: spoofed and mismatched replies are
 * ignored, timeouts fail over, truncation retries over TCP, IDs and source ports vary.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { describe, type TestContext, test } from 'node:test';
import dnsPacket from 'dns-packet';
import { RandomIds } from '../../../src/dns/random.ts';
import { UpstreamClient, type UpstreamOptions } from '../../../src/dns/upstream.ts';
import { A, decode, query, reply } from './helpers.ts';

type Behaviour = (q: Buffer, rinfo: dgram.RemoteInfo, sock: dgram.Socket) => void;

interface Fake {
  port: number;
  seen: Array<{ id: number; port: number }>;
  tcpSeen: number;
}

/**
 * A UDP socket and a TCP server on the same free port of 127.0.0.1. The UDP port the kernel picks
 * may be taken for TCP by another process (tests of other suites run beside these): then both
 * are closed and another port is tried, a bounded number of times.
 */
async function udpAndTcpOnOnePort(): Promise<{ sock: dgram.Socket; server: net.Server }> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    const server = net.createServer();
    const bound = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(sock.address().port, '127.0.0.1', () => resolve(true));
    });
    if (bound) return { sock, server };
    sock.close();
  }
  throw new Error('no port free for both UDP and TCP on 127.0.0.1 in 20 tries');
}

/** A fake upstream on 127.0.0.1 (UDP, and TCP on the same port answering with `tcpReply`). */
async function fakeUpstream(
  t: TestContext,
  behaviour: Behaviour,
  tcpReply?: (q: Buffer) => Buffer,
): Promise<Fake> {
  const { sock, server } = await udpAndTcpOnOnePort();
  const fake: Fake = { port: sock.address().port, seen: [], tcpSeen: 0 };
  sock.on('message', (msg, rinfo) => {
    fake.seen.push({ id: msg.readUInt16BE(0), port: rinfo.port });
    behaviour(msg, rinfo, sock);
  });
  server.on('connection', (c) => {
    let buf = Buffer.alloc(0);
    c.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
      fake.tcpSeen++;
      const q = buf.subarray(2, 2 + buf.readUInt16BE(0));
      const r = tcpReply ? tcpReply(q) : answer(q);
      const head = Buffer.alloc(2);
      head.writeUInt16BE(r.length);
      c.end(Buffer.concat([head, r]));
    });
    c.on('error', () => {});
  });
  t.after(() => {
    sock.close();
    server.close();
  });
  return fake;
}

/** A correct answer to `q`: same ID and question, one A record. */
function answer(q: Buffer, opts: { tc?: boolean; ip?: string } = {}): Buffer {
  const p = dnsPacket.decode(q);
  const name = p.questions?.[0]?.name ?? '';
  const r = reply(name, 'A', opts.tc ? [] : [A(name, opts.ip ?? '198.51.100.1')], { tc: opts.tc ?? false });
  r.writeUInt16BE(q.readUInt16BE(0), 0);
  return r;
}

/**
 * The client under test. Its per-attempt timeout is the product's default: a reply that comes
 * late on a loaded machine must not fail a test about something else. Tests about timing out
 * set a short one against an upstream that never answers (then the wait is all there is).
 */
function client(t: TestContext, ports: number[], extra: Partial<UpstreamOptions> = {}): UpstreamClient {
  const c = new UpstreamClient({
    servers: ports.map((port) => ({ host: '127.0.0.1', port, family: 4 as const })),
    timeoutMs: 2000,
    attempts: 2,
    socketsPerServer: 4,
    queriesPerSocket: 8,
    tcpFallback: true,
    ids: new RandomIds(),
    now: () => performance.now(),
    ...extra,
  });
  t.after(() => c.close());
  return c;
}

const Q = { name: 'api.example.com', type: 1, class: 1 };

describe('UpstreamClient', () => {
  test('a matching reply is returned with its bytes; the query went out with a new random ID', async (t) => {
    const fake = await fakeUpstream(t, (q, r, s) => s.send(answer(q), r.port, r.address));
    const c = client(t, [fake.port]);
    const msg = query('api.example.com', 'A', { id: 7 });
    const got = await c.query(msg, Q, false);
    assert.equal(got.transport, 'udp');
    assert.equal(decode(got.bytes).answers?.[0]?.data, '198.51.100.1');
    assert.equal(got.bytes.readUInt16BE(0), fake.seen[0]!.id);
  });

  test('spoofed replies (wrong ID, wrong question) are ignored; the real one is accepted', async (t) => {
    const fake = await fakeUpstream(t, (q, r, s) => {
      const wrongId = answer(q, { ip: '203.0.113.66' });
      wrongId.writeUInt16BE((q.readUInt16BE(0) + 1) & 0xffff, 0);
      s.send(wrongId, r.port, r.address);
      const other = reply('evil.example', 'A', [A('evil.example', '203.0.113.67')]);
      other.writeUInt16BE(q.readUInt16BE(0), 0);
      s.send(other, r.port, r.address);
      setTimeout(() => s.send(answer(q), r.port, r.address), 20);
    });
    const mismatches: string[] = [];
    const c = client(t, [fake.port], { observe: { answered() {}, failed: (k) => mismatches.push(k) } });
    const got = await c.query(query('api.example.com'), Q, false);
    assert.equal(decode(got.bytes).answers?.[0]?.data, '198.51.100.1');
    assert.deepEqual(mismatches, ['mismatch', 'mismatch']);
  });

  test('a reply from another address or port never reaches the query (connected socket)', async (t) => {
    const spoofer = dgram.createSocket('udp4');
    await new Promise<void>((r) => spoofer.bind(0, '127.0.0.1', () => r()));
    t.after(() => spoofer.close());
    const fake = await fakeUpstream(t, (q, r) => {
      // Only the spoofer answers, from the wrong port: the client must time out.
      spoofer.send(answer(q, { ip: '203.0.113.66' }), r.port, r.address);
    });
    const c = client(t, [fake.port], { attempts: 1, timeoutMs: 150 });
    await assert.rejects(c.query(query('api.example.com'), Q, false), { reason: 'upstream_timeout' });
  });

  test('timeout fails over to the next upstream', async (t) => {
    const silent = await fakeUpstream(t, () => {});
    const good = await fakeUpstream(t, (q, r, s) => s.send(answer(q), r.port, r.address));
    const c = client(t, [silent.port, good.port], { timeoutMs: 500 });
    const got = await c.query(query('api.example.com'), Q, false);
    assert.equal(decode(got.bytes).answers?.length, 1);
    assert.equal(silent.seen.length, 1);
    assert.equal(good.seen.length, 1);
    // The failed upstream is tried last for a while.
    await c.query(query('api.example.com'), Q, false);
    assert.equal(silent.seen.length, 1);
  });

  test('REL-08: all upstreams silent -> UpstreamError within attempts x timeout', async (t) => {
    const silent = await fakeUpstream(t, () => {});
    const c = client(t, [silent.port], { attempts: 2, timeoutMs: 50 });
    await assert.rejects(c.query(query('api.example.com'), Q, false), { code: 'NG_DNS_UPSTREAM_TIMEOUT' });
    // Given up after its attempts (each bounded by timeoutMs), not after some longer wait.
    assert.equal(silent.seen.length, 2);
  });

  test('DNS-03: a truncated UDP reply is retried over TCP to the same upstream', async (t) => {
    const fake = await fakeUpstream(
      t,
      (q, r, s) => s.send(answer(q, { tc: true }), r.port, r.address),
      (q) => answer(q, { ip: '198.51.100.99' }),
    );
    const c = client(t, [fake.port]);
    const got = await c.query(query('api.example.com'), Q, false);
    assert.equal(got.transport, 'tcp');
    assert.equal(decode(got.bytes).answers?.[0]?.data, '198.51.100.99');
    assert.equal(fake.tcpSeen, 1);
  });

  test('a TCP reply with another ID is rejected', async (t) => {
    const fake = await fakeUpstream(
      t,
      () => {},
      (q) => {
        const r = answer(q);
        r.writeUInt16BE((q.readUInt16BE(0) + 1) & 0xffff, 0);
        return r;
      },
    );
    const c = client(t, [fake.port], { attempts: 1 });
    await assert.rejects(c.query(query('api.example.com'), Q, true), { reason: 'upstream_failed' });
  });

  test('IDs are random and queries leave from several random ports', async (t) => {
    const fake = await fakeUpstream(t, (q, r, s) => s.send(answer(q), r.port, r.address));
    const c = client(t, [fake.port], { socketsPerServer: 4, queriesPerSocket: 3 });
    for (let i = 0; i < 60; i++) await c.query(query('api.example.com'), Q, false);
    const ids = new Set(fake.seen.map((s) => s.id));
    const ports = new Set(fake.seen.map((s) => s.port));
    assert.ok(ids.size >= 55, `distinct ids ${ids.size}`);
    assert.ok(ports.size >= 10, `distinct ports ${ports.size}`);
    const sequential = fake.seen.slice(1).filter((s, i) => s.id === ((fake.seen[i]!.id + 1) & 0xffff)).length;
    assert.ok(sequential < 5);
  });

  test('many concurrent queries on few sockets never mix up replies', async (t) => {
    const fake = await fakeUpstream(t, (q, r, s) => {
      const name = dnsPacket.decode(q).questions?.[0]?.name ?? '';
      setTimeout(
        () =>
          s.send(
            answer(q, { ip: `198.51.100.${Number(name.split('.')[0]!.slice(1)) % 250}` }),
            r.port,
            r.address,
          ),
        Math.random() * 10,
      );
    });
    const c = client(t, [fake.port], { socketsPerServer: 2, queriesPerSocket: 1000 });
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        c.query(query(`n${i}.example.com`), { name: `n${i}.example.com`, type: 1, class: 1 }, false),
      ),
    );
    for (const [i, r] of results.entries())
      assert.equal(decode(r.bytes).answers?.[0]?.data, `198.51.100.${i % 250}`);
  });
});
