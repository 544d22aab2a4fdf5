/**
 * The namegate command line. Each command lives in its own file and registers itself here;
 * handlers parse flags, call a module function and print.
 */
import { Command, CommanderError } from 'commander';
import { isNamegateError } from '../core/errors.ts';
import { Exit } from './output.ts';

type Register = (program: Command) => void;

/**
 * Every command, in help order, loaded on demand: a run imports only the module of the command
 * it names (all of them for help or an unknown name). Loading every command's module graph
 * (the agent, Kubernetes, the lab, sync) made each start of `namegate check` cost seconds of
 * CPU, which scripts and tests that start the CLI many times paid every time.
 */
const COMMANDS: Record<string, () => Promise<Register>> = {
  validate: async () => (await import('./validate.ts')).registerValidate,
  convert: async () => (await import('./convert.ts')).registerConvert,
  check: async () => (await import('./check.ts')).registerCheck,
  lab: async () => (await import('./lab.ts')).registerLab,
  dns: async () => (await import('./dns.ts')).registerDns,
  controller: async () => (await import('./controller.ts')).registerController,
  crds: async () => (await import('./crds.ts')).registerCrds,
  datapath: async () => (await import('./datapath.ts')).registerDatapath,
  agent: async () => (await import('./agent.ts')).registerAgent,
  observe: async () => (await import('./observe.ts')).registerObserve,
  recommend: async () => (await import('./recommend.ts')).registerRecommend,
  dashboard: async () => (await import('./dashboard.ts')).registerDashboard,
  sync: async () => (await import('./sync.ts')).registerSync,
};

const program = new Command('namegate')
  .description('FQDN egress control: workloads reach only the domain names their policies allow')
  .version('0.1.0')
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride();

const named = process.argv[2];
const load =
  named !== undefined && Object.hasOwn(COMMANDS, named) ? [COMMANDS[named]!] : Object.values(COMMANDS);
for (const register of await Promise.all(load.map((l) => l()))) register(program);

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
