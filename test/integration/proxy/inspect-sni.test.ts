/**
 * The SNI proxy in front of the inspector (loopback, real TLS): which connections are inspected
 * (verify: Inspect), which pass through untouched (passThrough, for clients that pin their
 * server's key), what happens without a usable CA, and Audit sources.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { Registry } from 'prom-client';
import { systemClock } from '../../../src/core/clock.ts';
import { silentLogger } from '../../../src/observe/log.ts';
import { CaStore } from '../../../src/proxy/inspect/ca.ts';
import { Inspector } from '../../../src/proxy/inspect/inspector.ts';
import { LeafMinter } from '../../../src/proxy/inspect/leaf-minter.ts';
import { inspectMetrics } from '../../../src/proxy/inspect/metrics.ts';
import { RequestLog } from '../../../src/proxy/inspect/request-log.ts';
import { Learned, policy, sniProxy } from '../../unit/proxy/helpers.ts';
import { makeCa, makeLeaf } from './inspect-fixture.ts';

const API = 'api.example.test';
const PINNED = 'pinned.example.test';
const dir = mkdtempSync(path.join(os.tmpdir(), 'ng-inspect-sni-'));
const inspectionCa = makeCa(dir, 'inspection');
const publicCa = makeCa(dir, 'public');
const leaf = makeLeaf(dir, publicCa, [API, PINNED], 'site');
const siteFingerprint = new X509Certificate(readFileSync(leaf.cert)).fingerprint256;
let site: https.Server;
let port = 0;
const reached: string[] = [];
let inspector: Inspector;
const requestLines: Array<Record<string, unknown>> = [];

before(async () => {
  site = https.createServer({ cert: readFileSync(leaf.cert), key: readFileSync(leaf.key) }, (req, res) => {
    reached.push(`${req.headers.host} ${req.method} ${req.url}`);
    res.end('site');
  });
  await new Promise<void>((r) => site.listen(0, '127.0.0.2', () => r()));
  port = (site.address() as net.AddressInfo).port;
  const store = await CaStore.open({ certFile: inspectionCa.cert, keyFile: inspectionCa.key });
  inspector = new Inspector({
    minter: new LeafMinter(store, { maxEntries: 10, leafValiditySeconds: 3600, clock: systemClock }),
    upstreamCa: readFileSync(publicCa.cert, 'utf8'),
    connectTimeoutMs: 3000,
    handshakeTimeoutMs: 3000,
    idleTimeoutMs: 10_000,
    headLimits: { maxHeadBytes: 16_384, maxFields: 100 },
    maxConcurrentStreams: 10,
    requestLog: new RequestLog(
      { write: (l: string) => requestLines.push(JSON.parse(l)) },
      'all',
      'sni-proxy',
      Date.now,
    ),
    metrics: inspectMetrics(new Registry()),
    clock: systemClock,
    log: silentLogger(),
  });
});
after(async () => {
  await new Promise<void>((r) => site.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});

const rule = (mode: 'Enforce' | 'Audit' = 'Enforce') =>
  policy(
    {
      egress: [
        {
          toFQDNs: [{ name: API }, { name: PINNED }],
          ports: [{ port, protocol: 'TCP' }],
          verify: 'Inspect',
          http: [{ methods: ['GET'], path: { prefix: '/ok' } }],
          passThrough: [{ name: PINNED }],
        },
      ],
    },
    'inspect',
    mode,
  );

/** GET over TLS to the proxy; `pin`: accept only the site's own certificate (a pinning client). */
function get(
  proxyPort: number,
  name: string,
  p: string,
  pin: boolean,
): Promise<{ status: number } | { error: string }> {
  return new Promise((resolve) => {
    const req = https.get(
      {
        host: '127.0.0.1',
        port: proxyPort,
        servername: name,
        path: p,
        headers: { host: `${name}:${port}` },
        ca: [readFileSync(inspectionCa.cert), readFileSync(publicCa.cert)],
        agent: false,
        checkServerIdentity: (host, cert) => {
          if (pin && cert.fingerprint256 !== siteFingerprint) return new Error('pin mismatch');
          return tls.checkServerIdentity(host, cert);
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
      },
    );
    req.on('error', (e) => resolve({ error: e.message }));
  });
}

describe('the SNI proxy hands inspected connections to the inspector', () => {
  const learned = () =>
    new Learned().add('127.0.0.1', API, '127.0.0.2').add('127.0.0.1', PINNED, '127.0.0.2');

  test('an inspected name: the pinning client fails closed (nothing reaches the site); a trusting client is judged per request', async (t) => {
    const h = await sniProxy(t, {
      policies: [rule()],
      learned: learned(),
      dst: { address: '127.0.0.2', port },
      inspector,
    });
    const before = reached.length;
    const pinned = await get(h.port, API, '/ok', true);
    assert.ok('error' in pinned, 'the minted leaf is not the pinned certificate');
    assert.equal(reached.length, before);
    assert.deepEqual(await get(h.port, API, '/ok/1', false), { status: 200 });
    assert.deepEqual(await get(h.port, API, '/no', false), { status: 403 });
    assert.deepEqual(reached.slice(before), [`${API}:${port} GET /ok/1`]);
    const conn = h.lines.find((l) => l['event'] === 'proxy' && l['sni'] === API && l['verdict'] === 'allow');
    assert.equal(conn?.['inspect'], true);
  });

  test('a passThrough name: the pinning client gets the site itself, unmodified, and no request is judged', async (t) => {
    const h = await sniProxy(t, {
      policies: [rule()],
      learned: learned(),
      dst: { address: '127.0.0.2', port },
      inspector,
    });
    const before = reached.length;
    const judged = requestLines.length;
    assert.deepEqual(await get(h.port, PINNED, '/anything', true), { status: 200 });
    assert.deepEqual(reached.slice(before), [`${PINNED}:${port} GET /anything`]);
    assert.equal(requestLines.length, judged);
    const conn = h.lines.find((l) => l['event'] === 'proxy' && l['sni'] === PINNED);
    assert.equal(conn?.['inspect'], undefined);
  });

  test('without a usable CA, a connection that needs inspection is refused, never passed uninspected', async (t) => {
    const h = await sniProxy(t, {
      policies: [rule()],
      learned: learned(),
      dst: { address: '127.0.0.2', port },
      inspector: null,
    });
    const before = reached.length;
    const r = await get(h.port, API, '/ok', false);
    assert.ok('error' in r);
    assert.equal(reached.length, before);
    const line = h.lines.find((l) => l['event'] === 'proxy' && l['sni'] === API);
    assert.equal(line?.['reason'], 'inspection_unavailable');
    assert.equal(line?.['verdict'], 'deny');
  });

  test('Audit: a request the HTTP rules would deny passes, logged as audit', async (t) => {
    const h = await sniProxy(t, {
      policies: [rule('Audit')],
      learned: learned(),
      dst: { address: '127.0.0.2', port },
      inspector,
    });
    assert.deepEqual(await get(h.port, API, '/no-audit', false), { status: 200 });
    const line = requestLines.findLast((l) => l['path'] === '/no-audit');
    assert.equal(line?.['verdict'], 'audit');
    assert.equal(line?.['reason'], 'path_not_allowed');
    void h;
  });
});
