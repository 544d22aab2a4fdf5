/**
 * Certificates made with openssl for tests and benchmarks (EC P-256): a CA, and server leaves
 * signed by it or self-signed. Synchronous: callers make them before anything listens.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

export interface PemFiles {
  readonly cert: string;
  readonly key: string;
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

const P256 = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

/** A CA under dir (`<name>.crt`, `<name>.key`); `extra` adds or replaces extensions. */
export function makeCa(
  dir: string,
  name: string,
  extra: string[] = ['-addext', 'basicConstraints=critical,CA:true'],
): PemFiles {
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  openssl([
    'req',
    '-x509',
    ...P256,
    '-days',
    '2',
    '-keyout',
    key,
    '-out',
    cert,
    '-subj',
    `/CN=${name}`,
    ...extra,
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return { cert, key };
}

/** A server certificate for `names` (`<tag>.crt`, `<tag>.key`), signed by `ca`, or self-signed when ca is null. */
export function makeLeaf(dir: string, ca: PemFiles | null, names: readonly string[], tag: string): PemFiles {
  const cert = path.join(dir, `${tag}.crt`);
  const key = path.join(dir, `${tag}.key`);
  const san = names.map((n) => `DNS:${n}`).join(',');
  if (ca === null) {
    openssl([
      'req',
      '-x509',
      ...P256,
      '-days',
      '2',
      '-keyout',
      key,
      '-out',
      cert,
      '-subj',
      `/CN=${names[0]}`,
      '-addext',
      `subjectAltName=${san}`,
    ]);
    return { cert, key };
  }
  const csr = path.join(dir, `${tag}.csr`);
  const ext = path.join(dir, `${tag}.ext`);
  openssl(['req', '-new', ...P256, '-keyout', key, '-out', csr, '-subj', `/CN=${names[0]}`]);
  writeFileSync(ext, `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`);
  openssl([
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    ca.cert,
    '-CAkey',
    ca.key,
    '-CAcreateserial',
    '-days',
    '2',
    '-out',
    cert,
    '-extfile',
    ext,
  ]);
  return { cert, key };
}
