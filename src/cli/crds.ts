/** `namegate crds`: print (or write) the CustomResourceDefinitions generated from the policy schema. */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { crdFileName, crdsYaml, crdYaml, generateCrds } from '../k8s/crd.ts';

export function registerCrds(program: Command): void {
  program
    .command('crds')
    .description('print the EgressPolicy and ClusterEgressPolicy CRDs (YAML, for kubectl apply -f -)')
    .option('--out <dir>', 'write one file per CRD into this folder instead')
    .action(async (opts: { out?: string }) => {
      if (!opts.out) {
        process.stdout.write(crdsYaml());
        return;
      }
      await mkdir(opts.out, { recursive: true });
      for (const crd of generateCrds()) {
        const file = path.join(opts.out, crdFileName(crd));
        await writeFile(file, crdYaml(crd));
        console.log(file);
      }
    });
}
