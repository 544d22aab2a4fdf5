/**
 * Child processes of the proxy benchmark (bench/proxy/main.ts), each on its own event loop:
 *   peer.ts backend <port>      127.0.0.2:<port>; to a ClientHello-sized first chunk it answers
 *                               64 bytes ("ServerHello"); a first chunk starting with "BULK <n>"
 *                               is answered with n MiB; the peer closes when the client does.
 *   peer.ts sni <port> <backend> the SNI proxy on 127.0.0.1:<port> with a policy allowing
 *                               api.example.com on the backend port, the backend address learned
 *                               for it, and the original destination fixed to the backend (the
 *                               loopback has no REDIRECT; the getsockopt call is not measured).
 * Each prints "ready" when listening.
 */
import net from 'node:net';
import { Registry } from 'prom-client';
import { proxySettings } from '../../src/config/proxy.ts';
import { validateNative } from '../../src/formats/native.ts';
import { StaticGroups } from '../../src/identity/static-groups.ts';
import { silentLogger } from '../../src/observe/log.ts';
import { CompiledPolicies } from '../../src/policy/compile.ts';
import { SniProxy } from '../../src/proxy/sni-proxy.ts';

const [mode, portText, backendText] = process.argv.slice(2);
const port = Number(portText);

if (mode === 'backend') {
  const reply = Buffer.alloc(64, 0x16);
  const mib = Buffer.alloc(1024 * 1024, 7);
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', (d: Buffer) => {
      const m = /BULK (\d+)\r\n/.exec(d.toString('latin1'));
      if (!m) {
        s.write(reply);
        return;
      }
      let left = Number(m[1]);
      const pump = () => {
        while (left > 0) {
          left--;
          if (!s.write(mib)) return void s.once('drain', pump);
        }
        s.end();
      };
      pump();
    });
    s.on('end', () => s.end());
  });
  server.listen({ port, host: '127.0.0.2', backlog: 4096 }, () => console.log('ready'));
} else if (mode === 'sni') {
  const backend = Number(backendText);
  const r = validateNative({
    apiVersion: 'namegate.dev/v1alpha1',
    kind: 'ClusterEgressPolicy',
    metadata: { name: 'bench' },
    spec: {
      egress: [
        {
          toFQDNs: [{ name: 'api.example.com' }],
          ports: [{ port: backend, protocol: 'TCP' }],
          verify: 'SNI',
        },
      ],
    },
  });
  if (!r.policy) throw new Error(JSON.stringify(r.errors));
  const set = new CompiledPolicies([r.policy]);
  const dst = { address: '127.0.0.2', port: backend };
  await SniProxy.start({
    policies: { current: () => set },
    identities: new StaticGroups([
      { name: 'bench', namespace: 'default', labels: {}, cidrs: ['127.0.0.1/32'] },
    ]),
    learned: { holds: (_s, name, ip) => name === 'api.example.com' && ip === '127.0.0.2' },
    originalDestination: () => dst,
    log: silentLogger(),
    registry: new Registry(),
    // Lines are formatted as in production; the sink discards them (haproxy logs nothing here).
    flowLog: { write: () => undefined },
    settings: proxySettings({
      maxConnections: 100_000,
      maxConnectionsPerSource: 100_000,
      sni: { listen: [`127.0.0.1:${port}`] },
    }),
  });
  console.log('ready');
} else {
  throw new Error(`unknown mode ${mode}`);
}
