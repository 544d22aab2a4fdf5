/** `namegate convert --from DIALECT FILE...`: native YAML on stdout, warnings on stderr. */
import { type Command, Option } from 'commander';
import { stringify } from 'yaml';
import { formatProblem, loadPolicies } from '../formats/load.ts';
import { FOREIGN_DIALECTS, type ForeignDialect, IMPORTERS } from '../formats/registry.ts';
import { colour, Exit } from './output.ts';

export function registerConvert(program: Command): void {
  program
    .command('convert')
    .description(`convert ${titles()} policies to namegate EgressPolicy YAML`)
    .addOption(
      new Option('--from <dialect>', 'the dialect to read').choices(FOREIGN_DIALECTS).makeOptionMandatory(),
    )
    .option('--namespace <ns>', 'namespace for documents that carry none', 'default')
    .argument('<paths...>', 'files or folders of YAML/JSON')
    .action(async (paths: string[], opts: { from: ForeignDialect; namespace: string }) => {
      const report = await loadPolicies(paths, {
        only: opts.from,
        context: { defaultNamespace: opts.namespace },
      });
      for (const w of report.warnings) console.error(`${colour.yellow('warning')}: ${formatProblem(w)}`);
      for (const e of report.errors) console.error(`${colour.red('error')}: ${formatProblem(e)}`);
      const converted = report.documents.filter((d) => d.dialect === opts.from);
      const out = converted.map((d) => stringify(stripUndefined(d.document), { lineWidth: 0 })).join('---\n');
      if (out !== '') process.stdout.write(out);
      if (converted.length === 0 && report.errors.length === 0) {
        console.error(`no ${opts.from} documents found in ${paths.join(', ')}`);
        process.exitCode = Exit.BadInput;
        return;
      }
      process.exitCode = report.errors.length > 0 ? Exit.BadInput : Exit.Ok;
    });
}

function stripUndefined(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value));
}

/** "Cilium, Istio, network-policy-api or GKE", from the registry. */
function titles(): string {
  const t = IMPORTERS.map((i) => i.title);
  return t.length < 2 ? t.join('') : `${t.slice(0, -1).join(', ')} or ${t.at(-1)}`;
}
