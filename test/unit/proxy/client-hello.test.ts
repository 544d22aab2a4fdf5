/**
 * The ClientHello reader: captured hellos of real clients (openssl s_client, curl), crafted
 * hellos for every refusal class (TLS-03..TLS-13, TLS-15), reassembly across records and
 * segments (TLS-01), property tests (never throws, never an SNI for garbage, same verdict for
 * any segmentation) and a differential test against read-tls-client-hello (devDependency).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { getExtensionData, readTlsClientHello } from 'read-tls-client-hello';
import {
  DEFAULT_HELLO_LIMITS,
  type HelloResult,
  maxPeekBytes,
  parseClientHello,
} from '../../../src/proxy/client-hello.ts';
import {
  alpnExt,
  echOuterExt,
  hello,
  helloMessage,
  paddingExt,
  records,
  reframe,
  simpleHello,
  sniExt,
  versionsExt,
} from './hello-builder.ts';

const DATA = path.join(import.meta.dirname, '../../testdata/proxy');
const captured = (name: string) => readFileSync(path.join(DATA, name));
const CAPTURES = readdirSync(DATA).filter((f) => f.endsWith('.bin'));

/** A hello whose body ends after compression_methods. */
function noExtensions(): Buffer {
  const full = helloMessage({ extensions: [] });
  const body = full.subarray(4, -2);
  return records(Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 0xff]), body]));
}

function reason(r: HelloResult): string {
  return r.kind === 'error' ? r.reason : r.kind;
}

function sniOf(r: HelloResult): string | null {
  return r.kind === 'hello' ? r.hello.sni : null;
}

describe('captured hellos of real clients', () => {
  for (const name of CAPTURES.filter((f) => f !== 'curl-ip-no-sni.bin')) {
    test(`${name}: SNI api.example.com`, () => {
      const bytes = captured(name);
      const r = parseClientHello(bytes);
      assert.equal(r.kind, 'hello', JSON.stringify(r));
      assert.equal(sniOf(r), 'api.example.com');
    });
  }

  test('curl to an IP literal sends no SNI -> no_sni (TLS-05)', () => {
    assert.equal(reason(parseClientHello(captured('curl-ip-no-sni.bin'))), 'no_sni');
  });

  test('curl with ALPN: h2 and http/1.1 in order; TLS 1.3 versions without GREASE', () => {
    const r = parseClientHello(captured('curl-default.bin'));
    assert.equal(r.kind, 'hello');
    if (r.kind !== 'hello') return;
    assert.deepEqual(r.hello.alpn, ['h2', 'http/1.1']);
    assert.ok(r.hello.versions.includes(0x0304));
  });

  test('TLS-15: resumption with 0-RTT: PSK and early_data seen, early data after `consumed`', () => {
    const bytes = captured('openssl-psk-early.bin');
    const r = parseClientHello(bytes);
    assert.equal(r.kind, 'hello');
    if (r.kind !== 'hello') return;
    assert.ok(r.hello.psk && r.hello.earlyData);
    assert.ok(r.consumed < bytes.length, 'early data follows the hello');
    assert.notEqual(bytes[r.consumed], 22, 'what follows is not parsed as handshake');
  });

  test('TLS-01: every captured hello split into 1..64-byte records and fed a byte at a time', () => {
    for (const name of CAPTURES) {
      const whole = parseClientHello(captured(name));
      for (const size of [1, 7, 64, 100]) {
        const framed = reframe(captured(name), size);
        const limits = { ...DEFAULT_HELLO_LIMITS, maxRecords: 1024 };
        const r = parseClientHello(framed, limits);
        assert.equal(reason(r), reason(whole), `${name} in ${size}-byte records`);
        assert.equal(sniOf(r), sniOf(whole));
        if (size === 64 && r.kind === 'hello') {
          for (let i = 0; i < r.consumed; i++) {
            const prefix = parseClientHello(framed.subarray(0, i), limits);
            assert.ok(
              prefix.kind === 'more' || reason(whole) !== 'hello',
              `${name} prefix ${i}: ${reason(prefix)}`,
            );
          }
        }
      }
    }
  });
});

describe('crafted hellos', () => {
  test('a hello of 1,600 bytes (post-quantum size) over 2 records and 3 segments', () => {
    const big = hello({ extensions: [sniExt('api.example.com'), paddingExt(1400)] }, 1000);
    assert.ok(big.length > 1500);
    assert.equal(sniOf(parseClientHello(big)), 'api.example.com');
    assert.equal(parseClientHello(big.subarray(0, 700)).kind, 'more');
    assert.equal(parseClientHello(big.subarray(0, 1300)).kind, 'more');
  });

  test('uppercase SNI is folded to lowercase', () => {
    assert.equal(sniOf(parseClientHello(simpleHello('API.Example.COM'))), 'api.example.com');
  });

  const refusals: Array<[string, Buffer, string]> = [
    ['TLS-03: record length over 2^14', Buffer.from([22, 3, 1, 0x40, 0x01, 1, 0, 0, 10]), 'malformed'],
    ['TLS-03: handshake claims 16 MB', Buffer.from([22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]), 'too_large'],
    ['TLS-05: no SNI extension', hello({ extensions: [alpnExt('h2')] }), 'no_sni'],
    ['TLS-05: an empty extensions block', hello({ extensions: [] }), 'no_sni'],
    ['TLS-05: no extensions block (TLS 1.2 allows it)', noExtensions(), 'no_sni'],
    [
      'TLS-06: two server_name extensions',
      hello({ extensions: [sniExt('a.example.com'), sniExt('b.example.com')] }),
      'duplicate_extension',
    ],
    [
      'TLS-06: two names in one extension',
      hello({ extensions: [sniExt('a.example.com', 'b.example.com')] }),
      'multiple_names',
    ],
    [
      'TLS-06: a duplicated other extension',
      hello({ extensions: [sniExt('a.example.com'), alpnExt('h2'), alpnExt('h2')] }),
      'duplicate_extension',
    ],
    ['TLS-07: trailing dot', simpleHello('api.example.com.'), 'name_invalid'],
    [
      'TLS-07: NUL inside',
      hello({ extensions: [sniExt(Buffer.from('api.example.com\0.evil.net', 'latin1'))] }),
      'name_invalid',
    ],
    [
      'TLS-07: overlong UTF-8 dot',
      hello({ extensions: [sniExt(Buffer.from([0x61, 0xc0, 0x80, 0x62]))] }),
      'name_invalid',
    ],
    ['TLS-07: space', simpleHello('api example.com'), 'name_invalid'],
    ['TLS-07: label of 64', simpleHello(`${'a'.repeat(64)}.example.com`), 'name_invalid'],
    ['TLS-07: name of 254', simpleHello(`${'a.'.repeat(126)}ab`), 'name_invalid'],
    ['TLS-07: empty label', simpleHello('api..example.com'), 'name_invalid'],
    ['TLS-07: bad punycode', simpleHello('xn--zz.example.com'), 'name_invalid'],
    ['TLS-08: IPv4 literal', simpleHello('203.0.113.10'), 'ip_sni'],
    ['TLS-08: IPv6 literal', simpleHello('2001:db8::1'), 'ip_sni'],
    ['TLS-08: bracketed IPv6', simpleHello('[2001:db8::1]'), 'ip_sni'],
    ['TLS-09: HTTP', Buffer.from('GET / HTTP/1.0\r\n\r\n'), 'not_tls'],
    ['TLS-09: SSH banner', Buffer.from('SSH-2.0-OpenSSH_9.2\r\n'), 'not_tls'],
    ['TLS-09: record major 2', Buffer.from([22, 2, 0, 0, 5]), 'not_tls'],
    ['TLS-10: SSLv2-compatible hello', Buffer.from([0x80, 0x2e, 0x01, 0x03, 0x01, 0, 0x15]), 'sslv2'],
    [
      'TLS-10: SSL 3.0 legacy_version',
      hello({ extensions: [sniExt('a.example.com')], legacyVersion: 0x0300 }),
      'bad_version',
    ],
    [
      'TLS-10: unknown legacy_version',
      hello({ extensions: [sniExt('a.example.com')], legacyVersion: 0x7f1c }),
      'bad_version',
    ],
    [
      'TLS-13: legacy ESNI 0xffce',
      hello({ extensions: [sniExt('a.example.com'), [0xffce, Buffer.alloc(40, 3)]] }),
      'esni',
    ],
    ['not a ClientHello (ServerHello type)', records(Buffer.from([2, 0, 0, 2, 3, 3])), 'not_client_hello'],
    ['empty record', Buffer.from([22, 3, 1, 0, 0]), 'malformed'],
    [
      'alert record inside the hello',
      Buffer.concat([
        records(helloMessage({ extensions: [sniExt('a.example.com')] }).subarray(0, 20)),
        Buffer.from([21, 3, 3, 0, 2, 2, 40]),
      ]),
      'malformed',
    ],
    [
      'bytes after the hello in its record',
      records(
        Buffer.concat([helloMessage({ extensions: [sniExt('a.example.com')] }), Buffer.from([1, 2, 3])]),
      ),
      'malformed',
    ],
    [
      'psk not last',
      hello({ extensions: [sniExt('a.example.com'), [41, Buffer.alloc(4)], alpnExt('h2')] }),
      'malformed',
    ],
    [
      'session id of 33 bytes',
      hello({ extensions: [sniExt('a.example.com')], sessionId: Buffer.alloc(33) }),
      'malformed',
    ],
    ['no cipher suites', hello({ extensions: [sniExt('a.example.com')], suites: [] }), 'malformed'],
  ];
  for (const [what, bytes, want] of refusals) {
    test(`${what} -> ${want}`, () => {
      assert.equal(reason(parseClientHello(bytes)), want);
    });
  }

  test('TLS-03: more records than allowed -> too_large; peek cap bounds the bytes looked at', () => {
    const msg = helloMessage({ extensions: [sniExt('a.example.com')] });
    assert.equal(reason(parseClientHello(records(msg, 1))), 'too_large');
    assert.equal(maxPeekBytes(DEFAULT_HELLO_LIMITS), 4 + 16_384 + 5 * 64);
  });

  test('TLS-11: real ECH (outer type) is reported and the outer name decided on', () => {
    const r = parseClientHello(simpleHello('public.example.net', [echOuterExt(200)]));
    assert.equal(r.kind, 'hello');
    if (r.kind !== 'hello') return;
    assert.equal(r.hello.sni, 'public.example.net');
    assert.equal(r.hello.ech, 'outer');
  });

  test('TLS-12: GREASE ECH alone does not refuse the hello', () => {
    const r = parseClientHello(
      simpleHello('api.example.com', [
        echOuterExt(144),
        [0x0a0a, Buffer.alloc(0)],
        [0x1a1a, Buffer.alloc(1)],
      ]),
    );
    assert.equal(sniOf(r), 'api.example.com');
  });
});

describe('properties', () => {
  const base = [...CAPTURES.map(captured), simpleHello('api.example.com')];

  test('random bytes: never throws, never an SNI unless the bytes are a hello', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        const r = parseClientHello(bytes);
        if (r.kind === 'hello') assert.equal(bytes[0], 22);
      }),
      { numRuns: 3000 },
    );
  });

  test('random bytes behind a valid record header: never throws, any SNI is canonical', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 4, maxLength: 600 }), (body) => {
        const r = parseClientHello(
          records(Buffer.concat([Buffer.from([1, 0, (body.length >> 8) & 0xff, body.length & 0xff]), body])),
        );
        if (r.kind === 'hello') assert.match(r.hello.sni, /^[a-z0-9_.-]+$/);
      }),
      { numRuns: 3000 },
    );
  });

  test('TLS-16: mutated real hellos: never throws; a hello that still parses names only LDH text', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...base),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
        (bytes, flips) => {
          const b = Buffer.from(bytes);
          for (const [i, v] of flips) b[i % b.length] = v;
          const r = parseClientHello(b);
          if (r.kind === 'hello') assert.match(r.hello.sni, /^[a-z0-9_.-]+$/);
        },
      ),
      { numRuns: 3000 },
    );
  });

  test('truncations of real hellos ask for more; never a verdict before the last byte', () => {
    for (const b of base) {
      const whole = parseClientHello(b);
      if (whole.kind !== 'hello') continue;
      for (let i = 0; i < whole.consumed; i++) assert.equal(parseClientHello(b.subarray(0, i)).kind, 'more');
    }
  });

  test('any record framing of a hello gives the same SNI', () => {
    fc.assert(
      fc.property(fc.constantFrom(...base), fc.integer({ min: 16, max: 600 }), (bytes, size) => {
        const want = parseClientHello(bytes);
        const got = parseClientHello(reframe(bytes, size));
        assert.equal(reason(got), reason(want));
        assert.equal(sniOf(got), sniOf(want));
      }),
      { numRuns: 500 },
    );
  });
});

/** read-tls-client-hello's view of a hello (it reads exactly one record). */
async function oracle(bytes: Buffer): Promise<{ sni: string | null; alpn: string[] } | 'error'> {
  const s = new PassThrough();
  s.end(bytes);
  try {
    const h = await readTlsClientHello(s);
    const sni = getExtensionData(h, 'sni') as { serverName?: string } | null | undefined;
    const alpn = getExtensionData(h, 'alpn') as { protocols?: string[] } | null | undefined;
    return { sni: sni?.serverName ?? null, alpn: alpn?.protocols ?? [] };
  } catch {
    return 'error';
  }
}

describe('differential: read-tls-client-hello as oracle', () => {
  test('every captured hello: same SNI and ALPN', async () => {
    for (const name of CAPTURES) {
      const o = await oracle(captured(name));
      const r = parseClientHello(captured(name));
      assert.notEqual(o, 'error', name);
      if (o === 'error') continue;
      assert.equal(sniOf(r), o.sni === null ? null : o.sni.toLowerCase(), name);
      if (r.kind === 'hello') assert.deepEqual(r.hello.alpn, o.alpn, name);
    }
  });

  test('a hello split across records: we reassemble it; the oracle (one record only) cannot', async () => {
    const split = reframe(captured('curl-default.bin'), 200);
    assert.equal(sniOf(parseClientHello(split)), 'api.example.com');
    assert.equal(await oracle(split), 'error');
  });

  test('generated hellos: whenever the oracle reads a lowercase LDH name, we read the same', async () => {
    const name = fc.stringMatching(/^[a-z0-9]{1,20}(\.[a-z0-9]{1,20}){1,3}\.[a-z]{2,6}$/);
    await fc.assert(
      fc.asyncProperty(
        name,
        fc.array(fc.constantFrom('h2', 'http/1.1', 'spdy/3'), { maxLength: 3 }),
        async (n, protos) => {
          const exts = [
            sniExt(n),
            versionsExt(0x0304, 0x0303),
            ...(protos.length > 0 ? [alpnExt(...protos)] : []),
          ];
          const bytes = hello({ extensions: exts });
          const o = await oracle(bytes);
          const r = parseClientHello(bytes);
          assert.notEqual(o, 'error');
          if (o === 'error') return;
          assert.equal(sniOf(r), o.sni);
          if (r.kind === 'hello') assert.deepEqual(r.hello.alpn, o.alpn);
        },
      ),
      { numRuns: 200 },
    );
  });
});
