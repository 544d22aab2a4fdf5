/**
 * Closing the sockets while queries are in progress (REL-11, a rolling update: two agents on one
 * port with SO_REUSEPORT). A reply due after its socket closed is a counted drop, never a crash;
 * with reusePort, close() answers every query it took: the other server of the group takes the
 * new ones, and a TCP query in progress is answered before its connection ends.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { describe, type TestContext, test } from 'node:test';
import { Registry } from 'prom-client';
import { createDnsMetrics } from '../../../src/dns/metrics.ts';
import { DnsServer, type Handler, type ServerLimits } from '../../../src/dns/server.ts';
import { silentLogger } from '../../../src/observe/log.ts';

const LIMITS: ServerLimits = {
  tcpMaxConnections: 10,
  tcpMaxConnectionsPerSource: 10,
  tcpMaxInFlightPerConnection: 4,
  tcpIdleTimeoutMs: 5000,
  recvBufferBytes: 1 << 20,
};

/** Replies with the query itself after `delayMs`, its third byte set to `tag` (who answered). */
function tagging(tag: number, delayMs: number): Handler {
  return {
    handle: (msg) =>
      new Promise((resolve) =>
        setTimeout(() => {
          const r = Buffer.from(msg);
          r[2] = tag;
          resolve(r);
        }, delayMs),
      ),
  };
}

/**
 * A handler that holds each query until the test lets it go: `entered` resolves when a query is
 * in the handler, `release()` answers it (tagged like `tagging`).
 */
function gated(tag: number): { handler: Handler; entered: Promise<void>; release: () => void } {
  let entered!: () => void;
  let release!: () => void;
  const enteredP = new Promise<void>((r) => {
    entered = r;
  });
  const released = new Promise<void>((r) => {
    release = r;
  });
  const handler: Handler = {
    handle: async (msg) => {
      entered();
      await released;
      const r = Buffer.from(msg);
      r[2] = tag;
      return r;
    },
  };
  return { handler, entered: enteredP, release };
}

/** Wait until `ok` holds (a counter the server keeps, checked every few milliseconds). */
async function until(ok: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await ok())) await new Promise((r) => setTimeout(r, 5));
}

async function server(
  t: TestContext,
  handler: Handler,
  port: number,
  reusePort: boolean,
): Promise<{ server: DnsServer; registry: Registry }> {
  const registry = new Registry();
  const s = new DnsServer(
    handler,
    [{ host: '127.0.0.1', port, family: 4 }],
    LIMITS,
    createDnsMetrics(registry),
    silentLogger(),
    { reusePort },
  );
  await s.start();
  t.after(() => s.close());
  return { server: s, registry };
}

async function drops(registry: Registry, reason: string): Promise<number> {
  const m = await registry.getSingleMetric('namegate_dns_drops_total')?.get();
  return m?.values.find((v) => v.labels['reason'] === reason)?.value ?? 0;
}

describe('closing with queries in progress', { timeout: 30_000 }, () => {
  test('a reply due after close is a counted drop, not a crash', async (t) => {
    const gate = gated(1);
    const { server: s, registry } = await server(t, gate.handler, 0, false);
    const port = s.addresses()[0]?.port ?? 0;
    const client = dgram.createSocket('udp4');
    t.after(() => client.close());
    await new Promise<void>((r) => client.send(Buffer.alloc(12), port, '127.0.0.1', () => r()));
    // The query is in the handler when the socket closes (no handover without reusePort); its
    // reply is due only after that.
    await gate.entered;
    await s.close();
    gate.release();
    await until(async () => (await drops(registry, 'send_failed')) === 1);
    assert.equal(await drops(registry, 'send_failed'), 1);
  });

  test('reusePort: the closing server answers what it took, the other takes the rest; none lost', async (t) => {
    const first = await server(t, tagging(1, 3), 0, true);
    const port = first.server.addresses()[0]?.port ?? 0;
    await server(t, tagging(2, 3), port, true);
    const answeredBy = [0, 0, 0];
    let sent = 0;
    let answered = 0;
    const clients: dgram.Socket[] = [];
    for (let i = 0; i < 20; i++) {
      const c = dgram.createSocket('udp4');
      c.on('message', (m) => {
        answered++;
        answeredBy[m[2] ?? 0] = (answeredBy[m[2] ?? 0] ?? 0) + 1;
      });
      clients.push(c);
    }
    t.after(() => {
      for (const c of clients) c.close();
    });
    let stop = false;
    // Each client sends from its own port: the kernel spreads them over both servers.
    const load = (async () => {
      while (!stop) {
        for (const c of clients) {
          sent++;
          c.send(Buffer.alloc(12), port, '127.0.0.1');
        }
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    await until(() => (answeredBy[1] ?? 0) > 50 && (answeredBy[2] ?? 0) > 50);
    await first.server.close();
    const atClose = answeredBy[2] ?? 0;
    await until(() => (answeredBy[2] ?? 0) > atClose + 200);
    stop = true;
    await load;
    await until(() => answered >= sent);
    assert.equal(answered, sent, 'every query was answered');
    assert.equal(await drops(first.registry, 'send_failed'), 0);
  });

  test('reusePort: a TCP query in progress is answered before its connection ends', async (t) => {
    const gate = gated(1);
    const { server: s } = await server(t, gate.handler, 0, true);
    const port = s.addresses()[0]?.port ?? 0;
    const conn = net.connect({ host: '127.0.0.1', port });
    t.after(() => conn.destroy());
    await new Promise<void>((r) => conn.once('connect', () => r()));
    const chunks: Buffer[] = [];
    conn.on('data', (d: Buffer) => chunks.push(d));
    const ended = new Promise<void>((r) => conn.once('close', () => r()));
    const q = Buffer.alloc(14);
    q.writeUInt16BE(12, 0);
    conn.write(q);
    // In the handler when close() begins; answered only after that.
    await gate.entered;
    const closing = s.close();
    gate.release();
    await closing;
    await ended;
    const all = Buffer.concat(chunks);
    assert.equal(all.length, 14, 'the framed answer arrived');
    assert.equal(all[4], 1);
  });
});
