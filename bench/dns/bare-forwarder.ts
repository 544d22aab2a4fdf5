/**
 * The floor for a Node.js DNS forwarder (benchmark helper, not a server to run): one UDP
 * socket for clients, one connected socket to the upstream, an ID map, nothing else (no
 * parsing, no policy, no validation beyond the ID, no logs, no metrics). What it costs per
 * query is what Node's dgram and the kernel cost; namegate's proxy pays that plus its own work.
 *
 *   node bench/dns/bare-forwarder.ts LISTEN_PORT UPSTREAM_PORT
 */
import dgram from 'node:dgram';

const [listenPort, upstreamPort] = process.argv.slice(2).map(Number);
if (!listenPort || !upstreamPort) throw new Error('usage: bare-forwarder.ts LISTEN_PORT UPSTREAM_PORT');

interface Waiting {
  readonly id: number;
  readonly port: number;
  readonly address: string;
}
const waiting = new Map<number, Waiting>();
let next = 0;

const up = dgram.createSocket('udp4');
const down = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
up.connect(upstreamPort, '127.0.0.1');
up.on('message', (msg) => {
  const id = (msg[0]! << 8) | msg[1]!;
  const w = waiting.get(id);
  if (!w) return;
  waiting.delete(id);
  msg[0] = w.id >> 8;
  msg[1] = w.id & 0xff;
  down.send(msg, w.port, w.address);
});
down.on('message', (msg, rinfo) => {
  const id = next;
  next = (next + 1) & 0xffff;
  waiting.set(id, { id: (msg[0]! << 8) | msg[1]!, port: rinfo.port, address: rinfo.address });
  msg[0] = id >> 8;
  msg[1] = id & 0xff;
  up.send(msg);
});
down.bind(listenPort, '127.0.0.1');
process.once('SIGTERM', () => process.exit(0));
