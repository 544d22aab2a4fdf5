/**
 * Regenerates test/testdata/proxy/*.bin: the first flight of real clients (openssl s_client and
 * curl from Debian) captured on loopback. Not a test; run by hand when adding vectors:
 *   node_modules/node/bin/node test/unit/proxy/capture-hellos.ts
 * Each file holds exactly the bytes the client sent before waiting for the server, so the
 * resumption capture also holds the 0-RTT early data that follows the hello.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const OUT = path.join(import.meta.dirname, '../../testdata/proxy');

/** Listen once; resolve with what one client sent within `ms` of its last byte. */
async function capture(client: (port: number) => Promise<unknown>, quietMs = 400): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const got = new Promise<Buffer>((resolve) => {
    server.once('connection', (sock) => {
      const chunks: Buffer[] = [];
      let timer = setTimeout(() => done(), 3000);
      const done = () => {
        clearTimeout(timer);
        sock.destroy();
        resolve(Buffer.concat(chunks));
      };
      sock.on('data', (d: Buffer) => {
        chunks.push(d);
        clearTimeout(timer);
        timer = setTimeout(done, quietMs);
      });
      sock.on('error', () => {});
    });
  });
  const c = client(port).catch(() => undefined);
  const bytes = await got;
  await c;
  server.close();
  return bytes;
}

function openssl(args: string[], input = ''): Promise<void> {
  return new Promise((resolve) => {
    const child = spawn('openssl', args, { stdio: ['pipe', 'ignore', 'ignore'] });
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
    child.stdin.end(input);
  });
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'ng-hello-'));
  try {
    const key = path.join(dir, 'k.pem');
    const cert = path.join(dir, 'c.pem');
    await run('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=api.example.com',
      '-addext',
      'subjectAltName=DNS:api.example.com',
      '-keyout',
      key,
      '-out',
      cert,
    ]);
    const files: Record<string, Buffer> = {};
    const sc = (port: number, extra: string[]) =>
      openssl(['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'api.example.com', ...extra]);
    files['openssl-tls13.bin'] = await capture((p) => sc(p, ['-tls1_3']));
    files['openssl-tls12-alpn.bin'] = await capture((p) => sc(p, ['-tls1_2', '-alpn', 'h2,http/1.1']));
    files['openssl-default.bin'] = await capture((p) => sc(p, []));
    const curl = (port: number, extra: string[]) =>
      run('curl', [
        '-sk',
        '--max-time',
        '2',
        '--resolve',
        `api.example.com:${port}:127.0.0.1`,
        ...extra,
        `https://api.example.com:${port}/`,
      ]);
    files['curl-default.bin'] = await capture((p) => curl(p, []));
    files['curl-tls12.bin'] = await capture((p) => curl(p, ['--tlsv1.2', '--tls-max', '1.2', '--http1.1']));
    files['curl-upper-sni.bin'] = await capture((p) =>
      run('curl', [
        '-sk',
        '--max-time',
        '2',
        '--resolve',
        `API.Example.COM:${p}:127.0.0.1`,
        `https://API.Example.COM:${p}/`,
      ]),
    );
    files['curl-ip-no-sni.bin'] = await capture((p) =>
      run('curl', ['-sk', '--max-time', '2', `https://127.0.0.1:${p}/`]),
    );

    // Resumption with 0-RTT: a session from a real s_server, then a hello with a PSK and early data.
    const sess = path.join(dir, 'sess.pem');
    const early = path.join(dir, 'early.txt');
    await writeFile(early, 'GET /early HTTP/1.1\r\nHost: api.example.com\r\n\r\n');
    const server = spawn(
      'openssl',
      ['s_server', '-accept', '0', '-cert', cert, '-key', key, '-early_data', '-tls1_3', '-naccept', '1'],
      { stdio: ['pipe', 'pipe', 'ignore'] },
    );
    const sport = await new Promise<number>((resolve, reject) => {
      let text = '';
      server.stdout.on('data', (d: Buffer) => {
        text += d.toString();
        const m = /ACCEPT\s+\[?[^\]\s]*\]?:(\d+)/.exec(text) ?? /ACCEPT\s+\S*:(\d+)/.exec(text);
        if (m) resolve(Number(m[1]));
      });
      setTimeout(() => reject(new Error(`s_server did not start: ${text}`)), 5000);
    });
    await openssl(
      ['s_client', '-connect', `127.0.0.1:${sport}`, '-servername', 'api.example.com', '-sess_out', sess],
      'Q\n',
    );
    server.kill('SIGKILL');
    files['openssl-psk-early.bin'] = await capture((p) => sc(p, ['-sess_in', sess, '-early_data', early]));

    for (const [name, bytes] of Object.entries(files)) {
      if (bytes.length === 0) throw new Error(`${name}: nothing captured`);
      await writeFile(path.join(OUT, name), bytes);
      console.log(`${name}: ${bytes.length} bytes`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
