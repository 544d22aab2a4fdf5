/** Importer for npep documents (stub: to be implemented). */
import type { Importer } from './importer.ts';

export const npepImporter: Importer = {
  dialect: 'npep',
  accepts: (apiVersion, kind) =>
    apiVersion.startsWith('policy.networking.k8s.io/') &&
    /^(?:AdminNetworkPolicy|ClusterNetworkPolicy)$/.test(kind),
  convert: () => ({
    documents: [],
    warnings: [],
    errors: [{ path: '', message: 'npep import is not implemented yet' }],
  }),
};
