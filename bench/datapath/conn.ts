/**
 * Short TCP connections for bench/datapath (runs inside a network namespace):
 *   server PORT                          accept; write one byte and close (the server closes
 *                                        first, so TIME_WAIT stays on its side and the client
 *                                        never runs out of ports)
 *   client HOST PORT SECONDS CONCURRENCY open connections in CONCURRENCY loops for SECONDS:
 *                                        connect, read the byte, close; print one JSON line
 * Each connection is a new conntrack entry and a new flow through the router's forward chain,
 * the packets that meet namegate's set lookup (an established iperf3 flow never does).
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';

const [mode, ...args] = process.argv.slice(2);

function serve(port: number): void {
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    s.end('x');
  });
  server.listen(port, '0.0.0.0');
}

async function client(host: string, port: number, seconds: number, concurrency: number): Promise<void> {
  let done = 0;
  let failed = 0;
  const deadline = performance.now() + seconds * 1000;
  const once = () =>
    new Promise<boolean>((resolve) => {
      const s = net.connect({ host, port });
      let got = false;
      s.on('data', () => {
        got = true;
      });
      s.on('error', () => undefined);
      s.on('close', () => resolve(got));
    });
  const loop = async () => {
    while (performance.now() < deadline) {
      if (await once()) done++;
      else failed++;
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: concurrency }, loop));
  const elapsed = (performance.now() - start) / 1000;
  console.log(JSON.stringify({ connections: done, failed, seconds: elapsed, perSecond: done / elapsed }));
}

if (mode === 'server') serve(Number(args[0]));
else if (mode === 'client')
  await client(args[0] ?? '', Number(args[1]), Number(args[2]), Number(args[3] ?? 32));
else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
