/**
 * Runs the SNI proxy and the CONNECT proxy inside a network namespace for the integration tests
 * (a Node process cannot change namespace, so the test starts this one with `ip netns exec`).
 *   node proxy-host.ts '<json config>'
 * Config: { sniListen, connectListen, originalDst: 'addon'|'conntrack', policies: [policy docs],
 *           groups: [SourceGroup], learned: [[source, name, ip]], dns: {port, records: {name: [ip]}} }
 * Prints {"result":"ready"} once listening, then every flow-log line, on stdout. A tiny
 * authoritative DNS server on 127.0.0.1:<dns.port> answers the CONNECT proxy's lookups.
 */
import dgram from 'node:dgram';
import dnsPacket from 'dns-packet';
import { Registry } from 'prom-client';
import { proxySettings } from '../../../src/config/proxy.ts';
import { RandomIds } from '../../../src/dns/random.ts';
import { UpstreamClient } from '../../../src/dns/upstream.ts';
import { validateNative } from '../../../src/formats/native.ts';
import { type SourceGroup, StaticGroups } from '../../../src/identity/static-groups.ts';
import { silentLogger } from '../../../src/observe/log.ts';
import { CompiledPolicies } from '../../../src/policy/compile.ts';
import type { Policy } from '../../../src/policy/model.ts';
import { ConnectProxy } from '../../../src/proxy/connect-proxy.ts';
import { originalDestinationFor } from '../../../src/proxy/original-dst.ts';
import { UpstreamResolver } from '../../../src/proxy/resolver.ts';
import { SniProxy } from '../../../src/proxy/sni-proxy.ts';

interface HostConfig {
  sniListen: string[];
  connectListen: string[];
  originalDst: 'addon' | 'conntrack';
  policies: unknown[];
  groups: SourceGroup[];
  learned: Array<[string, string, string]>;
  dns: { port: number; records: Record<string, string[]> };
}

const cfg = JSON.parse(process.argv[2] ?? '{}') as HostConfig;
const out = { write: (l: string) => process.stdout.write(l) };

const policies: Policy[] = cfg.policies.map((doc) => {
  const r = validateNative(doc);
  if (!r.policy) throw new Error(JSON.stringify(r.errors));
  return r.policy;
});
const set = new CompiledPolicies(policies);
const learned = new Set(cfg.learned.map(([s, n, ip]) => `${s}|${n}|${ip}`));
const identities = new StaticGroups(cfg.groups);
const registry = new Registry();

const dns = dgram.createSocket('udp4');
dns.on('message', (msg, rinfo) => {
  try {
    const q = dnsPacket.decode(msg);
    const question = q.questions![0]!;
    const ips = cfg.dns.records[question.name] ?? [];
    const answers = ips
      .filter((ip) => (question.type === 'AAAA') === ip.includes(':'))
      .map((ip) => ({ type: question.type, name: question.name, ttl: 60, data: ip }) as dnsPacket.Answer);
    dns.send(
      dnsPacket.encode({ type: 'response', id: q.id, flags: 0x8180, questions: q.questions!, answers }),
      rinfo.port,
      rinfo.address,
    );
  } catch {
    // not a query
  }
});
await new Promise<void>((r) => dns.bind(cfg.dns.port, '127.0.0.1', r));

const od = originalDestinationFor(cfg.originalDst);
if (od.method === 'none') throw new Error(`no original destination method: ${od.problem}`);
const sni = await SniProxy.start({
  policies: { current: () => set },
  identities,
  learned: { holds: (s, n, ip) => learned.has(`${s}|${n}|${ip}`) },
  originalDestination: od.lookup,
  originalDestinationMethod: od.method,
  log: silentLogger(),
  registry,
  flowLog: out,
  settings: proxySettings({ peekTimeoutMs: 2000, sni: { listen: cfg.sniListen } }),
});
const upstream = new UpstreamClient({
  servers: [{ host: '127.0.0.1', port: cfg.dns.port, family: 4 }],
  timeoutMs: 1000,
  attempts: 2,
  socketsPerServer: 2,
  queriesPerSocket: 100,
  tcpFallback: false,
  ids: new RandomIds(),
  now: () => performance.now(),
});
const connect = await ConnectProxy.start({
  settings: proxySettings({ connect: { listen: cfg.connectListen } }),
  policies: { current: () => set },
  identities,
  resolver: new UpstreamResolver(upstream),
  log: silentLogger(),
  registry,
  flowLog: out,
});
process.stdout.write(`${JSON.stringify({ result: 'ready', method: od.method })}\n`);
process.on('SIGTERM', async () => {
  await sni.stop();
  await connect.stop();
  upstream.close();
  dns.close();
  process.exit(0);
});
