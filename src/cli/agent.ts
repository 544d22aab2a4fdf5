/**
 * `namegate agent --config FILE`: the node agent (gateway or Kubernetes DaemonSet). Runs until
 * SIGTERM or SIGINT (SIGHUP reloads the policy files); the kernel table stays in place after it
 * exits, so learned and established traffic keeps flowing and new DNS fails closed until the
 * agent is back.
 */
import type { Command } from 'commander';
import { startAgent } from '../agent/agent.ts';
import { loadConfig } from '../config/load.ts';
import { createLogger } from '../observe/log.ts';
import { runUntilSignal } from './run-agent.ts';

interface AgentCliOptions {
  config: string;
  listenHealth?: string;
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
    .action(async (opts: AgentCliOptions) => {
      // An invalid config is a ConfigError (NG_CONFIG_INVALID): main.ts prints it and exits 2.
      const config = await loadConfig(opts.config);
      const log = createLogger('agent');
      await runUntilSignal(log, () =>
        startAgent({ config, log, ...(opts.listenHealth ? { httpListen: opts.listenHealth } : {}) }),
      );
    });
}
