/**
 * A real authoritative server for tests: knotd (Debian) on 127.0.0.1 and a free port, with a
 * temporary config, rundir and zone files written by the test. Stopped (and its files removed)
 * by t.after, also when the test fails.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import dnsPacket from 'dns-packet';

export interface Knot {
  readonly host: string;
  readonly port: number;
  readonly dir: string;
  /** Every line knotd printed (for failure messages). */
  readonly output: string[];
  stop(): Promise<void>;
}

/** A port free for both UDP and TCP on 127.0.0.1 at the time of asking. */
/** Is `port` free for both UDP and TCP on `host`? */
async function freeOn(host: string, port: number): Promise<boolean> {
  const udp = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const udpOk = await new Promise<boolean>((resolve) => {
    udp.once('error', () => resolve(false));
    udp.bind(port, host, () => resolve(true));
  });
  if (!udpOk) {
    udp.close();
    return false;
  }
  const tcpOk = await new Promise<boolean>((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host, ipv6Only: host.includes(':') }, () => srv.close(() => resolve(true)));
  });
  udp.close();
  return tcpOk;
}

/**
 * A port free for UDP and TCP on every one of `hosts` (a DNS server binds all four). Taken below
 * the kernel's ephemeral range (32768-60999 by default), so no client socket of this machine (a
 * dig, an upstream socket of another test) can be given it between this check and the bind.
 */
export async function freePort(hosts: string | readonly string[] = '127.0.0.1'): Promise<number> {
  const list = typeof hosts === 'string' ? [hosts] : hosts;
  for (let i = 0; i < 50; i++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    let ok = true;
    for (const h of list) if (ok) ok = await freeOn(h, port);
    if (ok) return port;
  }
  throw new Error('no free port');
}

export interface KnotPlace {
  /** Run knotd inside this network namespace (its 127.0.0.1), at `port`. */
  readonly netns: string;
  readonly port: number;
}

/** Start knotd serving `zones` (origin -> zone file text), here or inside a namespace. */
export async function startKnot(
  t: TestContext,
  zones: Record<string, string>,
  place?: KnotPlace,
): Promise<Knot> {
  const dir = await mkdtemp(path.join(tmpdir(), 'namegate-knot-'));
  const host = '127.0.0.1';
  const port = place ? place.port : await freePort(host);
  const zoneLines: string[] = [];
  for (const [origin, text] of Object.entries(zones)) {
    await writeFile(path.join(dir, `${origin}.zone`), text);
    zoneLines.push(`  - domain: ${origin}`);
  }
  const conf = [
    'server:',
    `    rundir: "${dir}"`,
    `    listen: ${host}@${port}`,
    '    udp-max-payload: 4096',
    'log:',
    '  - target: stderr',
    '    any: info',
    'database:',
    `    storage: "${dir}/db"`,
    'template:',
    '  - id: default',
    `    storage: "${dir}"`,
    '    file: "%s.zone"',
    '    zonefile-load: whole',
    '    journal-content: none',
    'zone:',
    ...zoneLines,
    '',
  ].join('\n');
  const confFile = path.join(dir, 'knot.conf');
  await writeFile(confFile, conf);
  const output: string[] = [];
  const argv = ['knotd', '-c', confFile, '-s', path.join(dir, 'knot.sock')];
  const [cmd, ...args] = place ? ['ip', 'netns', 'exec', place.netns, ...argv] : argv;
  const child: ChildProcess = spawn(cmd as string, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (d: Buffer) => output.push(d.toString()));
  child.stderr?.on('data', (d: Buffer) => output.push(d.toString()));
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  const stop = async () => {
    if (!exited) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exit;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  t.after(stop);
  // Ready when it answers an SOA query for the first zone.
  const first = Object.keys(zones)[0] ?? '.';
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (exited) throw new Error(`knotd exited:\n${output.join('')}`);
    if (place ? await digSoa(place.netns, port, first) : await answersSoa(host, port, first)) break;
    if (Date.now() > deadline) throw new Error(`knotd did not come up:\n${output.join('')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { host, port, dir, output, stop };
}

/** Inside a namespace the test's own sockets cannot reach 127.0.0.1: ask with dig there. */
function digSoa(netns: string, port: number, zone: string): Promise<boolean> {
  return new Promise((resolve) => {
    const dig = spawn(
      'ip',
      [
        'netns',
        'exec',
        netns,
        'dig',
        '+short',
        '+time=1',
        '+tries=1',
        '-p',
        String(port),
        '@127.0.0.1',
        zone,
        'SOA',
      ],
      {
        stdio: ['ignore', 'pipe', 'ignore'],
      },
    );
    let out = '';
    dig.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    dig.on('close', (code) => resolve(code === 0 && out.trim() !== ''));
  });
}

function answersSoa(host: string, port: number, zone: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = dgram.createSocket('udp4');
    const done = (ok: boolean) => {
      clearTimeout(timer);
      sock.close();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 200);
    sock.on('message', (msg) => {
      try {
        const p = dnsPacket.decode(msg);
        done(p.answers !== undefined && p.answers.length > 0);
      } catch {
        done(false);
      }
    });
    sock.on('error', () => done(false));
    sock.send(
      dnsPacket.encode({ type: 'query', id: 1, questions: [{ type: 'SOA', name: zone }] }),
      port,
      host,
    );
  });
}

/** A zone file with an SOA and NS, then `records` (relative or absolute owners). */
export function zone(origin: string, records: string[], defaultTtl = 300): string {
  return [
    `$ORIGIN ${origin}.`,
    `$TTL ${defaultTtl}`,
    `@ SOA ns.${origin}. hostmaster.${origin}. 1 3600 900 604800 60`,
    `@ NS ns.${origin}.`,
    'ns A 192.0.2.53',
    ...records,
    '',
  ].join('\n');
}
