/**
 * The lab cluster's PKI, made with openssl (EC P-256, valid 30 days): one CA for every component,
 * as a kubeadm cluster has, and a certificate per identity. Component identities are the names
 * the API server's default RBAC knows (system:kube-controller-manager, system:kube-scheduler,
 * system:kube-proxy, system:node:<node> in system:nodes).
 */
import path from 'node:path';
import { makeCert, opensslConfig } from '../certs.ts';
import { must } from '../run.ts';
import type { ClusterPlan } from './plan.ts';

export interface Identity {
  /** File name stem: <pki>/<file>.crt and .key. */
  readonly file: string;
  readonly subject: string;
  readonly kind: 'client' | 'server';
  readonly sans?: readonly string[];
}

export function identities(cp: ClusterPlan): Identity[] {
  const node = cp.nodeName;
  return [
    {
      file: 'apiserver',
      subject: '/CN=kube-apiserver',
      kind: 'server',
      sans: [
        `IP:${cp.apiServiceIP}`,
        `IP:${cp.nodeIP}`,
        'IP:127.0.0.1',
        'DNS:localhost',
        'DNS:kubernetes',
        'DNS:kubernetes.default',
        'DNS:kubernetes.default.svc',
        `DNS:kubernetes.default.svc.${cp.clusterDomain}`,
      ],
    },
    {
      file: 'kubelet-serving',
      subject: `/CN=${node}`,
      kind: 'server',
      sans: [`IP:${cp.nodeIP}`, `DNS:${node}`],
    },
    {
      file: 'apiserver-kubelet-client',
      subject: '/O=system:masters/CN=kube-apiserver-kubelet-client',
      kind: 'client',
    },
    { file: 'admin', subject: '/O=system:masters/CN=namegate-lab-admin', kind: 'client' },
    { file: 'kube-controller-manager', subject: '/CN=system:kube-controller-manager', kind: 'client' },
    { file: 'kube-scheduler', subject: '/CN=system:kube-scheduler', kind: 'client' },
    { file: 'kube-proxy', subject: '/CN=system:kube-proxy', kind: 'client' },
    { file: 'kubelet', subject: `/O=system:nodes/CN=system:node:${node}`, kind: 'client' },
  ];
}

export function pkiFile(cp: ClusterPlan, stem: string, ext: 'crt' | 'key' | 'pub'): string {
  return path.join(cp.paths.pki, `${stem}.${ext}`);
}

export async function makeClusterPki(cp: ClusterPlan): Promise<void> {
  const cnf = await opensslConfig(cp.paths.pki);
  const ca = { cert: pkiFile(cp, 'ca', 'crt'), key: pkiFile(cp, 'ca', 'key') };
  await makeCert({
    cnf,
    ...ca,
    subject: `/O=namegate lab/CN=namegate lab ${cp.lab.name} cluster CA`,
    extensions: 'ca_ext',
  });
  const sa = pkiFile(cp, 'sa', 'key');
  await Promise.all([
    must(['openssl', 'genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', sa]).then(
      () => must(['openssl', 'pkey', '-in', sa, '-pubout', '-out', pkiFile(cp, 'sa', 'pub')]),
    ),
    ...identities(cp).map((id) =>
      makeCert({
        cnf,
        key: pkiFile(cp, id.file, 'key'),
        cert: pkiFile(cp, id.file, 'crt'),
        subject: id.subject,
        extensions: id.kind === 'client' ? 'client_ext' : 'leaf_ext',
        ...(id.sans ? { subjectAltName: id.sans.join(',') } : {}),
        ca,
      }),
    ),
  ]);
}
