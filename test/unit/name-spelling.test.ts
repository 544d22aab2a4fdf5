/**
 * One name spelling everywhere (issue 13, item 6): each row is a name as a client puts it on the
 * wire, run through all five places that read names — the DNS proxy's question, the SNI
 * proxy's server_name, the Host check (the SNI proxy's plain-HTTP side and the inspector's
 * HTTP/2 :authority), the CONNECT proxy's target, and `namegate check --name` — and each must
 * reach the same outcome: allow, deny, or `name_invalid`. No IDNA mapping happens on the wire:
 * U+3002, U+FF0E and U+FF61 are never a dot, and a U-label is not its A-label (security cases
 * NAME-01, NAME-03 and TLS-07, run through every reader).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { Registry } from 'prom-client';
import { proxySettings } from '../../src/config/proxy.ts';
import type { CanonicalName } from '../../src/core/names.ts';
import { StaticGroups } from '../../src/identity/static-groups.ts';
import { silentLogger } from '../../src/observe/log.ts';
import { CompiledPolicies } from '../../src/policy/compile.ts';
import { ConnectProxy } from '../../src/proxy/connect-proxy.ts';
import { factsFromH2 } from '../../src/proxy/inspect/request-facts.ts';
import type { NameResolver } from '../../src/proxy/resolver.ts';
import { policy as dnsPolicy, harness } from './dns/helpers.ts';
import { simpleHello } from './proxy/hello-builder.ts';
import { backend, client, decisionLine, GROUPS, Learned, policy, sniProxy } from './proxy/helpers.ts';

type Outcome = 'allow' | 'deny' | 'name_invalid';

interface Row {
  readonly what: string;
  /** The bytes a client sends (DNS labels, server_name, Host, CONNECT target). */
  readonly wire: Buffer;
  /** The same name as a person types it for `namegate check --name`. */
  readonly typed: string;
  readonly expect: Outcome;
}

const utf8 = (what: string, text: string, expect: Outcome): Row => ({
  what,
  wire: Buffer.from(text, 'utf8'),
  typed: text,
  expect,
});

const ROWS: Row[] = [
  utf8('plain', 'api.example.com', 'allow'),
  utf8('any case', 'API.Example.COM', 'allow'),
  utf8('A-label of an allowed U-label', 'xn--bcher-kva.example.com', 'allow'),
  utf8('not allowed', 'evil.example.org', 'deny'),
  utf8('U+3002 ideographic full stop', 'api\u3002example.com', 'name_invalid'),
  utf8('U+FF0E fullwidth full stop', 'api\uff0eexample.com', 'name_invalid'),
  utf8('U+FF61 halfwidth ideographic full stop', 'api\uff61example.com', 'name_invalid'),
  utf8('fullwidth letters', '\uff41\uff50\uff49.example.com', 'name_invalid'),
  utf8('U-label in UTF-8', 'b\u00fccher.example.com', 'name_invalid'),
  utf8('percent-encoded dot', 'api%2eexample.com', 'name_invalid'),
  {
    // One latin1 byte that UTS #46 would map to "a" (U+00AA feminine ordinal).
    what: 'latin1 byte 0xAA',
    wire: Buffer.concat([Buffer.from('api.ex'), Buffer.from([0xaa]), Buffer.from('mple.com')]),
    typed: 'api.ex\u00aample.com',
    expect: 'name_invalid',
  },
];

const NAMES = ['api.example.com', 'bücher.example.com'];

/** Outcome from a proxy decision line. */
function outcomeOf(line: Record<string, unknown>): string {
  if (line['reason'] === 'name_invalid') return 'name_invalid';
  return String(line['verdict']);
}

/** A DNS query for `name` (labels split at 0x2e, bytes as given). */
function dnsQuery(name: Buffer): Buffer {
  const labels: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= name.length; i++) {
    if (i === name.length || name[i] === 0x2e) {
      const l = name.subarray(start, i);
      labels.push(Buffer.from([l.length]), l);
      start = i + 1;
    }
  }
  const header = Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
  return Buffer.concat([header, ...labels, Buffer.from([0, 0, 1, 0, 1])]);
}

async function viaDns(row: Row): Promise<string> {
  const h = harness({
    policies: [dnsPolicy({ egress: [{ toFQDNs: NAMES.map((name) => ({ name })), ports: [{ port: 443 }] }] })],
  });
  await h.ask('10.0.1.5', dnsQuery(row.wire));
  const line = h.lines.at(-1)!;
  return line['reason'] === 'name_invalid' ? 'name_invalid' : String(line['verdict']);
}

function sniRule(port: number) {
  return policy({
    egress: [{ toFQDNs: NAMES.map((name) => ({ name })), ports: [{ port, protocol: 'TCP' }], verify: 'SNI' }],
  });
}

/** Each allowed name was learned for 127.0.0.2, so a name's verdict is the whole decision. */
function learnedAll(): Learned {
  const l = new Learned();
  for (const n of ['api.example.com', 'xn--bcher-kva.example.com', 'evil.example.org'])
    l.add('127.0.0.1', n, '127.0.0.2');
  return l;
}

async function viaSni(t: TestContext, row: Row): Promise<string> {
  const b = await backend(t);
  const h = await sniProxy(t, {
    policies: [sniRule(b.port)],
    learned: learnedAll(),
    dst: { address: '127.0.0.2', port: b.port },
  });
  const hello = simpleHello(row.wire.toString('latin1'));
  await client(h.port, [hello], { until: 1 });
  return outcomeOf(await decisionLine(h.lines));
}

async function viaHost(t: TestContext, row: Row): Promise<string> {
  const b = await backend(t);
  const h = await sniProxy(t, {
    policies: [sniRule(b.port)],
    learned: learnedAll(),
    dst: { address: '127.0.0.2', port: b.port },
  });
  const request = Buffer.concat([
    Buffer.from('GET / HTTP/1.1\r\nHost: '),
    row.wire,
    Buffer.from(`:${b.port}\r\n\r\n`),
  ]);
  await client(h.port, [request], { until: 1 });
  return outcomeOf(await decisionLine(h.lines));
}

/** The inspector's HTTP/2 Host check (:authority), decided before any policy is asked. */
function viaH2Authority(row: Row): string | null {
  const r = factsFromH2(
    [':method', 'GET', ':path', '/', ':scheme', 'https', ':authority', row.wire.toString('latin1')],
    { sni: 'api.example.com' as CanonicalName, port: 443 },
  );
  return r.ok ? null : r.reason;
}

class Resolver implements NameResolver {
  async resolve(_name: string) {
    return [{ ip: '127.0.0.2', family: 4 as const }];
  }
}

async function viaConnect(t: TestContext, row: Row): Promise<string> {
  const b = await backend(t);
  const lines: Array<Record<string, unknown>> = [];
  const rules = policy({
    egress: [
      { toFQDNs: NAMES.map((name) => ({ name })), ports: [{ port: b.port, protocol: 'TCP' }] },
      // The backend lives on loopback: only a toCIDRs rule lets a resolved loopback address be dialled.
      { toCIDRs: [{ cidr: '127.0.0.2/32' }], ports: [{ port: b.port, protocol: 'TCP' }] },
    ],
  });
  const proxy = await ConnectProxy.start({
    policies: { current: () => new CompiledPolicies([rules]) },
    identities: new StaticGroups(GROUPS),
    resolver: new Resolver(),
    log: silentLogger(),
    registry: new Registry(),
    flowLog: { write: (l: string) => lines.push(JSON.parse(l)) },
    settings: proxySettings({ peekTimeoutMs: 2000, connect: { listen: ['127.0.0.1:0'] } }),
  });
  t.after(() => proxy.stop());
  const authority = Buffer.concat([row.wire, Buffer.from(`:${b.port}`)]);
  const request = Buffer.concat([
    Buffer.from('CONNECT '),
    authority,
    Buffer.from(' HTTP/1.1\r\nHost: '),
    authority,
    Buffer.from('\r\n\r\n'),
  ]);
  await client(proxy.addresses()[0]!.port, [request], { until: 1 });
  return outcomeOf(await decisionLine(lines));
}

const BIN = path.resolve(import.meta.dirname, '../../bin/namegate');

async function viaCheck(dir: string, row: Row): Promise<string> {
  const r = await new Promise<{ code: number; stderr: string }>((resolve, reject) => {
    execFile(
      BIN,
      ['check', '--policy', dir, '--namespace', 'default', '--labels', 'app=web', '--name', row.typed],
      { env: { ...process.env, NO_COLOR: '1' }, timeout: 60_000 },
      (err, _stdout, stderr) => {
        if (err && typeof err.code !== 'number') return reject(err);
        resolve({ code: typeof err?.code === 'number' ? err.code : 0, stderr });
      },
    );
  });
  if (r.code === 0) return 'allow';
  if (r.code === 1) return 'deny';
  return /name_invalid/.test(r.stderr) ? 'name_invalid' : `exit ${r.code}: ${r.stderr}`;
}

describe('one name spelling: DNS, SNI, Host, CONNECT and check agree', { concurrency: 4 }, () => {
  let dir = '';
  test.before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'namegate-spelling-'));
    await writeFile(
      path.join(dir, 'policy.yaml'),
      [
        'apiVersion: namegate.dev/v1alpha1',
        'kind: ClusterEgressPolicy',
        'metadata: {name: p}',
        'spec:',
        '  egress:',
        '    - toFQDNs: [{name: api.example.com}, {name: bücher.example.com}]',
        '      ports: [{port: 443}]',
        '',
      ].join('\n'),
    );
  });
  test.after(() => rm(dir, { recursive: true, force: true }));

  for (const row of ROWS) {
    test(`${row.what}: ${JSON.stringify(row.typed)} -> ${row.expect} everywhere`, async (t) => {
      const got = {
        dns: await viaDns(row),
        sni: await viaSni(t, row),
        host: await viaHost(t, row),
        connect: await viaConnect(t, row),
        check: await viaCheck(dir, row),
      };
      const want = {
        dns: row.expect,
        sni: row.expect,
        host: row.expect,
        connect: row.expect,
        check: row.expect,
      };
      assert.deepEqual(got, want);
      // The inspector's :authority check refuses exactly the invalid spellings, with the same code.
      const h2 = viaH2Authority(row);
      if (row.expect === 'name_invalid') assert.equal(h2, 'name_invalid');
      else assert.notEqual(h2, 'name_invalid');
    });
  }
});
