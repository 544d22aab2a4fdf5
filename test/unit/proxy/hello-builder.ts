/**
 * Builds ClientHello bytes for tests: a well-formed TLS 1.3-style hello with chosen extensions,
 * and re-framing of any hello into several records (as a middlebox-evading or post-quantum
 * client would send it).
 */

export type Extension = readonly [type: number, data: Buffer];

const u16 = (n: number) => Buffer.from([(n >> 8) & 0xff, n & 0xff]);
const u24 = (n: number) => Buffer.from([(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);

export function sniExt(...names: Array<string | Buffer>): Extension {
  const entries = names.map((n) => {
    const b = typeof n === 'string' ? Buffer.from(n, 'latin1') : n;
    return Buffer.concat([Buffer.from([0]), u16(b.length), b]);
  });
  const list = Buffer.concat(entries);
  return [0, Buffer.concat([u16(list.length), list])];
}

export function alpnExt(...protos: string[]): Extension {
  const list = Buffer.concat(
    protos.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p, 'latin1')])),
  );
  return [16, Buffer.concat([u16(list.length), list])];
}

export function versionsExt(...versions: number[]): Extension {
  return [43, Buffer.concat([Buffer.from([versions.length * 2]), ...versions.map(u16)])];
}

/** An ECH extension: type 0 (outer) with a cipher suite, config id, enc and payload (random-looking). */
export function echOuterExt(payloadBytes = 32): Extension {
  const enc = Buffer.alloc(32, 7);
  const payload = Buffer.alloc(payloadBytes, 9);
  return [
    0xfe0d,
    Buffer.concat([
      Buffer.from([0]),
      u16(1),
      u16(1),
      Buffer.from([42]),
      u16(enc.length),
      enc,
      u16(payload.length),
      payload,
    ]),
  ];
}

export function paddingExt(n: number): Extension {
  return [21, Buffer.alloc(n)];
}

export interface HelloSpec {
  readonly extensions: readonly Extension[];
  readonly legacyVersion?: number;
  readonly sessionId?: Buffer;
  readonly suites?: readonly number[];
}

/** The handshake message (type 1 + 24-bit length + body). */
export function helloMessage(spec: HelloSpec): Buffer {
  const exts = Buffer.concat(spec.extensions.map(([t, d]) => Buffer.concat([u16(t), u16(d.length), d])));
  const suites = spec.suites ?? [0x1301, 0x1302, 0xc02f];
  const sid = spec.sessionId ?? Buffer.alloc(32, 1);
  const body = Buffer.concat([
    u16(spec.legacyVersion ?? 0x0303),
    Buffer.alloc(32, 0xab),
    Buffer.from([sid.length]),
    sid,
    u16(suites.length * 2),
    ...suites.map(u16),
    Buffer.from([1, 0]),
    u16(exts.length),
    exts,
  ]);
  return Buffer.concat([Buffer.from([1]), u24(body.length), body]);
}

/** Wrap a handshake message into records of at most `size` bytes each. */
export function records(message: Buffer, size = 16_384, recordVersion = 0x0301): Buffer {
  const out: Buffer[] = [];
  for (let i = 0; i < message.length; i += size) {
    const frag = message.subarray(i, Math.min(message.length, i + size));
    out.push(Buffer.from([22]), u16(recordVersion), u16(frag.length), frag);
  }
  return Buffer.concat(out);
}

export function hello(spec: HelloSpec, recordSize?: number): Buffer {
  return records(helloMessage(spec), recordSize);
}

/** Re-frame a captured hello (one or more records) into records of `size` bytes. */
export function reframe(captured: Buffer, size: number): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  let end = captured.length;
  while (at + 5 <= captured.length && captured[at] === 22) {
    const len = captured.readUInt16BE(at + 3);
    parts.push(captured.subarray(at + 5, at + 5 + len));
    at += 5 + len;
    end = at;
  }
  return Buffer.concat([
    records(Buffer.concat(parts), size, captured.readUInt16BE(1)),
    captured.subarray(end),
  ]);
}

export const simpleHello = (name: string, extra: Extension[] = []) =>
  hello({ extensions: [sniExt(name), alpnExt('h2', 'http/1.1'), versionsExt(0x0304, 0x0303), ...extra] });
