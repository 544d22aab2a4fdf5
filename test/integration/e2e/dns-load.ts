/**
 * A steady DNS + connection load for the soak test (run inside a pod namespace):
 *   node dns-load.ts <server> <port> <qps> <seconds> <name[,name...]> <connectPort> <connectEvery>
 * Sends `qps` A queries per second (the names in turn) for `seconds`, and after every
 * `connectEvery`-th answer that carries an address opens a TCP connection to the first address
 * on `connectPort` (0: none), closing it at once. Bounded: at most 64 connections in progress,
 * each given 2 s. Prints "started", then one JSON line at the end:
 *   {"sent":1600,"replies":1600,"rcodes":{"0":1600},"connOk":380,"connFailed":20}
 */
import dgram from 'node:dgram';
import { isIP, Socket } from 'node:net';
import dnsPacket from 'dns-packet';

const [
  server = '',
  portText = '53',
  qpsText = '0',
  secondsText = '0',
  namesText = '',
  cportText = '0',
  everyText = '1',
] = process.argv.slice(2);
const port = Number(portText);
const qps = Math.min(Number(qpsText), 5000);
const seconds = Math.min(Number(secondsText), 600);
const names = namesText.split(',').filter((n) => n.length > 0);
const connectPort = Number(cportText);
const connectEvery = Math.max(1, Number(everyText));
if (!isIP(server) || !(port > 0) || !(qps > 0) || !(seconds > 0) || names.length === 0) {
  process.stderr.write(
    'usage: dns-load.ts <server> <port> <qps> <seconds> <names> <connectPort> <connectEvery>\n',
  );
  process.exit(2);
}

const socket = dgram.createSocket(isIP(server) === 6 ? 'udp6' : 'udp4');
await new Promise<void>((r) => socket.bind(0, r));
let sent = 0;
let replies = 0;
let answered = 0;
let connOk = 0;
let connFailed = 0;
let connecting = 0;
const rcodes: Record<string, number> = {};

function connect(address: string): void {
  if (connecting >= 64) {
    connFailed++;
    return;
  }
  connecting++;
  const s = new Socket();
  let done = false;
  const finish = (ok: boolean) => {
    if (done) return;
    done = true;
    connecting--;
    if (ok) connOk++;
    else connFailed++;
    s.destroy();
  };
  s.setTimeout(2000, () => finish(false));
  s.on('error', () => finish(false));
  s.connect(connectPort, address, () => finish(true));
}

socket.on('message', (m: Buffer) => {
  replies++;
  const rcode = String((m[3] ?? 0) & 0x0f);
  rcodes[rcode] = (rcodes[rcode] ?? 0) + 1;
  let address: string | undefined;
  try {
    const a = dnsPacket.decode(m).answers?.find((r) => r.type === 'A') as { data?: unknown } | undefined;
    address = typeof a?.data === 'string' ? a.data : undefined;
  } catch {
    return;
  }
  if (address && connectPort > 0 && ++answered % connectEvery === 0) connect(address);
});
socket.on('error', () => {});

process.stdout.write('started\n');
const started = performance.now();
await new Promise<void>((done) => {
  const timer = setInterval(() => {
    const elapsed = (performance.now() - started) / 1000;
    const due = Math.min(Math.floor(elapsed * qps), Math.floor(seconds * qps));
    while (sent < due) {
      const name = names[sent % names.length]!;
      const q = dnsPacket.encode({
        type: 'query',
        id: Math.floor(Math.random() * 65536),
        flags: dnsPacket.RECURSION_DESIRED,
        questions: [{ type: 'A', name }],
      });
      sent++;
      socket.send(q, port, server);
    }
    if (elapsed >= seconds) {
      clearInterval(timer);
      done();
    }
  }, 10);
});
// Late replies and connections in progress: wait while they keep coming. A fixed deadline cut
// the count short on a loaded machine, where replies arrive late but arrive; only 3 s without
// any progress ends the wait (a datagram lost for good never gets its reply).
let progress = -1;
let quietSince = performance.now();
while ((connecting > 0 || replies < sent) && performance.now() - quietSince < 3000) {
  const now = replies + connOk + connFailed;
  if (now !== progress) {
    progress = now;
    quietSince = performance.now();
  }
  await new Promise((r) => setTimeout(r, 50));
}
socket.close();
process.stdout.write(`${JSON.stringify({ sent, replies, rcodes, connOk, connFailed })}\n`);
