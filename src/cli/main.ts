/**
 * The namegate command line. Each command lives in its own file and registers itself here;
 * handlers parse flags, call a module function and print.
 */
import { Command, CommanderError } from 'commander';
import { isNamegateError } from '../core/errors.ts';
import { registerAgent } from './agent.ts';
import { registerCheck } from './check.ts';
import { registerController } from './controller.ts';
import { registerConvert } from './convert.ts';
import { registerCrds } from './crds.ts';
import { registerDashboard } from './dashboard.ts';
import { registerDatapath } from './datapath.ts';
import { registerDns } from './dns.ts';
import { registerLab } from './lab.ts';
import { registerObserve } from './observe.ts';
import { Exit } from './output.ts';
import { registerRecommend } from './recommend.ts';
import { registerSync } from './sync.ts';
import { registerValidate } from './validate.ts';

const program = new Command('namegate')
  .description('FQDN egress control: workloads reach only the domain names their policies allow')
  .version('0.1.0')
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride();

registerValidate(program);
registerConvert(program);
registerCheck(program);
registerLab(program);
registerDns(program);
registerController(program);
registerCrds(program);
registerDatapath(program);
registerAgent(program);
registerObserve(program);
registerRecommend(program);
registerDashboard(program);
registerSync(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Help and version requests end with exit code 0; every usage problem is "bad input".
    process.exitCode = err.exitCode === 0 ? Exit.Ok : Exit.BadInput;
  } else if (isNamegateError(err)) {
    console.error(`namegate: ${err.message}`);
    process.exitCode =
      err.code === 'NG_USAGE_INVALID' || err.code === 'NG_CONFIG_INVALID' ? Exit.BadInput : Exit.Failure;
  } else {
    console.error(`namegate: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exitCode = Exit.Failure;
  }
}
