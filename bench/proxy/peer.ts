/**
 * Child processes of the proxy benchmark (bench/proxy/main.ts), each on its own event loop:
 *   peer.ts backend <port>      127.0.0.2:<port>; to a ClientHello-sized first chunk it answers
 *                               64 bytes ("ServerHello"); a first chunk starting with "BULK <n>"
 *                               is answered with n MiB; the peer closes when the client does.
 *   peer.ts sni <port> <backend> the SNI proxy on 127.0.0.1:<port> with a policy allowing
 *                               api.example.com on the backend port, the backend address learned
 *                               for it, and the original destination fixed to the backend (the
 *                               loopback has no REDIRECT; the getsockopt call is not measured).
 *   peer.ts inspect <port> <upstream port> <inspection CA dir> <upstream CA file>
 *                               the inspecting proxy on 127.0.0.1:<port>: every connection is
 *                               taken as redirected to 127.0.0.3:<upstream port> (nginx, TLS),
 *                               terminated with a leaf minted from <dir>/ca.crt + ca.key, and
 *                               each request judged against `GET /repos/` (method + prefix).
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
} else if (mode === 'inspect') {
  const [, , , , upstreamText, caDir, upstreamCa] = process.argv;
  await startInspect(port, Number(upstreamText), caDir!, upstreamCa!);
  console.log('ready');
} else {
  throw new Error(`unknown mode ${mode}`);
}

async function startInspect(
  listenPort: number,
  upstreamPort: number,
  caDir: string,
  upstreamCaFile: string,
): Promise<void> {
  const { readFileSync } = await import('node:fs');
  const tls = await import('node:tls');
  const { systemClock } = await import('../../src/core/clock.ts');
  const { parseClientHello } = await import('../../src/proxy/client-hello.ts');
  const { CaStore } = await import('../../src/proxy/inspect/ca.ts');
  const { LeafMinter } = await import('../../src/proxy/inspect/leaf-minter.ts');
  const { Inspector } = await import('../../src/proxy/inspect/inspector.ts');
  const { inspectMetrics } = await import('../../src/proxy/inspect/metrics.ts');
  const { RequestLog } = await import('../../src/proxy/inspect/request-log.ts');
  const { parseHttpRule } = await import('../../src/policy/http-rule.ts');
  const { decideRequest } = await import('../../src/policy/decide-request.ts');
  const store = await CaStore.open({ certFile: `${caDir}/ca.crt`, keyFile: `${caDir}/ca.key` });
  const minter = new LeafMinter(store, {
    maxEntries: 10_000,
    leafValiditySeconds: 86_400,
    clock: systemClock,
  });
  const registry = new Registry();
  const inspector = new Inspector({
    minter,
    upstreamCa: readFileSync(upstreamCaFile, 'utf8'),
    connectTimeoutMs: 5000,
    handshakeTimeoutMs: 5000,
    idleTimeoutMs: 60_000,
    headLimits: { maxHeadBytes: 16_384, maxFields: 100 },
    maxConcurrentStreams: 100,
    // Lines are formatted as in production; the sink discards them.
    requestLog: new RequestLog({ write: () => undefined }, 'all', 'sni-proxy', Date.now),
    metrics: inspectMetrics(registry),
    clock: systemClock,
    log: silentLogger(),
    // Clients believe in port 443 (the original destination); nginx listens on its own port.
    dial: (o) => tls.connect({ ...o, port: upstreamPort }),
  });
  const parsed = parseHttpRule({ methods: ['GET'], path: { prefix: '/repos/' } }, {});
  if (!parsed.rule) throw new Error('bad rule');
  const rules = [{ policy: 'bench/inspect', rule: 0, http: [parsed.rule] }];
  let ids = 0;
  const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true, noDelay: true }, (socket) => {
    socket.on('error', () => {});
    let held: Buffer = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      held = held.length === 0 ? d : Buffer.concat([held, d]);
      const r = parseClientHello(held);
      if (r.kind === 'more') return;
      socket.off('data', onData);
      socket.pause();
      if (r.kind === 'error') return void socket.destroy();
      inspector.handle(
        socket,
        held,
        {
          id: ++ids,
          src: '127.0.0.1',
          identity: 'group:bench',
          sni: r.hello.sni,
          dst: { address: '127.0.0.3', port: 443 },
          alpn: r.hello.alpn,
          judge: (facts) => decideRequest(rules, 'Enforce', facts),
        },
        () => undefined,
      );
    };
    socket.on('data', onData);
    socket.resume();
  });
  await new Promise<void>((r) => server.listen({ port: listenPort, host: '127.0.0.1', backlog: 4096 }, r));
}
