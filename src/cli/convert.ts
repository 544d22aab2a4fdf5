/**
 * `namegate convert [--from DIALECT] FILE...`: native YAML on stdout, warnings on stderr.
 * All or nothing: with any error nothing is printed, so `convert | kubectl apply -f -` never
 * applies half a set. Without --from, every foreign document is converted by the dialect its
 * apiVersion and kind name.
 */
import { type Command, Option } from 'commander';
import { stringify } from 'yaml';
import { formatProblem, loadPolicies } from '../formats/load.ts';
import { FOREIGN_DIALECTS, type ForeignDialect, IMPORTERS } from '../formats/registry.ts';
import { colour, Exit, noPolicyMessage } from './output.ts';

export function registerConvert(program: Command): void {
  program
    .command('convert')
    .description(
      `convert ${titles()} policies to namegate EgressPolicy YAML; nothing is printed when any document has an error`,
    )
    .addOption(
      new Option(
        '--from <dialect>',
        'read only this dialect (default: each document by its apiVersion and kind)',
      ).choices(FOREIGN_DIALECTS),
    )
    .option('--namespace <ns>', 'namespace for documents that carry none', 'default')
    .argument('<paths...>', 'files or folders of YAML/JSON')
    .action(async (paths: string[], opts: { from?: ForeignDialect; namespace: string }) => {
      const report = await loadPolicies(paths, {
        ...(opts.from !== undefined ? { only: opts.from } : {}),
        context: { defaultNamespace: opts.namespace },
      });
      for (const w of report.warnings) console.error(`${colour.yellow('warning')}: ${formatProblem(w)}`);
      for (const e of report.errors) console.error(`${colour.red('error')}: ${formatProblem(e)}`);
      if (report.errors.length > 0) {
        console.error(`${report.errors.length} error(s); nothing was converted`);
        process.exitCode = Exit.BadInput;
        return;
      }
      const converted = report.documents.filter((d) =>
        opts.from === undefined ? d.dialect !== 'native' : d.dialect === opts.from,
      );
      if (converted.length === 0) {
        console.error(noPolicyMessage(paths));
        process.exitCode = Exit.BadInput;
        return;
      }
      process.stdout.write(
        converted.map((d) => stringify(stripUndefined(d.document), { lineWidth: 0 })).join('---\n'),
      );
      process.exitCode = Exit.Ok;
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
