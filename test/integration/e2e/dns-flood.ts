/**
 * A bounded UDP DNS flood for the end-to-end tests (run inside a pod namespace):
 *   node dns-flood.ts <server> <port> <count> <name[,name...]> [sockets] [announce]
 * Sends up to `count` queries (A, the names in turn, random IDs) as fast as the sockets take
 * them, stops early when a line arrives on stdin, then waits one second for late replies and
 * prints one JSON line:
 *   {"sent":20000,"sendErrors":0,"replies":4312,"rcodes":{"0":312,"5":4000},"ms":812,"stoppedEarly":true}
 * `sent` counts the queries the kernel took; `sendErrors` the ones it refused (never on the wire).
 * It prints "started" when the first query leaves and "flooding" once `announce` queries have
 * left (the limits have had something to cut), so a test can act during the flood and then stop
 * it; stoppedEarly says the flood was still going when it was told to stop.
 */
import dgram from 'node:dgram';
import { isIP } from 'node:net';

const [server = '', portText = '53', countText = '0', namesText = '', socketsText = '4', announceText = '0'] =
  process.argv.slice(2);
const announce = Math.max(0, Number(announceText) || 0);
const port = Number(portText);
const count = Math.min(Number(countText), 1_000_000);
const names = namesText.split(',').filter((n) => n.length > 0);
const socketCount = Math.max(1, Math.min(Number(socketsText), 64));
if (!isIP(server) || !(port > 0) || !(count > 0) || names.length === 0) {
  process.stderr.write('usage: dns-flood.ts <server> <port> <count> <name[,name...]> [sockets]\n');
  process.exit(2);
}

function query(name: string): Buffer {
  const labels = name
    .split('.')
    .map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'ascii')]));
  const header = Buffer.alloc(12);
  header.writeUInt16BE(Math.floor(Math.random() * 65536), 0);
  header.writeUInt16BE(0x0100, 2); // RD
  header.writeUInt16BE(1, 4); // QDCOUNT
  return Buffer.concat([header, ...labels, Buffer.from([0, 0, 1, 0, 1])]);
}

const family = isIP(server) === 6 ? 'udp6' : 'udp4';
const sockets = Array.from({ length: socketCount }, () => dgram.createSocket(family));
let replies = 0;
const rcodes: Record<string, number> = {};
for (const s of sockets) {
  s.on('message', (m: Buffer) => {
    replies++;
    const rcode = String((m[3] ?? 0) & 0x0f);
    rcodes[rcode] = (rcodes[rcode] ?? 0) + 1;
  });
  s.on('error', () => {});
}
await Promise.all(sockets.map((s) => new Promise<void>((r) => s.bind(0, r))));

let stop = false;
process.stdin.on('data', () => {
  stop = true;
});
process.stdin.on('error', () => {});
const started = performance.now();
let sent = 0;
let sendErrors = 0;
let inFlight = 0;
/** Sends handed to the kernel but not yet confirmed: a bound on the memory libuv queues. */
const MAX_IN_FLIGHT = 512;
/** Sends per turn of the event loop: between turns it reads stdin, so `stop` is seen at once. */
const BATCH = 256;
process.stdout.write('started\n');
await new Promise<void>((done) => {
  let draining = false;
  const onSent = (err: Error | null) => {
    inFlight--;
    if (err) sendErrors++;
    if (draining && inFlight === 0) done();
  };
  const turn = () => {
    if (stop || sent >= count) {
      draining = true;
      if (inFlight === 0) done();
      return;
    }
    const before = sent;
    for (let i = 0; i < BATCH && sent < count && inFlight < MAX_IN_FLIGHT; i++) {
      const s = sockets[sent % socketCount]!;
      sent++;
      inFlight++;
      s.send(query(names[sent % names.length]!), port, server, onSent);
    }
    if (before < announce && sent >= announce) process.stdout.write('flooding\n');
    // A timer, not setImmediate: it lets the loop poll for I/O (stdin) between batches.
    setTimeout(turn, 0);
  };
  turn();
});
const ms = Math.round(performance.now() - started);
const stoppedEarly = sent < count;
process.stdin.destroy();
await new Promise((r) => setTimeout(r, 1000));
for (const s of sockets) s.close();
process.stdout.write(
  `${JSON.stringify({ sent: sent - sendErrors, sendErrors, replies, rcodes, ms, stoppedEarly })}\n`,
);
