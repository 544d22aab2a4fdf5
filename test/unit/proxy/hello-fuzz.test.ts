/**
 * TLS-16: fuzzing the ClientHello path at scale. The Go crypto/tls testdata, BoGo and tlsfuzzer
 * corpora are not reachable from this machine, so the seeds are the first flights of real
 * clients captured here (test/testdata/proxy: curl and openssl, TLS 1.2 and 1.3, ALPN, PSK with
 * 0-RTT, no SNI) plus generated hellos in the shapes those corpora stress: large hellos around
 * the caps (tlsfuzzer test-large-hello), hellos spread over many records (record-layer
 * fragmentation, BoGo FragmentedClientVersion), GREASE and ECH extensions.
 *
 * Mutations: byte overwrites, insertions, deletions, truncation, splices of two seeds, boundary
 * values written into every length field (record, handshake, session id, suites, extensions,
 * one extension, the SNI list), duplicated extension blocks, random re-framing.
 *
 * Properties: the parser never throws and always ends in more | hello | error with a known
 * reason; a hello names a canonical, non-IP host and consumed only what it read; the verdict
 * depends only on the consumed bytes, and no prefix of them already gives one. Through the real
 * SNI proxy on loopback: the proxy survives every input, and it dials the backend exactly when
 * the parser reads a hello naming the one allowed, learned name. On error it never allows.
 *
 * NAMEGATE_FUZZ_RUNS scales the parser runs (default 20000 per property) for longer campaigns;
 * fast-check prints the seed and the shrunk input of any failure.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { tryCanonicalName } from '../../../src/core/names.ts';
import { HELLO_REASONS, type HelloResult, parseClientHello } from '../../../src/proxy/client-hello.ts';
import {
  alpnExt,
  echOuterExt,
  hello,
  paddingExt,
  reframe,
  simpleHello,
  sniExt,
  versionsExt,
} from './hello-builder.ts';
import { backend, client, Learned, line, policy, sniProxy } from './helpers.ts';

const DATA = path.join(import.meta.dirname, '../../testdata/proxy');
const RUNS = Number(process.env['NAMEGATE_FUZZ_RUNS'] ?? 20_000);
const ALLOWED = 'api.example.com';

const captures = readdirSync(DATA)
  .filter((f) => f.endsWith('.bin'))
  .sort()
  .map((f) => readFileSync(path.join(DATA, f)));

/** Generated seeds in the shapes of the unreachable corpora. */
const generated = [
  simpleHello(ALLOWED),
  simpleHello(ALLOWED, [echOuterExt(200), [0x0a0a, Buffer.alloc(0)], [0x1a1a, Buffer.alloc(1)]]),
  // Large hellos: just under and over the default cap (16384 bytes of hello body).
  simpleHello(ALLOWED, [paddingExt(16_000)]),
  simpleHello(ALLOWED, [paddingExt(16_400)]),
  hello({ extensions: [sniExt(ALLOWED), versionsExt(0x0304), paddingExt(3000)] }, 1),
  reframe(simpleHello(ALLOWED, [paddingExt(1500)]), 7),
  hello({ extensions: [alpnExt('h2'), versionsExt(0x0304)] }),
];
const seeds = [...captures, ...generated];
assert.ok(captures.length >= 8, 'the captured first flights are there');

/** Offsets of the length fields of a single-record hello (those mutations aim at). */
function lengthFields(b: Buffer): Array<{ at: number; size: 1 | 2 | 3 }> {
  const out: Array<{ at: number; size: 1 | 2 | 3 }> = [
    { at: 3, size: 2 }, // record length
    { at: 6, size: 3 }, // handshake length
  ];
  let p = 9 + 2 + 32; // record + handshake headers, legacy_version, random
  if (p >= b.length) return out;
  out.push({ at: p, size: 1 }); // session id
  p += 1 + b[p]!;
  if (p + 2 > b.length) return out;
  out.push({ at: p, size: 2 }); // cipher suites
  p += 2 + b.readUInt16BE(p);
  if (p >= b.length) return out;
  out.push({ at: p, size: 1 }); // compression methods
  p += 1 + b[p]!;
  if (p + 2 > b.length) return out;
  out.push({ at: p, size: 2 }); // extensions block
  p += 2;
  while (p + 4 <= b.length) {
    const type = b.readUInt16BE(p);
    const len = b.readUInt16BE(p + 2);
    out.push({ at: p + 2, size: 2 }); // this extension
    if (type === 0 && p + 6 <= b.length) out.push({ at: p + 4, size: 2 }); // server_name list
    p += 4 + len;
  }
  return out;
}

const BOUNDARY = [0, 1, 2, 0x7f, 0xff, 0x100, 0x3fff, 0x4000, 0x4001, 0xffff, 0x10000, 0xffffff];

function writeLength(b: Buffer, at: number, size: 1 | 2 | 3, v: number): void {
  if (at + size > b.length) return;
  if (size === 1) b[at] = v & 0xff;
  else if (size === 2) b.writeUInt16BE(v & 0xffff, at);
  else b.writeUIntBE(v & 0xffffff, at, 3);
}

type Mutation =
  | { kind: 'set'; at: number; byte: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; n: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'length'; field: number; value: number; delta: number }
  | { kind: 'splice'; at: number; other: number; from: number }
  | { kind: 'repeat'; at: number; n: number }
  | { kind: 'reframe'; size: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({
    kind: fc.constant('insert' as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }),
  }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 64 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant('length' as const),
    field: fc.nat(),
    value: fc.constantFrom(...BOUNDARY),
    delta: fc.integer({ min: -3, max: 3 }),
  }),
  fc.record({ kind: fc.constant('splice' as const), at: fc.nat(), other: fc.nat(), from: fc.nat() }),
  fc.record({ kind: fc.constant('repeat' as const), at: fc.nat(), n: fc.integer({ min: 4, max: 200 }) }),
  fc.record({ kind: fc.constant('reframe' as const), size: fc.integer({ min: 1, max: 600 }) }),
);

function mutate(seed: Buffer, ms: readonly Mutation[]): Buffer {
  let b: Buffer = Buffer.from(seed);
  for (const m of ms) {
    if (b.length === 0) break;
    const at = (x: number) => x % b.length;
    switch (m.kind) {
      case 'set':
        b[at(m.at)] = m.byte;
        break;
      case 'insert':
        b = Buffer.concat([b.subarray(0, at(m.at)), m.bytes, b.subarray(at(m.at))]);
        break;
      case 'delete':
        b = Buffer.concat([b.subarray(0, at(m.at)), b.subarray(at(m.at) + m.n)]);
        break;
      case 'truncate':
        b = b.subarray(0, at(m.at));
        break;
      case 'length': {
        const fields = lengthFields(b);
        const f = fields[m.field % fields.length]!;
        const current = f.size === 1 ? b[f.at]! : f.at + f.size <= b.length ? b.readUIntBE(f.at, f.size) : 0;
        writeLength(b, f.at, f.size, m.delta === 0 ? m.value : current + m.delta);
        break;
      }
      case 'splice': {
        const other = seeds[m.other % seeds.length]!;
        b = Buffer.concat([b.subarray(0, at(m.at)), other.subarray(m.from % other.length)]);
        break;
      }
      case 'repeat': {
        // Duplicate a block (an extension seen twice, a name listed twice, a record repeated).
        const from = at(m.at);
        b = Buffer.concat([b.subarray(0, from + m.n), b.subarray(from, from + m.n), b.subarray(from + m.n)]);
        break;
      }
      case 'reframe':
        if (b[0] === 22 && b.length >= 5) b = reframe(b, m.size);
        break;
    }
  }
  return b;
}

const input = fc
  .tuple(fc.nat({ max: seeds.length - 1 }), fc.array(mutation, { minLength: 1, maxLength: 6 }))
  .map(([i, ms]) => mutate(seeds[i]!, ms));

/** Every structural promise a result makes, for input `b`. */
function checkResult(b: Buffer, r: HelloResult): void {
  assert.ok(r.kind === 'more' || r.kind === 'hello' || r.kind === 'error', JSON.stringify(r));
  if (r.kind === 'error') {
    assert.ok(HELLO_REASONS.includes(r.reason), r.reason);
    assert.equal(typeof r.detail, 'string');
    return;
  }
  if (r.kind !== 'hello') return;
  assert.equal(tryCanonicalName(r.hello.sni), r.hello.sni, 'the SNI is canonical');
  assert.doesNotMatch(r.hello.sni, /^[\d.]+$/, 'never an IPv4 literal');
  assert.ok(r.consumed >= 9 && r.consumed <= b.length, `consumed ${r.consumed} of ${b.length}`);
  assert.equal(b[0], 22);
}

describe('TLS-16: ClientHello fuzzing', () => {
  test(`seeds: ${captures.length} captured first flights and ${generated.length} generated hellos parse as expected`, () => {
    for (const s of seeds) checkResult(s, parseClientHello(s));
    const over = parseClientHello(generated[3]!);
    assert.equal(over.kind === 'error' && over.reason, 'too_large', 'a hello over the cap is refused');
    const oneByteRecords = parseClientHello(generated[4]!);
    assert.equal(
      oneByteRecords.kind === 'error' && oneByteRecords.reason,
      'too_large',
      'over the record cap',
    );
  });

  test(`${RUNS} mutated hellos: never throws, every result keeps its promises`, () => {
    fc.assert(
      fc.property(input, (b) => {
        checkResult(b, parseClientHello(b));
      }),
      { numRuns: RUNS },
    );
  });

  test(`${RUNS} mutated hellos: a verdict depends only on the bytes consumed, and comes at the last of them`, () => {
    fc.assert(
      fc.property(input, fc.nat(), (b, cut) => {
        const r = parseClientHello(b);
        if (r.kind !== 'hello') return;
        const exact = parseClientHello(b.subarray(0, r.consumed));
        assert.equal(exact.kind === 'hello' && exact.hello.sni, r.hello.sni, 'same verdict without the tail');
        const prefix = parseClientHello(b.subarray(0, cut % r.consumed));
        assert.equal(prefix.kind, 'more', `no verdict after ${cut % r.consumed} of ${r.consumed} bytes`);
      }),
      { numRuns: RUNS },
    );
  });

  test('through the SNI proxy: it survives every input and allows exactly the parsed, allowed, learned hellos', async (t) => {
    const b = await backend(t, { reply: false });
    const h = await sniProxy(t, {
      policies: [
        policy({
          egress: [
            { toFQDNs: [{ name: ALLOWED }], ports: [{ port: b.port, protocol: 'TCP' }], verify: 'SNI' },
          ],
        }),
      ],
      learned: new Learned().add('127.0.0.1', ALLOWED, '127.0.0.2'),
      // The default peek deadline: every input ends with the client's FIN (an incomplete hello is
      // client_closed), so none waits for it; a short one (300 ms) fired first under load.
      dst: { address: '127.0.0.2', port: b.port },
    });
    let allowed = 0;
    let denied = 0;
    await fc.assert(
      fc.asyncProperty(input, async (bytes) => {
        const decided = h.lines.filter((l) => l['event'] === 'proxy').length;
        const dialled = b.connections.length;
        const r = parseClientHello(bytes);
        const expectAllow = r.kind === 'hello' && r.hello.sni === ALLOWED;
        // Half-close after the bytes: an incomplete hello ends as client_closed, not a timeout.
        await client(h.port, [bytes], { end: true, until: 1 });
        const d = await line(h.lines, () => h.lines.filter((l) => l['event'] === 'proxy').length > decided);
        const last = h.lines.filter((l) => l['event'] === 'proxy').at(-1) ?? d;
        if (expectAllow) {
          allowed++;
          assert.equal(last['verdict'], 'allow', JSON.stringify(last));
          assert.equal(b.connections.length, dialled + 1, 'dialled once');
        } else {
          denied++;
          assert.equal(last['verdict'], 'deny', `${r.kind}: ${JSON.stringify(last)}`);
          if (r.kind === 'error' && bytes[0] === 22) assert.equal(last['reason'], r.reason);
          assert.equal(b.connections.length, dialled, 'nothing dialled on a refusal');
        }
      }),
      { numRuns: 300 },
    );
    t.diagnostic(`through the proxy: ${allowed} allowed, ${denied} refused`);
    assert.ok(allowed > 0 && denied > 0, 'both outcomes were exercised');
  });
});
