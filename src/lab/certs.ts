/**
 * The lab CA and one certificate per web name, made with openssl (EC P-256: fast to make, valid
 * for 30 days). Clients in the pods trust the CA with `curl --cacert <state>/ca/ca.crt`; nothing
 * is added to the machine's trust store.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { certPaths } from './nginx-config.ts';
import type { LabPlan } from './plan.ts';
import { statePaths } from './plan.ts';
import { must } from './run.ts';

/** One openssl config for every lab certificate: a CA, servers and (for the cluster) clients. */
const OPENSSL_CONFIG = `# namegate lab CA
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[ca_ext]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[leaf_ext]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`;

const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '30'];

/** Write the openssl config into `dir`; returns its path. */
export async function opensslConfig(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const cnf = path.join(dir, 'openssl.cnf');
  await writeFile(cnf, OPENSSL_CONFIG);
  return cnf;
}

export interface CertRequest {
  readonly cnf: string;
  readonly key: string;
  readonly cert: string;
  readonly subject: string;
  readonly extensions: 'ca_ext' | 'leaf_ext' | 'client_ext';
  readonly subjectAltName?: string;
  /** Signed by this CA; self-signed without. */
  readonly ca?: { readonly cert: string; readonly key: string };
}

/** A new EC P-256 key and its certificate, valid 30 days. */
export async function makeCert(r: CertRequest): Promise<void> {
  await must([
    'openssl',
    'req',
    '-config',
    r.cnf,
    '-x509',
    ...KEY,
    '-keyout',
    r.key,
    '-out',
    r.cert,
    '-subj',
    r.subject,
    '-extensions',
    r.extensions,
    ...(r.subjectAltName ? ['-addext', `subjectAltName=${r.subjectAltName}`] : []),
    ...(r.ca ? ['-CA', r.ca.cert, '-CAkey', r.ca.key] : []),
  ]);
}

export async function makeCertificates(plan: LabPlan): Promise<void> {
  const dir = statePaths(plan).ca;
  const cnf = await opensslConfig(dir);
  const ca = { key: path.join(dir, 'ca.key'), cert: statePaths(plan).caCert };
  await makeCert({
    cnf,
    ...ca,
    subject: `/O=namegate lab/CN=namegate lab ${plan.name} CA`,
    extensions: 'ca_ext',
  });
  const names = plan.sites.flatMap((s) => s.names);
  await Promise.all(
    names.map((name) =>
      makeCert({
        cnf,
        ...certPaths(plan, name),
        subject: `/CN=${name}`,
        extensions: 'leaf_ext',
        subjectAltName: `DNS:${name}`,
        ca,
      }),
    ),
  );
}
