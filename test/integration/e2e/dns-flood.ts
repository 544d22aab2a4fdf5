/**
 * A bounded UDP DNS flood for the end-to-end tests (run inside a pod namespace):
 *   node dns-flood.ts <server> <port> <count> <name[,name...]> [sockets]
 * Sends up to `count` queries (A, the names in turn, random IDs) as fast as the sockets take
 * them, stops early when a line arrives on stdin, then waits one second for late replies and
 * prints one JSON line:
 *   {"sent":20000,"sendErrors":0,"replies":4312,"rcodes":{"0":312,"5":4000},"ms":812,"stoppedEarly":true}
 * `sent` counts the queries the kernel took; `sendErrors` the ones it refused (never on the wire).
 * It prints "started" when the first query leaves, so a test can act during the flood and then
 * stop it; stoppedEarly says the flood was still going when it was told to stop.
 */
import dgram from 'node:dgram';
import { isIP } from 'node:net';

const [server = '', portText = '53', countText = '0', namesText = '', socketsText = '4'] =
  process.argv.slice(2);
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
const MAX_IN_FLIGHT = 512;
process.stdout.write('started\n');
await new Promise<void>((done) => {
  const pump = () => {
    while (sent < count && !stop && inFlight < MAX_IN_FLIGHT) {
      const s = sockets[sent % socketCount]!;
      const q = query(names[sent % names.length]!);
      sent++;
      inFlight++;
      s.send(q, port, server, (err) => {
        inFlight--;
        if (err) sendErrors++;
        if (sent < count && !stop) setImmediate(pump);
        else if (inFlight === 0) done();
      });
    }
    // Told to stop while nothing was in flight: no send callback is left to finish the flood.
    if ((sent >= count || stop) && inFlight === 0) done();
  };
  pump();
});
const ms = Math.round(performance.now() - started);
const stoppedEarly = sent < count;
process.stdin.destroy();
await new Promise((r) => setTimeout(r, 1000));
for (const s of sockets) s.close();
process.stdout.write(
  `${JSON.stringify({ sent: sent - sendErrors, sendErrors, replies, rcodes, ms, stoppedEarly })}\n`,
);
