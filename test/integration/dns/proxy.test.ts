/**
 * The DNS proxy against real peers on loopback: knotd as the authoritative upstream serving a
 * zone this test writes, dig and kdig as clients over UDP and TCP, and a raw TCP client for
 * pipelining and split length prefixes. Security cases: DNS-02, -03, -04, -07, -11, -13, -18,
 * -19, -21, -24, TIME-01, REL-03, REL-07, REL-08, K8S-03.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { promisify } from 'node:util';
import dnsPacket from 'dns-packet';
import { Registry } from 'prom-client';
import { dnsSettingsFrom } from '../../../src/config/dns.ts';
import { validateConfig } from '../../../src/config/load.ts';
import { systemClock } from '../../../src/core/clock.ts';
import { RecordingDatapath } from '../../../src/datapath/recording.ts';
import { DnsProxy } from '../../../src/dns/proxy.ts';
import { StaticGroups } from '../../../src/identity/static-groups.ts';
import { silentLogger } from '../../../src/observe/log.ts';
import { CompiledPolicies } from '../../../src/policy/compile.ts';
import { policy } from '../../unit/dns/helpers.ts';
import { waitFor } from '../netns.ts';
import { freePort, type Knot, startKnot, zone } from './knot.ts';

const run = promisify(execFile);

const ZONE = (() => {
  const rrs = [
    'www A 198.51.100.1',
    'api CNAME www',
    'zero 0 A 198.51.100.3',
    'huge 2147483647 A 198.51.100.4',
    'private A 10.1.2.3',
    'mixedpriv A 10.1.2.4',
    'mixedpriv A 198.51.100.5',
    'six AAAA 2001:db8::6',
    'svc HTTPS 1 . alpn=h2 ipv4hint=198.51.100.20,198.51.100.21',
    'loop1 CNAME loop2',
    'loop2 CNAME loop1',
    'blocked A 198.51.100.66',
  ];
  for (let i = 0; i < 200; i++) rrs.push(`many A 198.51.${100 + Math.floor(i / 250)}.${(i % 250) + 1}`);
  return zone('example.test', rrs);
})();

const ALLOWED = ['www', 'api', 'zero', 'huge', 'private', 'mixedpriv', 'six', 'svc', 'loop1', 'many'].map(
  (n) => ({ name: `${n}.example.test` }),
);

interface Setup {
  knot: Knot;
  proxy: DnsProxy;
  datapath: RecordingDatapath;
  port: number;
  lines: Array<Record<string, unknown>>;
  dir: string;
  identities: StaticGroups;
  registry: Registry;
}

async function setup(
  t: TestContext,
  opts: {
    knot?: Knot;
    dir?: string;
    upstreamPort?: number;
    datapath?: RecordingDatapath;
    extra?: object;
    /** Other sections of the config (datapath.sourceCIDRs). */
    sections?: object;
    /** The proxy's port (default: one free on both loopbacks). */
    port?: number;
  } = {},
): Promise<Setup> {
  const knot = opts.knot ?? (await startKnot(t, { 'example.test': ZONE }));
  const dir = opts.dir ?? (await mkdtemp(path.join(tmpdir(), 'namegate-dnsit-')));
  if (!opts.dir) t.after(() => rm(dir, { recursive: true, force: true }));
  // The proxy listens on both loopbacks: the port must be free on both.
  const port = opts.port ?? (await freePort(['127.0.0.1', '::1']));
  const config = validateConfig(
    {
      dns: {
        listen: [`127.0.0.1:${port}`, `[::1]:${port}`],
        upstreams: [`127.0.0.1:${opts.upstreamPort ?? knot.port}`],
        holdTimeoutMs: 1000,
        ...opts.extra,
      },
      ttl: { minTTL: 30, maxTTL: 86_400, grace: 30 },
      store: { checkpoint: { path: 'store.ckpt', intervalSeconds: 3600 } },
      sources: [
        { name: 'local', namespace: 'default', labels: { app: 'web' }, cidrs: ['127.0.0.1/32', '::1/128'] },
      ],
      ...opts.sections,
    },
    dir,
  );
  const set = new CompiledPolicies([
    policy(
      {
        podSelector: { matchLabels: { app: 'web' } },
        egress: [{ toFQDNs: ALLOWED, ports: [{ port: 443 }] }],
      },
      'web',
      'EgressPolicy',
      'default',
    ),
  ]);
  const datapath = opts.datapath ?? new RecordingDatapath(systemClock);
  const lines: Array<Record<string, unknown>> = [];
  const identities = new StaticGroups(config.sources);
  const registry = new Registry();
  const proxy = await DnsProxy.start({
    settings: dnsSettingsFrom(config),
    policies: { current: () => set },
    identities,
    datapath,
    registry,
    log: silentLogger(),
    flowLog: { write: (l: string) => lines.push(JSON.parse(l)) },
    flowLogBufferBytes: 0,
  });
  t.after(() => proxy.stop());
  return { knot, proxy, datapath, port, lines, dir, identities, registry };
}

/**
 * dig and kdig wait up to CLIENT_WAIT_S for an answer: only a missing answer fails a test, never
 * a slow one (a loaded machine is slow; how fast the proxy answers is bench/'s business).
 */
const CLIENT_WAIT_S = '30';

async function dig(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run('dig', [
    '-p',
    String(port),
    '@127.0.0.1',
    `+time=${CLIENT_WAIT_S}`,
    '+tries=1',
    ...args,
  ]);
  return stdout;
}

async function kdig(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run('kdig', [
    '-p',
    String(port),
    '@127.0.0.1',
    `+time=${CLIENT_WAIT_S}`,
    '+retry=0',
    ...args,
  ]);
  return stdout;
}

/** The elements as the proxy committed them (the recording datapath's calls), by destination. */
function committed(s: Setup, destination: string) {
  return s.datapath.calls
    .flatMap((c) => (c.op === 'learn' ? c.elements : []))
    .find((e) => e.destination === destination);
}

function status(out: string): string {
  return (
    /status: ([A-Z]+)/.exec(out)?.[1] ??
    /status: ([A-Z]+)|;; ->>HEADER<<- opcode: QUERY; status: ([A-Z]+)/.exec(out)?.[2] ??
    'none'
  );
}

const allows = (s: Setup, ip: string, source = '127.0.0.1') => s.datapath.allows(source, ip, 'TCP', 443);

describe('DNS proxy with knotd, dig and kdig', () => {
  test('allowed name over UDP: answered, learned for this source on the policy port, held until committed', async (t) => {
    const s = await setup(t);
    const out = await dig(s.port, 'www.example.test');
    assert.equal(status(out), 'NOERROR');
    assert.match(out, /www\.example\.test\.\s+300\s+IN\s+A\s+198\.51\.100\.1/);
    assert.ok(allows(s, '198.51.100.1'));
    assert.ok(!s.datapath.allows('127.0.0.1', '198.51.100.1', 'TCP', 80), 'only the policy port');
    const line = s.lines.find((l) => l['qname'] === 'www.example.test')!;
    assert.equal(line['verdict'], 'allow');
    assert.equal(line['hold'], 'committed');
  });

  test('DNS-11: CNAME to an allowed-name target learned for the queried name', async (t) => {
    const s = await setup(t);
    const out = await dig(s.port, 'api.example.test');
    assert.match(out, /api\.example\.test\.\s+\d+\s+IN\s+CNAME\s+www\.example\.test\./);
    assert.deepEqual(s.proxy.store.lookup('127.0.0.1', 'api.example.test', systemClock.now()), [
      '198.51.100.1',
    ]);
  });

  test('DNS-07: denied name -> REFUSED with EDE 15 (kdig shows it), nothing learned or forwarded', async (t) => {
    const s = await setup(t);
    const out = await kdig(s.port, '+edns', 'blocked.example.test');
    assert.match(out, /status: REFUSED/);
    assert.match(out, /EDE: 15 \(Blocked\)/);
    assert.ok(!allows(s, '198.51.100.66'));
    assert.equal(s.proxy.store.size, 0);
  });

  test('DNS-03/DNS-04: a large answer truncates over UDP; dig retries over TCP through the proxy and it is learned', async (t) => {
    const s = await setup(t);
    const out = await dig(s.port, 'many.example.test', '+bufsize=1232');
    assert.match(out, /Truncated, retrying in TCP mode/);
    assert.equal(status(out), 'NOERROR');
    assert.equal((out.match(/IN\s+A\s+198\.51/g) ?? []).length, 200);
    const learned = s.proxy.store.lookup('127.0.0.1', 'many.example.test', systemClock.now());
    assert.equal(learned.length, 64, 'capped per name');
    const udpLine = s.lines.find((l) => l['qname'] === 'many.example.test' && l['transport'] === 'udp')!;
    assert.equal(udpLine['truncated'], true);
    assert.deepEqual(udpLine['ips'], []);
  });

  test('DNS-04: a client advertising 512 bytes gets TC=1, never an oversized datagram', async (t) => {
    const s = await setup(t);
    const out = await dig(s.port, 'many.example.test', '+noedns', '+ignore');
    assert.match(out, /flags: qr[^;]*tc/);
    assert.match(out, /MSG SIZE\s+rcvd: (\d+)/);
    assert.ok(Number(/MSG SIZE\s+rcvd: (\d+)/.exec(out)![1]) <= 512);
  });

  test('DNS-18/DNS-19: TTL 0 and TTL 2^31-1 are clamped (minTTL+grace, maxTTL+grace)', async (t) => {
    const s = await setup(t);
    await dig(s.port, 'zero.example.test');
    await dig(s.port, 'huge.example.test');
    // The timeouts as committed, not what remains of them when this line runs (the second
    // lookup takes its time: a dig start on a loaded machine can take seconds).
    assert.equal(committed(s, '198.51.100.3')?.timeoutMs, 60_000, 'minTTL 30 s + grace 30 s');
    assert.equal(committed(s, '198.51.100.4')?.timeoutMs, 86_430_000, 'maxTTL 86,400 s + grace 30 s');
  });

  test('DNS-21: private answers are relayed but not learned; public ones of the same answer are', async (t) => {
    const s = await setup(t);
    assert.match(await dig(s.port, 'private.example.test'), /10\.1\.2\.3/);
    assert.ok(!allows(s, '10.1.2.3'));
    await dig(s.port, 'mixedpriv.example.test');
    assert.deepEqual(s.proxy.store.lookup('127.0.0.1', 'mixedpriv.example.test', systemClock.now()), [
      '198.51.100.5',
    ]);
  });

  test('DNS-13: a CNAME loop from the upstream -> SERVFAIL, nothing learned', async (t) => {
    const s = await setup(t);
    assert.equal(status(await dig(s.port, 'loop1.example.test')), 'SERVFAIL');
    assert.equal(s.proxy.store.size, 0);
  });

  test('HTTPS ipv4hint learned (the documented decision), over a real HTTPS record from knot', async (t) => {
    const s = await setup(t);
    const out = await kdig(s.port, 'svc.example.test', 'HTTPS');
    assert.match(out, /ipv4hint=198\.51\.100\.20,198\.51\.100\.21/);
    assert.ok(allows(s, '198.51.100.20'));
    assert.ok(allows(s, '198.51.100.21'));
  });

  test('IPv6: a query from ::1 to the v6 listener learns AAAA answers', async (t) => {
    const s = await setup(t);
    const { stdout } = await run('dig', [
      '-p',
      String(s.port),
      '@::1',
      '+time=3',
      '+tries=1',
      'six.example.test',
      'AAAA',
    ]);
    assert.match(stdout, /2001:db8::6/);
    assert.ok(s.datapath.allows('::1', '2001:db8::6', 'TCP', 443));
  });

  test('DNS-24: ANY, AXFR and CHAOS are refused', async (t) => {
    const s = await setup(t);
    assert.equal(status(await dig(s.port, 'www.example.test', 'ANY')), 'REFUSED');
    assert.equal(status(await dig(s.port, 'version.bind', 'TXT', 'CH')), 'REFUSED');
    const axfr = await dig(s.port, 'example.test', 'AXFR').catch((e: { stdout?: string }) => e.stdout ?? '');
    assert.match(axfr, /Transfer failed|REFUSED/);
  });

  test('K8S-03: a source no group knows is forwarded without learning', async (t) => {
    const s = await setup(t);
    const out = await dig(s.port, '-b', '127.0.0.2', 'blocked.example.test');
    assert.equal(status(out), 'NOERROR');
    assert.equal(s.proxy.store.size, 0);
    assert.equal(s.lines.at(-1)!['reason'], 'unknown_source');
  });

  test('DNS-02: kdig over TCP with +keepopen (several queries on one connection)', async (t) => {
    const s = await setup(t);
    const out = await kdig(
      s.port,
      '+tcp',
      '+keepopen',
      'www.example.test',
      'api.example.test',
      'blocked.example.test',
    );
    assert.equal((out.match(/status: NOERROR/g) ?? []).length, 2);
    assert.equal((out.match(/status: REFUSED/g) ?? []).length, 1);
    assert.ok(s.lines.every((l) => l['transport'] === 'tcp'));
  });

  test('DNS-02: pipelined TCP queries in one write and a length prefix split across writes', async (t) => {
    const s = await setup(t);
    const sock = net.connect(s.port, '127.0.0.1');
    t.after(() => sock.destroy());
    await new Promise<void>((r) => sock.once('connect', () => r()));
    const frame = (name: string, id: number) => {
      const m = dnsPacket.encode({
        type: 'query',
        id,
        flags: dnsPacket.RECURSION_DESIRED,
        questions: [{ type: 'A', name }],
      });
      const h = Buffer.alloc(2);
      h.writeUInt16BE(m.length);
      return Buffer.concat([h, m]);
    };
    const ids = new Map<number, string>();
    let buf = Buffer.alloc(0);
    const done = new Promise<void>((resolve, reject) => {
      // A connection that ends before the fourth answer fails the test instead of hanging it.
      sock.once('close', () => reject(new Error(`connection closed after ${ids.size} answers`)));
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const p = dnsPacket.decode(buf.subarray(2, 2 + buf.readUInt16BE(0)));
          ids.set(p.id ?? -1, (p as { rcode?: string }).rcode ?? '');
          buf = buf.subarray(2 + buf.readUInt16BE(0));
        }
        if (ids.size === 4) resolve();
      });
    });
    sock.write(
      Buffer.concat([
        frame('www.example.test', 1),
        frame('api.example.test', 2),
        frame('blocked.example.test', 3),
      ]),
    );
    const split = frame('zero.example.test', 4);
    sock.write(split.subarray(0, 1));
    await new Promise((r) => setTimeout(r, 30));
    sock.write(split.subarray(1));
    await done;
    assert.deepEqual(
      [...ids.entries()].sort((a, b) => a[0] - b[0]),
      [
        [1, 'NOERROR'],
        [2, 'NOERROR'],
        [3, 'REFUSED'],
        [4, 'NOERROR'],
      ],
    );
    assert.ok(allows(s, '198.51.100.3'));
  });

  test('TIME-01: with a slow datapath the answer arrives only after the commit', async (t) => {
    const datapath = new RecordingDatapath(systemClock);
    datapath.learnDelayMs = 150;
    const s = await setup(t, { datapath });
    const out = await dig(s.port, 'www.example.test');
    assert.equal(status(out), 'NOERROR');
    // The proxy's own record of the hold: released by the commit, not by its bound.
    assert.equal(s.lines.find((l) => l['qname'] === 'www.example.test')?.['hold'], 'committed');
    assert.ok(allows(s, '198.51.100.1'));
  });

  test('REL-07: a datapath that cannot commit -> SERVFAIL, the address never reaches the client', async (t) => {
    const datapath = new RecordingDatapath(systemClock);
    datapath.failLearn = 'set is full';
    const s = await setup(t, { datapath });
    const out = await dig(s.port, 'www.example.test');
    assert.equal(status(out), 'SERVFAIL');
    assert.doesNotMatch(out, /198\.51\.100\.1/);
  });

  test('REL-08: upstream down -> SERVFAIL within the timeout', async (t) => {
    const dead = await freePort();
    const knot = await startKnot(t, { 'example.test': ZONE });
    const s = await setup(t, { knot, upstreamPort: dead, extra: { timeoutMs: 500, attempts: 2 } });
    assert.equal(status(await dig(s.port, 'www.example.test')), 'SERVFAIL');
    // Answered because the upstream failed (its attempts ran out), not because dig gave up.
    assert.match(String(s.lines.find((l) => l['qname'] === 'www.example.test')?.['reason']), /^upstream_/);
  });

  test('K8S-04: a new source inside the source CIDRs is held until it is known; dig gets its answer at the first try', async (t) => {
    const s = await setup(t, { sections: { datapath: { sourceCIDRs: ['127.0.0.0/8'] } } });
    // A "new pod" at 127.0.0.2, not known yet; one try, waiting as long as a resolver would.
    const asked = run('dig', [
      '-b',
      '127.0.0.2',
      '-p',
      String(s.port),
      '@127.0.0.1',
      '+time=20',
      '+tries=1',
      'www.example.test',
    ]);
    const held = async () =>
      ((await s.registry.getSingleMetric('namegate_dns_unknown_held')?.get())?.values[0]?.value ?? 0) === 1;
    await waitFor('the query is held', held);
    assert.equal(s.lines.length, 0, 'not answered, nothing logged yet');
    s.identities.replace([
      { name: 'local', namespace: 'default', labels: { app: 'web' }, cidrs: ['127.0.0.1/32', '::1/128'] },
      { name: 'new-pod', namespace: 'default', labels: { app: 'web' }, cidrs: ['127.0.0.2/32'] },
    ]);
    const out = (await asked).stdout;
    assert.equal(status(out), 'NOERROR');
    assert.match(out, /198\.51\.100\.1/);
    assert.ok(allows(s, '198.51.100.1', '127.0.0.2'), 'learned for the new source');
    assert.equal(s.lines.at(-1)!['identity'], 'group:new-pod');
  });

  test('REL-03: restart with checkpoint — learned entries are back in the datapath before the first query', async (t) => {
    const knot = await startKnot(t, { 'example.test': ZONE });
    const dir = await mkdtemp(path.join(tmpdir(), 'namegate-dnsit-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const first = await setup(t, { knot, dir });
    await dig(first.port, 'www.example.test');
    await dig(first.port, 'huge.example.test');
    await first.proxy.stop();

    const datapath = new RecordingDatapath(systemClock);
    const second = await setup(t, { knot, dir, datapath });
    // No query yet: the restored entries were committed during startup.
    assert.ok(allows(second, '198.51.100.1'));
    assert.ok(allows(second, '198.51.100.4'));
    assert.deepEqual(second.proxy.store.lookup('127.0.0.1', 'www.example.test', systemClock.now()), [
      '198.51.100.1',
    ]);
    assert.equal(second.lines.length, 0);
  });

  test('REL-03: a corrupt checkpoint is reported and ignored; the proxy starts empty and serves', async (t) => {
    const knot = await startKnot(t, { 'example.test': ZONE });
    const dir = await mkdtemp(path.join(tmpdir(), 'namegate-dnsit-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await writeFile(path.join(dir, 'store.ckpt'), 'namegate-store 1 00 5\nhello');
    const s = await setup(t, { knot, dir });
    assert.equal(s.proxy.store.size, 0);
    assert.equal(status(await dig(s.port, 'www.example.test')), 'NOERROR');
  });
});
