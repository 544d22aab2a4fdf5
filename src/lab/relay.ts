/**
 * A byte relay between two stream endpoints, run as its own process:
 *
 *   node relay.ts <listen>    <connect>      each endpoint is tcp:HOST:PORT or unix:PATH
 *
 * It carries kube-apiserver's port from the root network namespace into a lab namespace
 * without touching either namespace's routes or firewall: a path-named Unix socket is visible
 * from every network namespace (it lives in the file system), so one relay in the root namespace
 * listens on a Unix socket and connects to the API server on loopback, and a second relay inside
 * the lab's node namespace listens on that namespace's loopback and connects to the Unix socket.
 * TLS passes through untouched (the serving certificate names 127.0.0.1, which is where the
 * agent dials). A connection closed on one side is closed on the other, so an API server crash
 * reaches the agent as a broken connection, as it would without the relay.
 *
 * Prints "listening <listen>" on stdout once it accepts connections (with the port bound for
 * tcp:HOST:0); exits on SIGTERM/SIGINT. The lab's Kubernetes node uses the same pair of relays to
 * reach its API server from this machine's root namespace (src/lab/cluster).
 */
import { rmSync } from 'node:fs';
import net from 'node:net';

type Endpoint = { path: string } | { host: string; port: number };

function parse(spec: string | undefined): Endpoint {
  if (spec?.startsWith('unix:') && spec.length > 5) return { path: spec.slice(5) };
  const m = /^tcp:(.+):(\d{1,5})$/.exec(spec ?? '');
  if (m) return { host: m[1] as string, port: Number(m[2]) };
  process.stderr.write(`usage: relay.ts <tcp:HOST:PORT|unix:PATH> <tcp:HOST:PORT|unix:PATH>\n`);
  process.exit(2);
}

const listenSpec = process.argv[2];
const listen = parse(listenSpec);
const target = parse(process.argv[3]);
const open = new Set<net.Socket>();

const server = net.createServer((client) => {
  const upstream = net.connect(target);
  open.add(client);
  open.add(upstream);
  const close = (): void => {
    client.destroy();
    upstream.destroy();
    open.delete(client);
    open.delete(upstream);
  };
  client.on('error', close).on('close', close);
  upstream.on('error', close).on('close', close);
  client.pipe(upstream);
  upstream.pipe(client);
});
// Bounded: a test's API clients open a handful of connections (watches, lists).
server.maxConnections = 256;

if ('path' in listen) rmSync(listen.path, { force: true });
server.listen(listen, () => {
  // tcp:HOST:0 binds a free port: say which one.
  const a = server.address();
  const bound = a && typeof a === 'object' ? `tcp:${a.address}:${a.port}` : listenSpec;
  process.stdout.write(`listening ${bound}\n`);
});
server.on('error', (err) => {
  process.stderr.write(`relay: ${err.message}\n`);
  process.exit(1);
});

const stop = (): void => {
  server.close();
  for (const s of open) s.destroy();
  if ('path' in listen) rmSync(listen.path, { force: true });
  process.exit(0);
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
