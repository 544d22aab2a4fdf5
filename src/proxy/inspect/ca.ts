/**
 * The inspection CA: a certificate and its private key read from two PEM files (a file pair, or
 * a Kubernetes Secret of type kubernetes.io/tls mounted as a volume: tls.crt and tls.key, which
 * is also what cert-manager writes). Checked on load: the certificate is a CA (basicConstraints
 * cA), it is valid now, and the key is its key. The key is imported once as a non-extractable
 * WebCrypto key for signing leaves; its bytes are never logged, put in an error, or exposed.
 *
 * Hot reload (rotation): CaStore polls both files' identity (inode, size, mtime; Secret volumes
 * swap a symlink) and, when they change, loads the new pair. A pair that fails the checks is
 * refused and the last good CA stays (REL-06); a good one replaces it and every leaf minted from
 * the old one is dropped (see LeafMinter.reset).
 */
import { createPrivateKey, createPublicKey, webcrypto, X509Certificate } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { ErrorCode, NamegateError } from '../../core/errors.ts';

export interface InspectionCa {
  /** The CA certificate, PEM (sent after the leaf, so clients that have the root still chain). */
  readonly certPem: string;
  readonly cert: X509Certificate;
  /** Non-extractable signing key. */
  readonly key: webcrypto.CryptoKey;
  readonly signing: { readonly name: string; readonly hash?: string };
  /** SHA-256 fingerprint of the certificate: which CA is in use, safe to log. */
  readonly fingerprint: string;
  readonly notAfter: Date;
}

export interface CaFiles {
  readonly certFile: string;
  readonly keyFile: string;
}

function caError(message: string): NamegateError {
  return new NamegateError(ErrorCode.ConfigInvalid, `inspection CA: ${message}`);
}

/** Build the CA from PEM text; throws a NamegateError naming what is wrong (never the key). */
export async function parseCa(
  certPem: string,
  keyPem: string,
  now: Date = new Date(),
): Promise<InspectionCa> {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    throw caError('the certificate file does not hold a PEM certificate');
  }
  if (!cert.ca)
    throw caError(`${cert.subject.replace(/\n/g, ', ')} is not a CA certificate (basicConstraints cA)`);
  if (new Date(cert.validFrom) > now || new Date(cert.validTo) <= now)
    throw caError(`the CA certificate is not valid now (${cert.validFrom} to ${cert.validTo})`);
  let pkcs8: Buffer;
  let keyType: string | undefined;
  let curve: string | undefined;
  try {
    const key = createPrivateKey(keyPem);
    keyType = key.asymmetricKeyType;
    curve = key.asymmetricKeyDetails?.namedCurve;
    const pub = createPublicKey(key).export({ type: 'spki', format: 'der' });
    const certPub = cert.publicKey.export({ type: 'spki', format: 'der' });
    if (!pub.equals(certPub)) throw caError('the private key does not belong to the CA certificate');
    pkcs8 = key.export({ type: 'pkcs8', format: 'der' });
  } catch (err) {
    if (err instanceof NamegateError) throw err;
    throw caError('the key file does not hold a readable private key');
  }
  let algorithm: webcrypto.EcKeyImportParams | webcrypto.RsaHashedImportParams;
  let signing: InspectionCa['signing'];
  if (keyType === 'ec') {
    const named = curve === 'prime256v1' ? 'P-256' : curve === 'secp384r1' ? 'P-384' : null;
    if (!named) throw caError(`EC curve ${curve} is not supported (P-256 or P-384)`);
    algorithm = { name: 'ECDSA', namedCurve: named };
    signing = { name: 'ECDSA', hash: named === 'P-384' ? 'SHA-384' : 'SHA-256' };
  } else if (keyType === 'rsa') {
    algorithm = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
    signing = { name: 'RSASSA-PKCS1-v1_5' };
  } else throw caError(`key type ${keyType} is not supported (EC or RSA)`);
  const key = await webcrypto.subtle.importKey('pkcs8', pkcs8, algorithm, false, ['sign']);
  pkcs8.fill(0);
  return {
    certPem: cert.toString(),
    cert,
    key,
    signing,
    fingerprint: cert.fingerprint256,
    notAfter: new Date(cert.validTo),
  };
}

export async function loadCa(files: CaFiles, now?: Date): Promise<InspectionCa> {
  let certPem: string;
  let keyPem: string;
  try {
    certPem = await readFile(files.certFile, 'utf8');
  } catch (err) {
    throw caError(`cannot read ${files.certFile}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  try {
    keyPem = await readFile(files.keyFile, 'utf8');
  } catch (err) {
    throw caError(`cannot read ${files.keyFile}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  return parseCa(certPem, keyPem, now);
}

export interface CaStoreEvents {
  /** A new CA replaced the old one. */
  readonly onRotate?: (ca: InspectionCa) => void;
  /** A changed pair was refused; the old CA stays. */
  readonly onRefused?: (error: Error) => void;
}

/** The current CA, reloaded when its files change. */
export class CaStore {
  readonly #files: CaFiles;
  readonly #events: CaStoreEvents;
  #ca: InspectionCa;
  #stamp: string;
  #timer: NodeJS.Timeout | null = null;
  #checking = false;

  private constructor(files: CaFiles, ca: InspectionCa, stamp: string, events: CaStoreEvents) {
    this.#files = files;
    this.#ca = ca;
    this.#stamp = stamp;
    this.#events = events;
  }

  /** Load the pair (throws when it is unusable: no inspection without a CA, fail closed). */
  static async open(files: CaFiles, events: CaStoreEvents = {}): Promise<CaStore> {
    const stamp = await stampOf(files);
    const ca = await loadCa(files);
    return new CaStore(files, ca, stamp, events);
  }

  /** A store around a CA already in memory (tests, the benchmark); never reloads. */
  static fixed(ca: InspectionCa): CaStore {
    return new CaStore({ certFile: '', keyFile: '' }, ca, '', {});
  }

  get current(): InspectionCa {
    return this.#ca;
  }

  /** Poll the files every intervalMs (Secret volumes update by symlink swap: no inotify event on the files). */
  watch(intervalMs: number): void {
    if (this.#timer || this.#files.certFile === '') return;
    this.#timer = setInterval(() => void this.check(), intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** Reload when the files changed; resolves true when a new CA is in use. */
  async check(): Promise<boolean> {
    if (this.#checking || this.#files.certFile === '') return false;
    this.#checking = true;
    try {
      const stamp = await stampOf(this.#files).catch(() => null);
      if (stamp === null || stamp === this.#stamp) return false;
      try {
        const ca = await loadCa(this.#files);
        this.#stamp = stamp;
        if (ca.fingerprint === this.#ca.fingerprint) return false;
        this.#ca = ca;
        this.#events.onRotate?.(ca);
        return true;
      } catch (err) {
        // Remember the stamp: the same broken pair is reported once, not every poll.
        this.#stamp = stamp;
        this.#events.onRefused?.(err as Error);
        return false;
      }
    } finally {
      this.#checking = false;
    }
  }
}

async function stampOf(files: CaFiles): Promise<string> {
  const [a, b] = await Promise.all([stat(files.certFile), stat(files.keyFile)]);
  return `${a.ino}:${a.size}:${a.mtimeMs}/${b.ino}:${b.size}:${b.mtimeMs}`;
}
