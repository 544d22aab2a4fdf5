/** Importer for gke documents (stub: to be implemented). */
import type { Importer } from './importer.ts';

export const gkeImporter: Importer = {
  dialect: 'gke',
  accepts: (apiVersion, kind) =>
    apiVersion.startsWith('networking.gke.io/') && /^(?:FQDNNetworkPolicy)$/.test(kind),
  convert: () => ({
    documents: [],
    warnings: [],
    errors: [{ path: '', message: 'gke import is not implemented yet' }],
  }),
};
