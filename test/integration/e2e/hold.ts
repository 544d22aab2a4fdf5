/**
 * A long-lived TCP connection for the end-to-end tests, run with node inside a lab namespace:
 *
 *   hold.ts server <address> <port>   echo server (address "::" listens on both families);
 *                                      prints "listening" once bound
 *   hold.ts client <address> <port>   connects, prints "connected", then sends every stdin line
 *                                      and prints every line the server echoes; prints
 *                                      "closed <why>" and exits when the connection ends
 *
 * The test keeps one client open across an element's expiry, an agent restart or a policy
 * removal, and asks it to ping: an echoed line proves the established flow still passes.
 * Bounded: lines up to 256 bytes, at most 64 connections on the server.
 */
import net from 'node:net';
import { createInterface } from 'node:readline';

const MAX_LINE = 256;

function server(host: string, port: number): void {
  const srv = net.createServer((s) => {
    s.on('error', () => s.destroy());
    let pending = '';
    s.on('data', (chunk: Buffer) => {
      pending += chunk.toString('utf8');
      if (pending.length > MAX_LINE * 4) return void s.destroy();
      let i = pending.indexOf('\n');
      while (i >= 0) {
        s.write(`${pending.slice(0, i + 1)}`);
        pending = pending.slice(i + 1);
        i = pending.indexOf('\n');
      }
    });
  });
  srv.maxConnections = 64;
  srv.on('error', (err) => {
    console.error(`hold server: ${err.message}`);
    process.exit(1);
  });
  srv.listen({ host, port, ipv6Only: false }, () => console.log('listening'));
}

function client(host: string, port: number): void {
  const s = net.connect({ host, port });
  s.setNoDelay(true);
  let closed = false;
  const end = (why: string) => {
    if (closed) return;
    closed = true;
    console.log(`closed ${why}`);
    process.exit(0);
  };
  s.on('connect', () => console.log('connected'));
  let pending = '';
  s.on('data', (chunk: Buffer) => {
    pending += chunk.toString('utf8');
    let i = pending.indexOf('\n');
    while (i >= 0) {
      console.log(pending.slice(0, i).slice(0, MAX_LINE));
      pending = pending.slice(i + 1);
      i = pending.indexOf('\n');
    }
    if (pending.length > MAX_LINE) pending = '';
  });
  s.on('error', (err) => end(err.message));
  s.on('close', () => end('by peer'));
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    if (!closed) s.write(`${line.slice(0, MAX_LINE)}\n`);
  });
  rl.on('close', () => {
    s.destroy();
    end('stdin closed');
  });
}

if (import.meta.main) {
  const [mode, host, portText] = process.argv.slice(2);
  const port = Number(portText);
  if (
    (mode !== 'server' && mode !== 'client') ||
    !host ||
    !Number.isInteger(port) ||
    port < 1 ||
    port > 65535
  ) {
    console.error('usage: hold.ts server|client <address> <port>');
    process.exit(2);
  }
  if (mode === 'server') server(host, port);
  else client(host, port);
}
