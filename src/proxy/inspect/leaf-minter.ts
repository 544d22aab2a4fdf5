/**
 * Leaf certificates for inspected names: one per SNI, signed by the inspection CA, built with
 * @peculiar/x509 (no hand-made ASN.1). ECDSA P-256, short-lived (leafValidityS, default one
 * day, back-dated an hour for clock skew), serverAuth only, the SNI as the one subjectAltName.
 *
 * All leaves of one CA share one P-256 key made when the CA is loaded: a key pair per name
 * would cost a key generation per cold name and buy nothing, since the key lives only in this
 * process, like the CA key that signs every leaf anyway. A rotation makes a new key.
 *
 * Minted TLS contexts are cached by name, bounded (maxEntries, least recently used leaves
 * first) and renewed when half of their validity is gone. Concurrent first connections for
 * one name share one minting.
 */
import { randomBytes, webcrypto } from 'node:crypto';
import tls from 'node:tls';
// @peculiar/x509 resolves its ASN.1 providers through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import type { Clock } from '../../core/clock.ts';
import type { CaStore, InspectionCa } from './ca.ts';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export interface LeafMinterOptions {
  readonly maxEntries: number;
  readonly leafValiditySeconds: number;
  readonly clock: Clock;
}

interface Entry {
  readonly context: tls.SecureContext;
  /** Monotonic ms after which the entry is renewed. */
  readonly renewAt: number;
  readonly fingerprint: string;
}

/**
 * What every leaf of one CA shares, built once per CA (a mint costs about 3 ms of ASN.1 work in
 * @peculiar/x509; re-parsing the CA and re-hashing both keys each time more than doubled it).
 */
interface LeafKey {
  readonly fingerprint: string;
  readonly keys: Promise<{
    /** The leaf key's SPKI, parsed once (the library would export the CryptoKey per leaf). */
    publicKey: x509.PublicKey;
    keyPem: string;
    issuer: string;
    authorityKeyId: x509.Extension;
    subjectKeyId: x509.Extension;
  }>;
}

const SKEW_MS = 3_600_000;

export class LeafMinter {
  readonly #store: CaStore;
  readonly #o: LeafMinterOptions;
  readonly #cache = new Map<string, Entry>();
  readonly #pending = new Map<string, Promise<tls.SecureContext>>();
  #leafKey: LeafKey | null = null;
  /** Leaves minted (cache misses) since start. */
  minted = 0;

  constructor(store: CaStore, o: LeafMinterOptions) {
    this.#store = store;
    this.#o = o;
  }

  get size(): number {
    return this.#cache.size;
  }

  /** Drop every cached leaf (after a CA rotation). */
  reset(): void {
    this.#cache.clear();
    this.#leafKey = null;
  }

  /** The cached context for `name`, or null (a synchronous fast path for warm names). */
  cached(name: string): tls.SecureContext | null {
    const e = this.#cache.get(name);
    if (!e) return null;
    if (e.fingerprint !== this.#store.current.fingerprint || this.#o.clock.now() >= e.renewAt) return null;
    // Least recently used order: a hit moves the entry to the end.
    this.#cache.delete(name);
    this.#cache.set(name, e);
    return e.context;
  }

  /** A TLS context presenting a leaf for `name` (a canonical host name). */
  async contextFor(name: string): Promise<tls.SecureContext> {
    const hit = this.cached(name);
    if (hit) return hit;
    const pending = this.#pending.get(name);
    if (pending) return pending;
    const p = this.#mint(name).finally(() => this.#pending.delete(name));
    this.#pending.set(name, p);
    return p;
  }

  async #mint(name: string): Promise<tls.SecureContext> {
    const ca = this.#store.current;
    const { publicKey, keyPem, issuer, authorityKeyId, subjectKeyId } = await this.#keyFor(ca);
    const wall = this.#o.clock.wallNow();
    const validityMs = this.#o.leafValiditySeconds * 1000;
    const notAfter = new Date(Math.min(wall + validityMs, ca.notAfter.getTime()));
    const leaf = await x509.X509CertificateGenerator.create({
      // 16 random bytes, top bit clear: a positive serial of at most 20 octets (RFC 5280 4.1.2.2).
      serialNumber:
        (randomBytes(16)[0]! & 0x7f).toString(16).padStart(2, '0') + randomBytes(15).toString('hex'),
      subject: `CN=${name}`,
      issuer,
      notBefore: new Date(wall - SKEW_MS),
      notAfter,
      signingAlgorithm: ca.signing,
      publicKey,
      signingKey: ca.key,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
        new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: name }], false),
        authorityKeyId,
        subjectKeyId,
      ],
    });
    const context = tls.createSecureContext({
      cert: `${leaf.toString('pem')}\n${ca.certPem}`,
      key: keyPem,
      minVersion: 'TLSv1.2',
      // Without `ca` every context would load Node's whole root store (a millisecond per leaf);
      // this server side verifies no client certificates, so the CA alone is enough.
      ca: ca.certPem,
    });
    this.minted++;
    // A rotation while minting: this leaf is from the old CA; serve it once, do not keep it.
    if (ca.fingerprint === this.#store.current.fingerprint) {
      const ttl = Math.max(1000, Math.min(validityMs, notAfter.getTime() - wall) / 2);
      this.#cache.set(name, { context, renewAt: this.#o.clock.now() + ttl, fingerprint: ca.fingerprint });
      while (this.#cache.size > this.#o.maxEntries) {
        const oldest = this.#cache.keys().next().value as string;
        this.#cache.delete(oldest);
      }
    }
    return context;
  }

  #keyFor(ca: InspectionCa): LeafKey['keys'] {
    if (this.#leafKey?.fingerprint === ca.fingerprint) return this.#leafKey.keys;
    const keys = (async () => {
      const pair = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
        'sign',
        'verify',
      ]);
      const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', pair.privateKey));
      const keyPem = `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END PRIVATE KEY-----\n`;
      const caCert = new x509.X509Certificate(ca.certPem);
      return {
        publicKey: new x509.PublicKey(await webcrypto.subtle.exportKey('spki', pair.publicKey)),
        keyPem,
        issuer: caCert.subject,
        authorityKeyId: await x509.AuthorityKeyIdentifierExtension.create(caCert, false),
        subjectKeyId: await x509.SubjectKeyIdentifierExtension.create(pair.publicKey, false),
      };
    })();
    this.#leafKey = { fingerprint: ca.fingerprint, keys };
    return keys;
  }
}
