/**
 * A tiny traffic peer for datapath tests, run inside a namespace:
 *   server NAME PORT...          TCP and UDP echo on every port (dual stack); replies "NAME:<line>"
 *   tcp HOST PORT TIMEOUT_MS [LOCAL]  connect (from LOCAL), send a line, wait for the echo
 *   udp HOST PORT TIMEOUT_MS [LOCAL]  send a datagram (from LOCAL), wait for the echo
 *   session HOST PORT TIMEOUT_MS connect, then one exchange per stdin line ("ping")
 *   streamer PORT                a UDP server that, once a peer sent it a datagram, echoes each
 *                                datagram and also sends that peer one datagram every 50 ms
 *                                (for at most 60 s): a peer that keeps sending first
 *   udpclient HOST PORT          one UDP socket; stdin "send" sends a datagram, "count" prints
 *                                {"result":"count","received":N,"echoes":E} and resets both
 * Results are single JSON lines on stdout: {"result":"ok"|"timeout"|"error"|"closed", "reply"?}.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import readline from 'node:readline';

const [mode, ...args] = process.argv.slice(2);

function out(v: object): void {
  process.stdout.write(`${JSON.stringify(v)}\n`);
}

async function server(name: string, ports: number[]): Promise<void> {
  for (const port of ports) {
    const srv = net.createServer((sock) => {
      sock.on('error', () => undefined);
      sock.setEncoding('utf8');
      let buf = '';
      sock.on('data', (d: string) => {
        buf += d;
        for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
          sock.write(`${name}:${buf.slice(0, i)}\n`);
          buf = buf.slice(i + 1);
        }
      });
    });
    await new Promise<void>((r) => srv.listen({ port, host: '::', ipv6Only: false }, r));
    const udp = dgram.createSocket({ type: 'udp6', ipv6Only: false });
    udp.on('message', (msg, rinfo) =>
      udp.send(`${name}:${msg.toString().trim()}\n`, rinfo.port, rinfo.address),
    );
    await new Promise<void>((r) => udp.bind(port, '::', r));
  }
  out({ result: 'ready' });
}

function tcp(host: string, port: number, timeoutMs: number, local?: string): void {
  const sock = net.connect({ host, port, ...(local ? { localAddress: local } : {}) });
  const timer = setTimeout(() => {
    out({ result: 'timeout' });
    process.exit(0);
  }, timeoutMs);
  sock.setEncoding('utf8');
  sock.on('connect', () => sock.write('hello\n'));
  sock.on('data', (d: string) => {
    clearTimeout(timer);
    out({ result: 'ok', reply: d.trim() });
    process.exit(0);
  });
  sock.on('error', (e) => {
    clearTimeout(timer);
    out({ result: 'error', error: e.message });
    process.exit(0);
  });
}

function udp(host: string, port: number, timeoutMs: number, local?: string): void {
  const sock = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  if (local) sock.bind({ address: local, port: 0 });
  const timer = setTimeout(() => {
    out({ result: 'timeout' });
    process.exit(0);
  }, timeoutMs);
  sock.on('message', (m) => {
    clearTimeout(timer);
    out({ result: 'ok', reply: m.toString().trim() });
    process.exit(0);
  });
  sock.on('error', (e) => {
    out({ result: 'error', error: e.message });
    process.exit(0);
  });
  sock.send('hello\n', port, host);
}

function session(host: string, port: number, timeoutMs: number): void {
  const sock = net.connect({ host, port });
  sock.setEncoding('utf8');
  let pending: ((v: string | null) => void) | null = null;
  let closed = false;
  sock.on('data', (d: string) => {
    pending?.(d.trim());
    pending = null;
  });
  sock.on('close', () => {
    closed = true;
    pending?.(null);
  });
  sock.on('error', () => undefined);
  const connectTimer = setTimeout(() => {
    out({ result: 'timeout' });
    process.exit(0);
  }, timeoutMs);
  sock.on('connect', () => {
    clearTimeout(connectTimer);
    out({ result: 'connected' });
    const rl = readline.createInterface({ input: process.stdin });
    // "ping" waits the session's timeout for the echo; "ping MS" waits MS (an echo expected
    // not to come). Only the first word goes on the wire.
    rl.on('line', (command) => {
      if (closed) return out({ result: 'closed' });
      const [line = '', wait] = command.split(' ');
      const timer = setTimeout(
        () => {
          pending = null;
          out({ result: 'timeout' });
        },
        Number(wait) > 0 ? Number(wait) : timeoutMs,
      );
      pending = (reply) => {
        clearTimeout(timer);
        out(reply === null ? { result: 'closed' } : { result: 'ok', reply });
      };
      sock.write(`${line}\n`);
    });
    rl.on('close', () => process.exit(0));
  });
}

function streamer(port: number): void {
  const sock = dgram.createSocket({ type: 'udp6', ipv6Only: false });
  const peers = new Map<string, NodeJS.Timeout>();
  sock.on('message', (msg, rinfo) => {
    sock.send(`echo:${msg.toString().trim()}`, rinfo.port, rinfo.address);
    const key = `${rinfo.address}|${rinfo.port}`;
    if (peers.has(key)) return;
    const started = Date.now();
    const timer = setInterval(() => {
      if (Date.now() - started > 60_000) return clearInterval(timer);
      sock.send('tick', rinfo.port, rinfo.address);
    }, 50);
    peers.set(key, timer);
  });
  sock.bind(port, '::', () => out({ result: 'ready' }));
}

function udpclient(host: string, port: number): void {
  const sock = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  let received = 0;
  let echoes = 0;
  sock.on('message', (m) => {
    if (m.toString().startsWith('echo:')) echoes++;
    else received++;
  });
  sock.on('error', () => undefined);
  sock.bind(0, () => out({ result: 'ready' }));
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    if (line === 'send') sock.send('hello', port, host);
    else if (line === 'count') {
      out({ result: 'count', received, echoes });
      received = 0;
      echoes = 0;
    }
  });
  rl.on('close', () => process.exit(0));
}

const num = (s: string | undefined) => Number(s);
if (mode === 'server') void server(args[0] ?? 'peer', args.slice(1).map(Number));
else if (mode === 'tcp') tcp(args[0] ?? '', num(args[1]), num(args[2]), args[3]);
else if (mode === 'udp') udp(args[0] ?? '', num(args[1]), num(args[2]), args[3]);
else if (mode === 'streamer') streamer(num(args[0]));
else if (mode === 'udpclient') udpclient(args[0] ?? '', num(args[1]));
else if (mode === 'session') session(args[0] ?? '', num(args[1]), num(args[2]));
else {
  process.stderr.write(`unknown mode ${mode}\n`);
  process.exit(2);
}
