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
`;

const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '30'];

export async function makeCertificates(plan: LabPlan): Promise<void> {
  const dir = statePaths(plan).ca;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const cnf = path.join(dir, 'openssl.cnf');
  await writeFile(cnf, OPENSSL_CONFIG);
  const caKey = path.join(dir, 'ca.key');
  const caCert = statePaths(plan).caCert;
  await must([
    'openssl',
    'req',
    '-config',
    cnf,
    '-x509',
    ...KEY,
    '-keyout',
    caKey,
    '-out',
    caCert,
    '-subj',
    `/O=namegate lab/CN=namegate lab ${plan.name} CA`,
    '-extensions',
    'ca_ext',
  ]);
  const names = plan.sites.flatMap((s) => s.names);
  await Promise.all(
    names.map((name) => {
      const { cert, key } = certPaths(plan, name);
      return must([
        'openssl',
        'req',
        '-config',
        cnf,
        '-x509',
        ...KEY,
        '-keyout',
        key,
        '-out',
        cert,
        '-subj',
        `/CN=${name}`,
        '-extensions',
        'leaf_ext',
        '-addext',
        `subjectAltName=DNS:${name}`,
        '-CA',
        caCert,
        '-CAkey',
        caKey,
      ]);
    }),
  );
}
