import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { ManualClock } from '../../../../src/core/clock.ts';
import { CaStore, loadCa } from '../../../../src/proxy/inspect/ca.ts';
import { LeafMinter } from '../../../../src/proxy/inspect/leaf-minter.ts';
import { makeCa } from '../../../support/openssl-certs.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'ng-ca-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function ca(name: string, extra?: string[]) {
  const f = makeCa(dir, name, extra);
  return { certFile: f.cert, keyFile: f.key };
}

describe('inspection CA', () => {
  test('a certificate that is not a CA, or a key of another certificate, is refused with a message that never holds the key', async () => {
    const leaf = ca('not-a-ca', ['-addext', 'basicConstraints=critical,CA:false']);
    await assert.rejects(loadCa(leaf), /not a CA certificate/);
    const a = ca('a');
    const b = ca('b');
    await assert.rejects(loadCa({ certFile: a.certFile, keyFile: b.keyFile }), (err: Error) => {
      assert.match(err.message, /does not belong/);
      assert.doesNotMatch(err.message, /PRIVATE KEY|BEGIN/);
      return true;
    });
    writeFileSync(path.join(dir, 'garbage.key'), 'not a key');
    await assert.rejects(
      loadCa({ certFile: a.certFile, keyFile: path.join(dir, 'garbage.key') }),
      /readable private key/,
    );
  });

  test('rotation: a new pair replaces the CA; a broken pair is refused and the old one stays', async () => {
    const files = { certFile: path.join(dir, 'live.crt'), keyFile: path.join(dir, 'live.key') };
    const first = ca('first');
    copyFileSync(first.certFile, files.certFile);
    copyFileSync(first.keyFile, files.keyFile);
    const events: string[] = [];
    const store = await CaStore.open(files, {
      onRotate: () => events.push('rotated'),
      onRefused: () => events.push('refused'),
    });
    const before = store.current.fingerprint;
    writeFileSync(files.keyFile, 'broken');
    assert.equal(await store.check(), false);
    assert.equal(store.current.fingerprint, before);
    const second = ca('second');
    copyFileSync(second.certFile, files.certFile);
    copyFileSync(second.keyFile, files.keyFile);
    assert.equal(await store.check(), true);
    assert.notEqual(store.current.fingerprint, before);
    assert.deepEqual(events, ['refused', 'rotated']);
  });

  test('leaves: P-256, the name as SAN, signed by the CA, cached with a bound, renewed at half life', async () => {
    const store = await CaStore.open(ca('minter'));
    const clock = new ManualClock();
    const m = new LeafMinter(store, { maxEntries: 2, leafValiditySeconds: 3600, clock });
    const ctx = await m.contextFor('a.example.com');
    assert.equal(await m.contextFor('a.example.com'), ctx);
    await m.contextFor('b.example.com');
    await m.contextFor('c.example.com');
    assert.equal(m.size, 2);
    assert.equal(m.cached('a.example.com'), null, 'least recently used went first');
    clock.advance(1_800_001);
    assert.equal(m.cached('c.example.com'), null, 'renewed after half the validity');
    const pem = (ctx.context as unknown as { getCertificate(): Buffer | null }).getCertificate?.();
    if (pem) {
      const cert = new X509Certificate(pem);
      assert.equal(cert.subjectAltName, 'DNS:a.example.com');
      assert.ok(cert.checkIssued(store.current.cert));
    }
  });
});
