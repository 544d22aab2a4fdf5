/**
 * A real control plane for tests: etcd (data on tmpfs) and kube-apiserver on loopback with
 * random free ports, client-certificate auth, RBAC on. One per test file; `stop()` (register it
 * with t.after / after) tears everything down in the right order even when a test failed:
 * SIGTERM kube-apiserver, wait, then etcd, then remove the temp dir.
 *
 * Identities: `admin` (system:masters) for setup; `serviceAccountConfig()` mints a token through
 * the TokenRequest API so a component runs exactly as its ServiceAccount under the chart's RBAC;
 * `userConfig()` signs a client certificate for any user and groups.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { KubeApi } from '../../src/k8s/api.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');

/** Path of an upstream binary, built (with progress on stderr) when missing. */
export function testBinary(name: 'kube-apiserver' | 'etcd' | 'helm'): string {
  const script = path.join(ROOT, 'scripts/build-test-bins.sh');
  try {
    return execFileSync(script, ['--print-path', name], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    process.stderr.write(`building ${name} (first time: several minutes)...\n`);
    const out = execFileSync(script, [name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    const line = out.split('\n').find((l) => l.startsWith(`${name}=`));
    if (!line) throw new Error(`build-test-bins.sh did not print a path for ${name}`);
    return line.slice(name.length + 1);
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

async function waitFor(
  what: string,
  timeoutMs: number,
  probe: () => Promise<boolean>,
  proc?: ChildProcess,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc && proc.exitCode !== null)
      throw new Error(`${what}: the process exited with code ${proc.exitCode}`);
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what}: not ready after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface ApiServerOptions {
  /** Extra kube-apiserver flags. */
  readonly extraArgs?: readonly string[];
}

export class TestApiServer {
  readonly dir: string;
  readonly etcdPort: number;
  readonly apiPort: number;
  readonly kubeconfigPath: string;
  #etcd: ChildProcess | null = null;
  #apiserver: ChildProcess | null = null;
  readonly #options: ApiServerOptions;
  #logTail: string[] = [];

  private constructor(dir: string, etcdPort: number, apiPort: number, options: ApiServerOptions) {
    this.dir = dir;
    this.etcdPort = etcdPort;
    this.apiPort = apiPort;
    this.kubeconfigPath = path.join(dir, 'admin.kubeconfig');
    this.#options = options;
  }

  static async start(options: ApiServerOptions = {}): Promise<TestApiServer> {
    const etcdBin = testBinary('etcd');
    const apiBin = testBinary('kube-apiserver');
    const base = existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
    const dir = mkdtempSync(path.join(base, 'namegate-k8s-'));
    const server = new TestApiServer(dir, await freePort(), await freePort(), options);
    try {
      server.#makePki();
      await server.#startEtcd(etcdBin);
      await server.startApiServer(apiBin);
    } catch (err) {
      await server.stop();
      throw new Error(
        `control plane did not start: ${err instanceof Error ? err.message : String(err)}\n${server.#logTail.join('')}`,
      );
    }
    return server;
  }

  get url(): string {
    return `https://127.0.0.1:${this.apiPort}`;
  }

  #makePki(): void {
    const d = this.dir;
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key'], d);
    openssl(
      [
        'req',
        '-x509',
        '-new',
        '-key',
        'ca.key',
        '-subj',
        '/CN=namegate-test-ca',
        '-days',
        '2',
        '-out',
        'ca.crt',
      ],
      d,
    );
    this.#signCert(
      'serving',
      '/CN=kube-apiserver',
      'serverAuth',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
    );
    openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', 'sa.key'], d);
    openssl(['pkey', '-in', 'sa.key', '-pubout', '-out', 'sa.pub'], d);
    const admin = this.#signCert('admin', '/O=system:masters/CN=namegate-admin', 'clientAuth');
    writeFileSync(this.kubeconfigPath, this.#kubeconfigYaml('admin', { cert: admin.cert, key: admin.key }));
  }

  #signCert(name: string, subject: string, usage: string, extra?: string): { cert: string; key: string } {
    const d = this.dir;
    const ext = path.join(d, `${name}.ext`);
    writeFileSync(ext, `extendedKeyUsage=${usage}\n${extra ? `${extra}\n` : ''}`);
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`], d);
    openssl(['req', '-new', '-key', `${name}.key`, '-subj', subject, '-out', `${name}.csr`], d);
    openssl(
      [
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        'ca.crt',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-days',
        '2',
        '-extfile',
        ext,
        '-out',
        `${name}.crt`,
      ],
      d,
    );
    return { cert: path.join(d, `${name}.crt`), key: path.join(d, `${name}.key`) };
  }

  #kubeconfigYaml(user: string, auth: { cert: string; key: string } | { token: string }): string {
    const userBlock =
      'token' in auth
        ? `    token: ${auth.token}\n`
        : `    client-certificate: ${auth.cert}\n    client-key: ${auth.key}\n`;
    return [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: test',
      '  cluster:',
      `    server: ${this.url}`,
      `    certificate-authority: ${path.join(this.dir, 'ca.crt')}`,
      'users:',
      `- name: ${user}`,
      '  user:',
      userBlock.trimEnd(),
      'contexts:',
      '- name: test',
      '  context:',
      '    cluster: test',
      `    user: ${user}`,
      'current-context: test',
      '',
    ].join('\n');
  }

  #capture(proc: ChildProcess, name: string): void {
    const keep = (chunk: Buffer): void => {
      this.#logTail.push(`[${name}] ${chunk.toString()}`);
      if (this.#logTail.length > 40) this.#logTail.shift();
    };
    proc.stdout?.on('data', keep);
    proc.stderr?.on('data', keep);
  }

  async #startEtcd(bin: string): Promise<void> {
    const peer = await freePort();
    const url = `http://127.0.0.1:${this.etcdPort}`;
    mkdirSync(path.join(this.dir, 'etcd'));
    this.#etcd = spawn(
      bin,
      [
        '--name=test',
        `--data-dir=${path.join(this.dir, 'etcd')}`,
        `--listen-client-urls=${url}`,
        `--advertise-client-urls=${url}`,
        `--listen-peer-urls=http://127.0.0.1:${peer}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${peer}`,
        `--initial-cluster=test=http://127.0.0.1:${peer}`,
        '--unsafe-no-fsync=true',
        '--log-level=warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.#capture(this.#etcd, 'etcd');
    await waitFor(
      'etcd',
      20_000,
      async () => {
        const res = await fetch(`${url}/health`);
        return res.ok && ((await res.json()) as { health?: string }).health === 'true';
      },
      this.#etcd,
    );
  }

  /** Start (or restart, against the same etcd) kube-apiserver and wait until it is ready. */
  async startApiServer(bin = testBinary('kube-apiserver')): Promise<void> {
    const d = this.dir;
    this.#apiserver = spawn(
      bin,
      [
        `--etcd-servers=http://127.0.0.1:${this.etcdPort}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--secure-port=${this.apiPort}`,
        `--tls-cert-file=${path.join(d, 'serving.crt')}`,
        `--tls-private-key-file=${path.join(d, 'serving.key')}`,
        `--client-ca-file=${path.join(d, 'ca.crt')}`,
        '--authorization-mode=RBAC',
        `--service-account-issuer=${this.url}`,
        `--service-account-key-file=${path.join(d, 'sa.pub')}`,
        `--service-account-signing-key-file=${path.join(d, 'sa.key')}`,
        '--service-cluster-ip-range=10.0.0.0/24',
        `--cert-dir=${path.join(d, 'certs')}`,
        '--allow-privileged=true',
        '--disable-admission-plugins=ServiceAccount',
        // No kubelet or controller-manager: nothing would serve the loopback endpoint anyway.
        '--endpoint-reconciler-type=none',
        ...(this.#options.extraArgs ?? []),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.#capture(this.#apiserver, 'kube-apiserver');
    const admin = this.adminApi({ timeoutMs: 2000 });
    await waitFor(
      'kube-apiserver',
      60_000,
      async () => {
        const ready = await admin.text('GET', '/readyz');
        if (ready.status !== 200) return false;
        await admin.get('/api/v1/namespaces/default');
        return true;
      },
      this.#apiserver,
    );
  }

  /**
   * Stop kube-apiserver and wait for it to exit (etcd keeps running). SIGKILL is a crash: open
   * watches are cut at once (a graceful stop waits for them to drain).
   */
  async stopApiServer(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const p = this.#apiserver;
    this.#apiserver = null;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = once(p, 'exit');
    p.kill(signal);
    const timer = setTimeout(() => p.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }

  /** Freeze or thaw kube-apiserver (SIGSTOP/SIGCONT): open connections go silent, no error. */
  freezeApiServer(frozen: boolean): void {
    this.#apiserver?.kill(frozen ? 'SIGSTOP' : 'SIGCONT');
  }

  async stop(): Promise<void> {
    this.#apiserver?.kill('SIGCONT');
    await this.stopApiServer();
    const e = this.#etcd;
    this.#etcd = null;
    if (e && e.exitCode === null && e.signalCode === null) {
      const exited = once(e, 'exit');
      e.kill('SIGTERM');
      const timer = setTimeout(() => e.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  adminConfig(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromFile(this.kubeconfigPath);
    return kc;
  }

  adminApi(options: { timeoutMs?: number } = {}): KubeApi {
    return new KubeApi(this.adminConfig(), options);
  }

  /** A kubeconfig for a user with a client certificate (CN = user, O = groups). */
  userConfig(user: string, groups: readonly string[] = []): { config: KubeConfig; path: string } {
    const safe = user.replace(/[^a-zA-Z0-9-]/g, '_');
    const subject = `${groups.map((g) => `/O=${g}`).join('')}/CN=${user}`;
    const cert = this.#signCert(`user-${safe}`, subject, 'clientAuth');
    const file = path.join(this.dir, `user-${safe}.kubeconfig`);
    writeFileSync(file, this.#kubeconfigYaml(safe, cert));
    const config = new KubeConfig();
    config.loadFromFile(file);
    return { config, path: file };
  }

  /**
   * A kubeconfig that authenticates as a ServiceAccount, with a token from the TokenRequest API
   * (creates the ServiceAccount when it is missing).
   */
  async serviceAccountConfig(namespace: string, name: string): Promise<{ config: KubeConfig; path: string }> {
    const admin = this.adminApi();
    await ensureNamespace(admin, namespace);
    await admin
      .request('POST', `/api/v1/namespaces/${namespace}/serviceaccounts`, {
        body: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name } },
      })
      .catch((err: { status?: number }) => {
        if (err.status !== 409) throw err;
      });
    const tr = await admin.request<{ status: { token: string } }>(
      'POST',
      `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`,
      {
        body: {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenRequest',
          spec: { expirationSeconds: 3600 },
        },
      },
    );
    const file = path.join(this.dir, `sa-${namespace}-${name}.kubeconfig`);
    writeFileSync(file, this.#kubeconfigYaml(`${namespace}-${name}`, { token: tr.status.token }));
    const config = new KubeConfig();
    config.loadFromFile(file);
    return { config, path: file };
  }
}

export async function ensureNamespace(
  api: KubeApi,
  name: string,
  labels: Record<string, string> = {},
): Promise<void> {
  await api
    .request('POST', '/api/v1/namespaces', {
      body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } },
    })
    .catch((err: { status?: number }) => {
      if (err.status !== 409) throw err;
    });
}

/** Poll until `check` returns a value other than undefined (bounded; for API-side conditions). */
export async function eventually<T>(
  what: string,
  check: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `${what}: not true after ${timeoutMs} ms${last ? ` (last error: ${String(last)})` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}
