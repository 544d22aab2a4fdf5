/**
 * The SNI/Host proxy and the CONNECT proxy end to end, as root, in network namespaces this test
 * creates (test/integration/datapath/topology.ts): a governed pod, a router running both proxies
 * (proxy-host.ts) behind a minimal nftables REDIRECT of its own (TCP 80 and 443 from the pod to
 * the proxy's port; the root namespace's firewall is never touched), and an "internet" with nginx
 * serving two names on one address (the CDN case) plus a second address. Clients are the real
 * ones: curl (--resolve, -x), openssl s_client. Both original-destination methods run: the
 * SO_ORIGINAL_DST addon and the conntrack tool.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { loadSockoptAddon } from '../../../src/proxy/original-dst.ts';
import { skipUnless } from '../../support/requirements.ts';
import { certificate } from '../../unit/proxy/helpers.ts';
import { A4, A6, S4, S4b, S4c, S6, type Topology, topology } from '../datapath/topology.ts';
import { exec, type Netns, NODE, waitFor } from '../netns.ts';

const PROXY_PORT = 15001;
const CONNECT_PORT = 3128;
const ROUTER_A4 = '10.0.1.254';

const policyDoc = {
  apiVersion: 'namegate.dev/v1alpha1',
  kind: 'ClusterEgressPolicy',
  metadata: { name: 'stripe' },
  spec: {
    podSelector: { matchLabels: { app: 'payments' } },
    egress: [
      {
        toFQDNs: [{ name: 'api.stripe.com' }, { name: 'cdn-neighbour.example.net' }],
        ports: [
          { port: 443, protocol: 'TCP' },
          { port: 80, protocol: 'TCP' },
        ],
        verify: 'SNI',
      },
    ],
  },
};

interface Fixture {
  topo: Topology;
  dir: string;
  caFile: string;
}

async function nginx(inet: Netns, dir: string, cert: Buffer, key: Buffer): Promise<void> {
  await writeFile(path.join(dir, 'cert.pem'), cert);
  await writeFile(path.join(dir, 'key.pem'), key);
  await mkdir(path.join(dir, 'tmp'), { recursive: true });
  const servers = ['api.stripe.com', 'cdn-neighbour.example.net'].map(
    (name) => `
  server {
    listen ${S4}:443 ssl; listen ${S4}:80; listen ${S4b}:443 ssl; listen ${S4b}:80; listen ${S4c}:443 ssl;
    listen [${S6}]:443 ssl; listen [${S6}]:80;
    server_name ${name};
    ssl_certificate ${dir}/cert.pem; ssl_certificate_key ${dir}/key.pem;
    location / { return 200 "hello from ${name}\\n"; }
  }`,
  );
  const conf = `worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events { worker_connections 256; }
http {
  access_log off; client_body_temp_path ${dir}/tmp/b; proxy_temp_path ${dir}/tmp/p;
  fastcgi_temp_path ${dir}/tmp/f; uwsgi_temp_path ${dir}/tmp/u; scgi_temp_path ${dir}/tmp/s;
  ${servers.join('\n')}
}
`;
  await writeFile(path.join(dir, 'nginx.conf'), conf);
  inet.spawn(['nginx', '-c', path.join(dir, 'nginx.conf')]);
  await waitFor('nginx', async () => (await inet.exec(['ss', '-ltnH', `sport = :443`])).stdout.includes(S4));
}

async function redirect(router: Netns): Promise<void> {
  const rules = `table inet ngproxytest {
  chain pre {
    type nat hook prerouting priority -100; policy accept;
    ip saddr ${A4} tcp dport { 80, 443 } redirect to :${PROXY_PORT}
    ip6 saddr ${A6} tcp dport { 80, 443 } redirect to :${PROXY_PORT}
  }
}
`;
  await router.run(['nft', '-f', '-'], { input: rules });
}

class Host {
  readonly lines: Array<Record<string, unknown>> = [];
  readonly child: ChildProcess;
  constructor(child: ChildProcess) {
    this.child = child;
  }
  static async start(router: Netns, method: 'addon' | 'conntrack'): Promise<Host> {
    const config = {
      sniListen: [`0.0.0.0:${PROXY_PORT}`, `[::]:${PROXY_PORT}`],
      connectListen: [`${ROUTER_A4}:${CONNECT_PORT}`],
      originalDst: method,
      policies: [policyDoc],
      groups: [
        {
          name: 'payments',
          namespace: 'payments',
          labels: { app: 'payments' },
          cidrs: [`${A4}/32`, `${A6}/128`],
        },
      ],
      learned: [
        [A4, 'api.stripe.com', S4],
        [A4, 'api.stripe.com', S6],
        [A4, 'cdn-neighbour.example.net', S4b],
      ],
      dns: {
        port: 5353,
        records: {
          'api.stripe.com': [S4, S6],
          'cdn-neighbour.example.net': [S4b],
          'evil.example.com': [S4c],
        },
      },
    };
    const child = router.spawn([NODE, 'test/integration/proxy/proxy-host.ts', JSON.stringify(config)]);
    const host = new Host(child);
    const rl = readline.createInterface({ input: child.stdout! });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const ready = new Promise<void>((resolve, reject) => {
      rl.on('line', (l) => {
        const v = JSON.parse(l) as Record<string, unknown>;
        if (v['result'] === 'ready') resolve();
        else host.lines.push(v);
      });
      child.once('exit', () => reject(new Error(`proxy host exited: ${stderr}`)));
    });
    await ready;
    return host;
  }
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGKILL');
    await exited;
  }
  /** The decision line of the latest connection matching `pred`. */
  async decision(pred: (l: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
    return waitFor(
      'decision line',
      () => this.lines.filter((l) => l['event'] === 'proxy' && pred(l)).at(-1),
      5000,
    );
  }
}

function curl(f: Fixture, args: string[]) {
  return f.topo.podA.exec(['curl', '-sS', '--max-time', '5', '--cacert', f.caFile, ...args]);
}

describe('proxies in network namespaces (root)', { skip: skipUnless({}) }, () => {
  let f: Fixture;
  const ctx = {
    after: (fn: () => unknown) => cleanups.push(fn),
  } as unknown as import('node:test').TestContext;
  const cleanups: Array<() => unknown> = [];

  before(async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'ng-proxy-it-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const topo = await topology(ctx);
    const { cert, key } = await certificate(ctx, ['api.stripe.com', 'cdn-neighbour.example.net']);
    const caFile = path.join(dir, 'ca.pem');
    await writeFile(caFile, cert);
    await nginx(topo.inet, dir, cert, key);
    await redirect(topo.router);
    f = { topo, dir, caFile };
  });
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  for (const method of ['addon', 'conntrack'] as const) {
    describe(`original destination via ${method}`, () => {
      let host: Host;
      before(async () => {
        if (method === 'addon')
          assert.equal(typeof loadSockoptAddon(), 'object', 'build/sockopt.node (scripts/deps.sh)');
        host = await Host.start(f.topo.router, method);
      });
      after(() => host?.stop());

      test('allowed: curl https://api.stripe.com reaches it through the proxy (IPv4 and IPv6)', async () => {
        const r = await curl(f, ['--resolve', `api.stripe.com:443:${S4}`, 'https://api.stripe.com/']);
        assert.equal(r.stdout, 'hello from api.stripe.com\n', r.stderr);
        const d = await host.decision((l) => l['sni'] === 'api.stripe.com' && l['dst'] === S4);
        assert.equal(d['verdict'], 'allow');
        assert.equal(d['src'], A4);
        assert.equal(d['dport'], 443);
        const r6 = await curl(f, [
          '-6',
          '--resolve',
          `api.stripe.com:443:[${S6}]`,
          'https://api.stripe.com/',
        ]);
        assert.equal(r6.stdout, 'hello from api.stripe.com\n', r6.stderr);
        assert.equal((await host.decision((l) => l['dst'] === S6))['src'], A6, 'the IPv6 sibling');
      });

      test("SNI-02: cdn-neighbour on api.stripe.com's IP (learned only for another name) -> closed", async () => {
        const r = await curl(f, [
          '--resolve',
          `cdn-neighbour.example.net:443:${S4}`,
          'https://cdn-neighbour.example.net/',
        ]);
        assert.notEqual(r.code, 0);
        assert.equal(r.stdout, '');
        const d = await host.decision((l) => l['sni'] === 'cdn-neighbour.example.net' && l['dst'] === S4);
        assert.equal(d['reason'], 'sni_ip_mismatch');
      });

      test('SNI-01: a spoofed SNI against an address never learned for it -> closed', async () => {
        const r = await curl(f, ['--resolve', `api.stripe.com:443:${S4c}`, 'https://api.stripe.com/']);
        assert.notEqual(r.code, 0);
        assert.equal((await host.decision((l) => l['dst'] === S4c))['reason'], 'sni_ip_mismatch');
      });

      test('openssl s_client -servername evil.example.com -> sni_not_allowed', async () => {
        const r = await f.topo.podA.exec(
          ['openssl', 's_client', '-connect', `${S4}:443`, '-servername', 'evil.example.com', '-brief'],
          { input: '', timeoutMs: 10_000 },
        );
        assert.doesNotMatch(r.stdout + r.stderr, /CONNECTION ESTABLISHED/);
        assert.equal(
          (await host.decision((l) => l['sni'] === 'evil.example.com'))['reason'],
          'sni_not_allowed',
        );
      });

      test('TLS-05: a direct IP without SNI -> no_sni', async () => {
        const r = await f.topo.podA.exec(['curl', '-sSk', '--max-time', '5', `https://${S4}/`]);
        assert.notEqual(r.code, 0);
        assert.equal((await host.decision((l) => l['reason'] === 'no_sni'))['dst'], S4);
      });

      test('plain HTTP on a verify port: Host checked against the learned address', async () => {
        const ok = await curl(f, ['--resolve', `api.stripe.com:80:${S4}`, 'http://api.stripe.com/']);
        assert.equal(ok.stdout, 'hello from api.stripe.com\n', ok.stderr);
        const bad = await curl(f, ['-H', 'Host: cdn-neighbour.example.net', `http://${S4}/`]);
        assert.match(bad.stdout, /namegate: host_ip_mismatch/);
      });

      test('CONNECT proxy: curl -x to an allowed name, a denied name, and an absolute-form GET', async () => {
        const proxy = `http://${ROUTER_A4}:${CONNECT_PORT}`;
        const ok = await curl(f, ['-x', proxy, 'https://api.stripe.com/']);
        assert.equal(ok.stdout, 'hello from api.stripe.com\n', ok.stderr);
        const denied = await curl(f, ['-x', proxy, 'https://evil.example.com/']);
        assert.notEqual(denied.code, 0);
        assert.match(denied.stderr, /403/);
        const plain = await curl(f, ['-x', proxy, 'http://api.stripe.com/']);
        assert.equal(plain.stdout, 'hello from api.stripe.com\n', plain.stderr);
        const literal = await curl(f, ['-x', proxy, `https://${S4}/`, '-k']);
        assert.match(literal.stderr, /403/);
      });
    });
  }

  test('no redirect, no original destination: a direct connection to the proxy port is refused', async () => {
    const host = await Host.start(f.topo.router, 'addon');
    try {
      const r = await exec([
        'ip',
        'netns',
        'exec',
        f.topo.podA.name,
        'curl',
        '-sSk',
        '--max-time',
        '5',
        `https://${ROUTER_A4}:${PROXY_PORT}/`,
      ]);
      assert.notEqual(r.code, 0);
      const d = await host.decision(() => true);
      assert.ok(d['reason'] === 'loop' || d['reason'] === 'no_original_dst', String(d['reason']));
    } finally {
      await host.stop();
    }
  });
});
