/**
 * The lab internet's escape targets, one small daemon run inside the internet namespace:
 * - a QUIC-like UDP listener (port 443 on every server address) that echoes who it is;
 * - a DNS-over-TLS-like TCP listener (port 853 on the other resolver's address);
 * - the "other resolver": UDP and TCP DNS on port 53 at another internet address, answering
 *   every A / AAAA query with an address nothing else uses, so a test can see that it answered.
 *
 * Run as `node src/lab/listeners.ts <config.json>`. Every input is bounded: datagrams by the
 * socket, TCP messages by their 16-bit length, connections by count and idle time; a malformed
 * query gets no answer and never stops the daemon.
 */
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import dnsPacket from 'dns-packet';

export interface ListenersConfig {
  readonly quic: { readonly port: number; readonly addresses: readonly string[] };
  readonly dot: { readonly port: number; readonly addresses: readonly string[] };
  readonly dns: {
    readonly port: number;
    readonly addresses: readonly string[];
    readonly answer4: string;
    readonly answer6: string;
  };
}

const MAX_TCP_CONNECTIONS = 64;
const IDLE_MS = 5000;

export function quicReply(local: string): Buffer {
  return Buffer.from(`quic-like reply from ${local}\n`);
}

export function dotGreeting(local: string): Buffer {
  return Buffer.from(`dot-like listener at ${local}\n`);
}

/** The other resolver's answer to one query, or null when the query is not one we answer. */
export function otherResolverReply(query: Buffer, answer4: string, answer6: string): Buffer | null {
  let q: dnsPacket.Packet;
  try {
    q = dnsPacket.decode(query);
  } catch {
    return null;
  }
  if (q.type !== 'query' || !q.questions || q.questions.length !== 1) return null;
  const question = q.questions[0]!;
  const answers: dnsPacket.Answer[] = [];
  if (question.type === 'A') answers.push({ name: question.name, type: 'A', ttl: 60, data: answer4 });
  if (question.type === 'AAAA') answers.push({ name: question.name, type: 'AAAA', ttl: 60, data: answer6 });
  if (question.type === 'TXT')
    answers.push({ name: question.name, type: 'TXT', ttl: 60, data: 'other resolver' });
  return dnsPacket.encode({
    type: 'response',
    id: q.id ?? 0,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
    questions: [question],
    answers,
  });
}

function family(address: string): 'udp4' | 'udp6' {
  return address.includes(':') ? 'udp6' : 'udp4';
}

function listenUdp(
  address: string,
  port: number,
  reply: (msg: Buffer) => Buffer | null,
): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket({ type: family(address), ipv6Only: address.includes(':') });
    sock.on('message', (msg, rinfo) => {
      const out = reply(msg);
      if (out) sock.send(out, rinfo.port, rinfo.address);
    });
    sock.once('error', reject);
    sock.bind(port, address, () => {
      sock.off('error', reject);
      sock.on('error', (err) => console.error(`udp ${address}:${port}: ${err.message}`));
      resolve(sock);
    });
  });
}

function listenTcp(address: string, port: number, onConn: (s: net.Socket) => void): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((s) => {
      s.setTimeout(IDLE_MS, () => s.destroy());
      s.on('error', () => s.destroy());
      onConn(s);
    });
    server.maxConnections = MAX_TCP_CONNECTIONS;
    server.once('error', reject);
    server.listen({ host: address, port, ipv6Only: address.includes(':') }, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

/** DNS over TCP: 2-byte length, then the message; answer each, close on anything odd. */
function serveDnsTcp(s: net.Socket, answer4: string, answer6: string): void {
  let buf = Buffer.alloc(0);
  s.on('data', (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    if (buf.length > 2 + 65535) return void s.destroy();
    while (buf.length >= 2) {
      const len = buf.readUInt16BE(0);
      if (buf.length < 2 + len) return;
      const reply = otherResolverReply(buf.subarray(2, 2 + len), answer4, answer6);
      buf = buf.subarray(2 + len);
      if (!reply) return void s.destroy();
      const head = Buffer.alloc(2);
      head.writeUInt16BE(reply.length);
      s.write(Buffer.concat([head, reply]));
    }
  });
}

export async function startListeners(config: ListenersConfig): Promise<() => Promise<void>> {
  const udp: dgram.Socket[] = [];
  const tcp: net.Server[] = [];
  for (const a of config.quic.addresses) udp.push(await listenUdp(a, config.quic.port, () => quicReply(a)));
  for (const a of config.dot.addresses) {
    tcp.push(await listenTcp(a, config.dot.port, (s) => s.end(dotGreeting(a))));
  }
  const { answer4, answer6 } = config.dns;
  for (const a of config.dns.addresses) {
    udp.push(await listenUdp(a, config.dns.port, (m) => otherResolverReply(m, answer4, answer6)));
    tcp.push(await listenTcp(a, config.dns.port, (s) => serveDnsTcp(s, answer4, answer6)));
  }
  return async () => {
    for (const s of udp) s.close();
    await Promise.all(tcp.map((t) => new Promise<void>((r) => t.close(() => r()))));
  };
}

if (import.meta.main) {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: listeners.ts <config.json>');
    process.exit(2);
  }
  const config = JSON.parse(readFileSync(file, 'utf8')) as ListenersConfig;
  const stop = await startListeners(config);
  console.log(`listeners ready (pid ${process.pid})`);
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => void stop().then(() => process.exit(0)));
  }
}
