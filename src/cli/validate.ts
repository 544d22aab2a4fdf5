/** `namegate validate FILE...`: exit 0 when every document is valid, 2 with field-path errors. */
import type { Command } from 'commander';
import { formatProblem, loadPolicies } from '../formats/load.ts';
import { colour, Exit, noPolicyMessage } from './output.ts';

export function registerValidate(program: Command): void {
  program
    .command('validate')
    .description('check policy files (any supported dialect) and print every problem with its field path')
    .argument('<paths...>', 'files or folders of YAML/JSON')
    .option('-q, --quiet', 'print errors only, no warnings or summary')
    .action(async (paths: string[], opts: { quiet?: boolean }) => {
      const report = await loadPolicies(paths);
      for (const e of report.errors) console.error(`${colour.red('error')}: ${formatProblem(e)}`);
      if (!opts.quiet)
        for (const w of report.warnings) console.error(`${colour.yellow('warning')}: ${formatProblem(w)}`);
      if (report.errors.length > 0) {
        console.error(`${report.errors.length} error(s); nothing was applied`);
        process.exitCode = Exit.BadInput;
        return;
      }
      if (report.policies.length === 0) {
        console.error(noPolicyMessage(paths));
        process.exitCode = Exit.BadInput;
        return;
      }
      if (!opts.quiet)
        console.log(`ok: ${report.policies.length} polic${report.policies.length === 1 ? 'y' : 'ies'} valid`);
      process.exitCode = Exit.Ok;
    });
}
