/** Importer for istio documents (stub: to be implemented). */
import type { Importer } from './importer.ts';

export const istioImporter: Importer = {
  dialect: 'istio',
  accepts: (apiVersion, kind) =>
    apiVersion.startsWith('networking.istio.io/') && /^(?:ServiceEntry)$/.test(kind),
  convert: () => ({
    documents: [],
    warnings: [],
    errors: [{ path: '', message: 'istio import is not implemented yet' }],
  }),
};
