/**
 * A readiness probe over a Unix socket, for an exec probe:
 *
 *   node probe-socket.ts <socket> [path]     exit 0 on HTTP 200, else 1 (within 2 s)
 *
 * No imports beyond node:http: it starts in tens of milliseconds. The chart's agent uses it so
 * that the kubelet asks this pod's agent, not whichever agent the kernel picks on the shared
 * host-network port (HealthServer.listenSocket).
 */
import { request } from 'node:http';

const [socketPath, path = '/readyz'] = process.argv.slice(2);
if (!socketPath) {
  process.stderr.write('usage: probe-socket.ts <socket> [path]\n');
  process.exit(2);
}
const req = request({ socketPath, path, timeout: 2000 }, (res) => {
  res.resume();
  process.exit(res.statusCode === 200 ? 0 : 1);
});
req.on('timeout', () => req.destroy(new Error('timeout')));
req.on('error', (err) => {
  process.stderr.write(`${err.message}\n`);
  process.exit(1);
});
req.end();
