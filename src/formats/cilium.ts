/** Importer for cilium documents (stub: to be implemented). */
import type { Importer } from './importer.ts';

export const ciliumImporter: Importer = {
  dialect: 'cilium',
  accepts: (apiVersion, kind) =>
    apiVersion.startsWith('cilium.io/') &&
    /^(?:CiliumNetworkPolicy|CiliumClusterwideNetworkPolicy)$/.test(kind),
  convert: () => ({
    documents: [],
    warnings: [],
    errors: [{ path: '', message: 'cilium import is not implemented yet' }],
  }),
};
