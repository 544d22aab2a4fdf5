/**
 * The strict request-head reader and the per-request gate: NODE-08 (bare LF, obs-fold,
 * duplicate CL/TE), SNI-05 (absolute-form authority vs Host), SNI-08 (h2c), SNI-09 (HTTP/2
 * preface), SNI-11 (Host normalisation), body framing across keep-alive requests.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { GateError, HttpGate } from '../../../src/proxy/http-gate.ts';
import {
  DEFAULT_HEAD_LIMITS,
  type HeadResult,
  parseAuthority,
  parseRequestHead,
} from '../../../src/proxy/http-head.ts';

const parse = (text: string): HeadResult => parseRequestHead(Buffer.from(text, 'latin1'));
const reason = (r: HeadResult) => (r.kind === 'error' ? r.reason : r.kind);

describe('request head', () => {
  test('a plain GET: Host normalised (case, trailing dot, port)', () => {
    const r = parse('GET /x HTTP/1.1\r\nHost: API.Example.COM.:8080\r\nAccept: */*\r\n\r\nBODY');
    assert.equal(r.kind, 'head');
    if (r.kind !== 'head') return;
    assert.equal(r.head.host.host, 'api.example.com');
    assert.equal(r.head.host.port, 8080);
    assert.equal(
      r.head.headBytes,
      'GET /x HTTP/1.1\r\nHost: API.Example.COM.:8080\r\nAccept: */*\r\n\r\n'.length,
    );
    assert.deepEqual(r.head.body, { kind: 'none' });
  });

  test('incomplete heads ask for more', () => {
    assert.equal(parse('GET / HTTP/1.1\r\nHost: a.example.com\r\n').kind, 'more');
    assert.equal(parse('GET / HTTP/1.1\r\nHost: a.example.com\r').kind, 'more');
    assert.equal(parse('PRI * HTTP/2.0\r').kind, 'more');
  });

  const refusals: Array<[string, string, string]> = [
    ['NODE-08: LF-only lines', 'GET / HTTP/1.1\nHost: a.example.com\n\n', 'bare_lf'],
    ['NODE-08: bare CR', 'GET / HTTP/1.1\rHost: a.example.com\r\n\r\n', 'bare_lf'],
    ['NODE-08: obs-fold', 'GET / HTTP/1.1\r\nHost: a.example.com\r\nX: a\r\n b\r\n\r\n', 'obs_fold'],
    [
      'NODE-08: two Content-Length',
      'POST / HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n',
      'bad_length',
    ],
    [
      'NODE-08: CL list',
      'POST / HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 1, 1\r\n\r\n',
      'bad_length',
    ],
    [
      'NODE-08: CL and TE',
      'POST / HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n',
      'bad_length',
    ],
    [
      'NODE-08: two TE',
      'POST / HTTP/1.1\r\nHost: a.example.com\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n',
      'bad_transfer_encoding',
    ],
    [
      'NODE-08: TE gzip, chunked',
      'POST / HTTP/1.1\r\nHost: a.example.com\r\nTransfer-Encoding: gzip, chunked\r\n\r\n',
      'bad_transfer_encoding',
    ],
    ['NODE-08: space before colon', 'GET / HTTP/1.1\r\nHost : a.example.com\r\n\r\n', 'malformed'],
    ['NODE-08: NUL in a value', 'GET / HTTP/1.1\r\nHost: a.example.com\r\nX: a\0b\r\n\r\n', 'malformed'],
    ['no Host', 'GET / HTTP/1.1\r\n\r\n', 'bad_host'],
    ['two Hosts', 'GET / HTTP/1.1\r\nHost: a.example.com\r\nHost: b.example.com\r\n\r\n', 'bad_host'],
    ['Host with a path', 'GET / HTTP/1.1\r\nHost: a.example.com/x\r\n\r\n', 'name_invalid'],
    ['Host with userinfo', 'GET / HTTP/1.1\r\nHost: u@a.example.com\r\n\r\n', 'name_invalid'],
    [
      'SNI-05: absolute-form differs from Host',
      'GET http://evil.com/ HTTP/1.1\r\nHost: allowed.com\r\n\r\n',
      'authority_mismatch',
    ],
    [
      'SNI-05: absolute-form port differs',
      'GET http://allowed.com:8080/ HTTP/1.1\r\nHost: allowed.com\r\n\r\n',
      'authority_mismatch',
    ],
    [
      'SNI-08: Upgrade h2c',
      'GET / HTTP/1.1\r\nHost: a.example.com\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n',
      'h2c_upgrade',
    ],
    [
      'SNI-08: Upgrade h2c alone',
      'GET / HTTP/1.1\r\nHost: a.example.com\r\nUpgrade: websocket, H2C\r\n\r\n',
      'h2c_upgrade',
    ],
    ['SNI-09: HTTP/2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'h2_prior_knowledge'],
    ['HTTP/2.0 request line', 'GET / HTTP/2.0\r\nHost: a.example.com\r\n\r\n', 'bad_version'],
    ['HTTP/0.9', 'GET /\r\n\r\n', 'malformed'],
    ['TLS bytes', '\x16\x03\x01\x00\x05', 'not_http'],
    ['SSH banner', 'SSH-2.0-OpenSSH_9.2\r\n', 'not_http'],
    ['space in target', 'GET /a b HTTP/1.1\r\nHost: a.example.com\r\n\r\n', 'malformed'],
  ];
  for (const [what, text, want] of refusals) {
    test(`${what} -> ${want}`, () => assert.equal(reason(parse(text)), want));
  }

  test('websocket upgrade is allowed (checked like any request)', () => {
    const r = parse(
      'GET /ws HTTP/1.1\r\nHost: a.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
    );
    assert.equal(r.kind === 'head' && r.head.upgrade, 'websocket');
  });

  test('too large: no end of head within the cap', () => {
    const r = parseRequestHead(
      Buffer.from(`GET / HTTP/1.1\r\nX: ${'a'.repeat(20_000)}`),
      DEFAULT_HEAD_LIMITS,
    );
    assert.equal(reason(r), 'too_large');
  });

  test('authorities', () => {
    assert.deepEqual(parseAuthority('[2001:DB8::1]:443'), { host: null, ip: '2001:db8::1', port: 443 });
    assert.deepEqual(parseAuthority('203.0.113.1'), { host: null, ip: '203.0.113.1', port: null });
    assert.equal(typeof parseAuthority('a.example.com:0'), 'string');
    assert.equal(typeof parseAuthority('a.example.com:99999'), 'string');
    assert.equal(typeof parseAuthority('2001:db8::1'), 'string');
    assert.equal(typeof parseAuthority('0x7f.1'), 'string');
  });

  test('property: random bytes never throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (b) => {
        parseRequestHead(b);
      }),
      { numRuns: 3000 },
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), fc.string({ maxLength: 60 }), (target, host) => {
        parse(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
      }),
      { numRuns: 2000 },
    );
  });
});

/** Feed `chunks` through a gate; what came out, and the error if any. */
async function gate(chunks: string[], check: (host: string) => string | null) {
  const g = new HttpGate((h) => check(h.host.host ?? ''), DEFAULT_HEAD_LIMITS);
  const out: Buffer[] = [];
  g.on('data', (d: Buffer) => out.push(d));
  const error = new Promise<Error | null>((resolve) => {
    g.on('error', resolve);
    g.on('end', () => resolve(null));
  });
  for (const c of chunks) g.write(Buffer.from(c, 'latin1'));
  g.end();
  return { out: Buffer.concat(out).toString('latin1'), error: await error, requests: g.requests };
}

describe('per-request gate', () => {
  const allowA = (h: string) => (h === 'a.example.com' ? null : 'host_not_allowed');

  test('keep-alive: a second request with another Host is refused and never forwarded', async () => {
    const first = 'GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n';
    const r = await gate([first, 'GET / HTTP/1.1\r\nHost: b.example.com\r\n\r\n'], allowA);
    assert.equal(r.out, first);
    assert.ok(r.error instanceof GateError && r.error.reason === 'host_not_allowed');
  });

  test('Content-Length and chunked bodies are skipped, the next head is found and checked', async () => {
    const reqs = [
      'POST / HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 11\r\n\r\nGET / HTTP/',
      'POST / HTTP/1.1\r\nHost: a.example.com\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nHost:\r\n0\r\nT: v\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n',
    ];
    const all = reqs.join('');
    // Any segmentation gives the same result.
    for (const size of [1, 3, 17, all.length]) {
      const chunks: string[] = [];
      for (let i = 0; i < all.length; i += size) chunks.push(all.slice(i, i + size));
      const r = await gate(chunks, allowA);
      assert.equal(r.error, null, `size ${size}`);
      assert.equal(r.out, all);
      assert.equal(r.requests, 3);
    }
  });

  test('smuggling attempt: a bad chunk size line fails the stream', async () => {
    const r = await gate(
      ['POST / HTTP/1.1\r\nHost: a.example.com\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'],
      allowA,
    );
    assert.ok(r.error instanceof GateError && r.error.reason === 'bad_chunk');
  });

  test('after a websocket upgrade the stream is a tunnel', async () => {
    const up = 'GET /ws HTTP/1.1\r\nHost: a.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n';
    const r = await gate([up, '\x81\x05hello', 'GET / HTTP/1.1\r\nHost: b\r\n\r\n'], allowA);
    assert.equal(r.error, null);
    assert.ok(r.out.endsWith('Host: b\r\n\r\n'));
  });
});
