/** Every foreign dialect namegate reads; load.ts picks one by apiVersion and kind. */
import { ciliumImporter } from './cilium.ts';
import { gkeImporter } from './gke.ts';
import type { Importer } from './importer.ts';
import { istioImporter } from './istio.ts';
import { npepImporter } from './npep.ts';

export const IMPORTERS: readonly Importer[] = [ciliumImporter, istioImporter, npepImporter, gkeImporter];
