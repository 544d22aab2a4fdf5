/**
 * `namegate agent --config FILE`: the node agent (gateway or Kubernetes DaemonSet). Runs until
 * SIGTERM or SIGINT (SIGHUP reloads the policy files); the kernel table stays in place after it
 * exits, so learned and established traffic keeps flowing and new DNS fails closed until the
 * agent is back.
 */
import type { Command } from 'commander';
import { startAgent } from '../agent/agent.ts';
import { loadConfig } from '../config/load.ts';
import { errorMessage } from '../core/errors.ts';
import { createLogger } from '../observe/log.ts';
import { removeTable } from './datapath.ts';
import { Exit } from './output.ts';
import { runUntilSignal } from './run-agent.ts';

interface AgentCliOptions {
  config: string;
  listenHealth?: string;
  removeTableOnStop?: boolean;
  healthSocket?: string;
}

export function registerAgent(program: Command): void {
  program
    .command('agent')
    .description('run the node agent: DNS proxy, nftables datapath, policy and identity sync, metrics')
    .requiredOption('--config <file>', 'agent config file (YAML)')
    .option(
      '--listen-health <host:port>',
      'address of /metrics, /healthz and /readyz (overrides http.listen)',
    )
    .option(
      '--health-socket <path>',
      'also serve /readyz on this Unix socket: a probe through it reaches this agent, not a neighbour on the shared port',
    )
    .option(
      '--remove-table-on-stop',
      "delete the node's nftables table after stopping (set by the chart's uninstall hook; never on upgrades)",
    )
    .action(async (opts: AgentCliOptions) => {
      // An invalid config is a ConfigError (NG_CONFIG_INVALID): main.ts prints it and exits 2.
      const config = await loadConfig(opts.config);
      const log = createLogger('agent');
      await runUntilSignal(log, () =>
        startAgent({
          config,
          log,
          ...(opts.listenHealth ? { httpListen: opts.listenHealth } : {}),
          ...(opts.healthSocket ? { healthSocket: opts.healthSocket } : {}),
        }),
      );
      if (opts.removeTableOnStop && process.exitCode === Exit.Ok) {
        // helm uninstall: no agent follows, so no pod may stay behind the table's DNS redirect.
        const deleted = await removeTable(config.datapath.table, log).catch((err: unknown) => {
          log.error({ event: 'agent', err: errorMessage(err) }, 'could not delete the nftables table');
          return false;
        });
        log.info(
          { event: 'agent', reason: 'table_removed', deleted },
          'uninstall: the nftables table is gone',
        );
      }
    });
}
