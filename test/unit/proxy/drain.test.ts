/**
 * Stopping a proxy on agent shutdown (closeAll with a drain): new connections are refused at
 * once, a connection in flight may finish within the drain time, and what is still open at the
 * deadline is cut and counted. Real sockets on loopback; the drain ends on the connection's own
 * close, not on a timer, so nothing here waits on time except the deadline case.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { test } from 'node:test';
import { closeAll, listenAll } from '../../../src/proxy/listeners.ts';

async function serve(sockets: Set<net.Socket>) {
  const { servers, bound } = await listenAll([{ host: '127.0.0.1', port: 0 }], (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    s.on('data', (d) => s.write(d));
    // The listeners allow half-open connections (the relays need it): end when the client does.
    s.on('end', () => s.end());
    // The proxies' listeners pause each connection until it is admitted.
    s.resume();
  });
  return { servers, port: bound[0]!.port };
}

async function connect(port: number): Promise<net.Socket> {
  const c = net.connect(port, '127.0.0.1');
  await once(c, 'connect');
  // The server side is accepted once it echoes.
  c.write('x');
  await once(c, 'data');
  return c;
}

test('a connection open when the proxy stops may finish within the drain time; new ones are refused', async () => {
  const sockets = new Set<net.Socket>();
  const { servers, port } = await serve(sockets);
  const c = await connect(port);
  const stopped = closeAll(servers, sockets, 60_000);
  // Refused at once: the listener is closed while the old connection still works.
  const refused = net.connect(port, '127.0.0.1');
  const [err] = (await once(refused, 'error')) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNREFUSED');
  c.write('still here');
  const [echo] = (await once(c, 'data')) as [Buffer];
  assert.equal(echo.toString(), 'still here');
  c.end();
  assert.equal(await stopped, 0, 'nothing was cut: the connection ended by itself');
});

test('what is still open at the drain deadline is cut and counted', async () => {
  const sockets = new Set<net.Socket>();
  const { servers, port } = await serve(sockets);
  const c = await connect(port);
  const closed = once(c, 'close');
  assert.equal(await closeAll(servers, sockets, 50), 1);
  await closed;
});

test('without a drain, open connections are cut at once', async () => {
  const sockets = new Set<net.Socket>();
  const { servers, port } = await serve(sockets);
  const c = await connect(port);
  const closed = once(c, 'close');
  assert.equal(await closeAll(servers, sockets), 1);
  await closed;
});
