/**
 * Part 2 of the proxy benchmark: TLS inspection against Squid with ssl-bump (Debian
 * squid-openssl), on the same upstream (nginx, TLS, a 1 KiB answer, one worker), from the same
 * load generator. Each proxy has its own CA made here; the clients trust it.
 *   ours   the inspecting SNI proxy (bench/proxy/peer.ts inspect): the connection arrives as if
 *          redirected (original destination fixed), TLS is terminated with a minted leaf, every
 *          request is judged against an HTTP rule (method + path prefix), bytes relayed upstream
 *          over the proxy's own verified TLS connection
 *   squid  explicit proxy (CONNECT, then `ssl_bump bump`), one worker, memory cert cache and
 *          security_file_certgen, no caching (`cache deny all`), access log off; the CONNECT
 *          exchange is part of each new connection for squid, as it is how squid is deployed
 *          without NAT interception (loopback has none)
 * Measured in alternating rounds (medians):
 *   rps         C keep-alive connections, each sending GET after GET, for SECONDS
 *   handshakes  C loops of new connection + TLS handshake + one request + close (warm certificate)
 *   cold        sequential first requests to names never seen before (cold certificate), p99
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { makeCa, makeLeaf } from '../../test/support/openssl-certs.ts';

export interface InspectTarget {
  readonly name: 'ours' | 'squid';
  readonly port: number;
  /** PEM of the CA the client must trust. */
  readonly ca: Buffer;
  /** Squid: CONNECT first. */
  readonly connect: boolean;
}

export interface InspectFigures {
  readonly rps: number;
  readonly handshakesPerS: number;
  readonly coldP99: number;
  readonly coldP50: number;
  readonly errors: number;
}

export { makeCa };

export const BENCH_DOMAIN = 'bench.test';
const BODY = 'x'.repeat(1024);

/** nginx on 127.0.0.3:<port> with a *.bench.test certificate from `ca`; 1 KiB per request. */
export function nginxUpstream(
  dir: string,
  ca: { cert: string; key: string },
  port: number,
): { cmd: string; args: string[] } {
  const { cert, key } = makeLeaf(dir, ca, [`*.${BENCH_DOMAIN}`], 'upstream');
  mkdirSync(path.join(dir, 'nginx-tmp'), { recursive: true });
  const conf = path.join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `worker_processes 1;
daemon off;
master_process off;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log error;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/nginx-tmp;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  ssl_session_cache off;
  ssl_session_tickets off;
  server {
    listen 127.0.0.3:${port} ssl http2 backlog=4096;
    ssl_certificate ${cert};
    ssl_certificate_key ${key};
    location / { default_type text/plain; return 200 "${BODY}"; }
  }
}
`,
  );
  return { cmd: 'nginx', args: ['-c', conf, '-p', dir] };
}

/** Squid 5 with ssl-bump on 127.0.0.1:<port>; names of bench.test resolve to the upstream. */
export function squidConfig(
  dir: string,
  ca: { cert: string; key: string },
  upstreamCa: string,
  port: number,
  upstreamPort: number,
): { cmd: string; args: string[] } {
  const db = path.join(dir, 'ssl_db');
  execFileSync('/usr/lib/squid/security_file_certgen', ['-c', '-s', db, '-M', '64MB'], { stdio: 'ignore' });
  const hosts = path.join(dir, 'hosts');
  const names = ['api', ...Array.from({ length: 4000 }, (_, i) => `cold${i}`)].map(
    (n) => `127.0.0.3 ${n}.${BENCH_DOMAIN}`,
  );
  writeFileSync(hosts, `${names.join('\n')}\n`);
  const conf = path.join(dir, 'squid.conf');
  writeFileSync(
    conf,
    `http_port 127.0.0.1:${port} ssl-bump tls-cert=${ca.cert} tls-key=${ca.key} generate-host-certificates=on dynamic_cert_mem_cache_size=64MB
sslcrtd_program /usr/lib/squid/security_file_certgen -s ${db} -M 64MB
sslcrtd_children 8 startup=2 idle=1
acl step1 at_step SslBump1
acl bench_port port ${upstreamPort}
acl CONNECT method CONNECT
http_access allow CONNECT bench_port
http_access allow all
ssl_bump peek step1
ssl_bump bump all
tls_outgoing_options cafile=${upstreamCa}
hosts_file ${hosts}
dns_nameservers 127.0.0.1
cache deny all
cache_mem 8 MB
access_log none
cache_log ${dir}/cache.log
pid_filename ${dir}/squid.pid
coredump_dir ${dir}
workers 1
max_filedescriptors 16384
client_persistent_connections on
server_persistent_connections on
shutdown_lifetime 1 seconds
`,
  );
  // Squid drops to the `proxy` user: it must read the CA and write its own files.
  for (const f of [dir, db]) chmodSync(f, 0o777);
  execFileSync('chown', ['-R', 'proxy:proxy', dir]);
  execFileSync('chmod', ['755', path.dirname(dir)]);
  return { cmd: 'squid', args: ['-N', '-f', conf] };
}

/** Open a verified TLS connection to `name` through the target (CONNECT first for squid). */
function open(t: InspectTarget, name: string, upstreamPort: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const raw = net.connect({ host: '127.0.0.1', port: t.port, noDelay: true });
    raw.once('error', reject);
    raw.setTimeout(STALL_MS, () => {
      raw.destroy();
      reject(new Error('stalled'));
    });
    const handshake = () => {
      const s = tls.connect({ socket: raw, servername: name, ca: t.ca, ALPNProtocols: ['http/1.1'] }, () =>
        resolve(s),
      );
      s.once('error', reject);
    };
    if (!t.connect) {
      raw.once('connect', handshake);
      return;
    }
    raw.once('connect', () =>
      raw.write(`CONNECT ${name}:${upstreamPort} HTTP/1.1\r\nHost: ${name}:${upstreamPort}\r\n\r\n`),
    );
    let head = '';
    const onData = (d: Buffer) => {
      head += d.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      raw.off('data', onData);
      if (!/^HTTP\/1\.[01] 200/.test(head)) return reject(new Error(`CONNECT: ${head.split('\r\n')[0]}`));
      raw.pause();
      handshake();
    };
    raw.on('data', onData);
  });
}

/** One GET on an open connection; resolves when the whole (Content-Length) body arrived. */
function get(s: tls.TLSSocket, host: string, p: string): Promise<number> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.toString('latin1', 0, end);
      const m = /content-length: *(\d+)/i.exec(head);
      const len = m ? Number(m[1]) : 0;
      if (buf.length < end + 4 + len) return;
      s.off('data', onData);
      s.off('error', reject);
      s.off('close', onClose);
      resolve(Number(head.slice(9, 12)));
    };
    s.on('data', onData);
    s.once('error', reject);
    const onClose = () => reject(new Error('closed'));
    s.once('close', onClose);
    s.write(`GET ${p} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
  });
}

const NAME = `api.${BENCH_DOMAIN}`;
/** The Host a client sends: squid's tunnel goes to name:upstreamPort; ours stands in for name:443. */
const hostOf = (t: InspectTarget, name: string, upstreamPort: number) =>
  t.connect ? `${name}:${upstreamPort}` : name;
/** A connection silent this long counts as an error (and is closed), so a round always ends. */
const STALL_MS = 5000;

export async function keepAliveRound(
  t: InspectTarget,
  upstreamPort: number,
  seconds: number,
  concurrency: number,
): Promise<{ rps: number; errors: number }> {
  let n = 0;
  let errors = 0;
  const end = performance.now() + seconds * 1000;
  const loop = async () => {
    let s: tls.TLSSocket | null = null;
    while (performance.now() < end) {
      try {
        s ??= await open(t, NAME, upstreamPort);
        const status = await get(s, hostOf(t, NAME, upstreamPort), '/repos/bench/x');
        if (status === 200) n++;
        else errors++;
      } catch {
        errors++;
        s?.destroy();
        s = null;
      }
    }
    s?.destroy();
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, loop));
  return { rps: n / ((performance.now() - t0) / 1000), errors };
}

export async function handshakeRound(
  t: InspectTarget,
  upstreamPort: number,
  seconds: number,
  concurrency: number,
): Promise<{ perS: number; errors: number }> {
  let n = 0;
  let errors = 0;
  const end = performance.now() + seconds * 1000;
  const loop = async () => {
    while (performance.now() < end) {
      let s: tls.TLSSocket | null = null;
      try {
        s = await open(t, NAME, upstreamPort);
        if ((await get(s, hostOf(t, NAME, upstreamPort), '/repos/bench/x')) === 200) n++;
        else errors++;
      } catch {
        errors++;
      } finally {
        s?.destroy();
      }
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, loop));
  return { perS: n / ((performance.now() - t0) / 1000), errors };
}

/** First request to `count` names never seen before, one after another; latencies in ms. */
export async function coldRound(
  t: InspectTarget,
  upstreamPort: number,
  first: number,
  count: number,
): Promise<{ ms: number[]; errors: number }> {
  const ms: number[] = [];
  let errors = 0;
  for (let i = first; i < first + count; i++) {
    const name = `cold${i}.${BENCH_DOMAIN}`;
    const t0 = performance.now();
    let s: tls.TLSSocket | null = null;
    try {
      s = await open(t, name, upstreamPort);
      if ((await get(s, hostOf(t, name, upstreamPort), '/repos/bench/x')) === 200)
        ms.push(performance.now() - t0);
      else errors++;
    } catch {
      errors++;
    } finally {
      s?.destroy();
    }
  }
  return { ms, errors };
}

export function readCa(file: string): Buffer {
  return readFileSync(file);
}

export type { ChildProcess };
export { spawn };
