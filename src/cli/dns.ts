/**
 * `namegate dns --config FILE`: the agent's own wiring with the datapath off (the recording
 * datapath: nothing in the kernel changes) and without the SNI/CONNECT proxies, to try policies
 * against real clients. Checkpoint, flow log, policy reloads, health and metrics behave as in
 * the agent. SIGHUP reloads the policy files at once (they are also watched; a reload with
 * errors keeps the last good policies); SIGINT/SIGTERM stop it after a last checkpoint.
 */
import type { Command } from 'commander';
import { startAgent } from '../agent/agent.ts';
import { loadConfig } from '../config/load.ts';
import { formatHostPort, parseHostPort } from '../core/host-port.ts';
import { createLogger } from '../observe/log.ts';
import { usageError } from './output.ts';
import { runUntilSignal } from './run-agent.ts';

interface DnsOptions {
  config: string;
  metrics?: string;
}

export function registerDns(program: Command): void {
  program
    .command('dns')
    .description('run the DNS proxy alone with a recording datapath (for trials; the kernel is not changed)')
    .requiredOption('--config <file>', 'agent config file (YAML)')
    .option(
      '--metrics <addr:port>',
      'serve /metrics, /healthz, /readyz, /flows and /dashboard at http://<addr:port>/',
    )
    .action(async (opts: DnsOptions) => {
      // An invalid config is a ConfigError (NG_CONFIG_INVALID): main.ts prints it and exits 2.
      const config = await loadConfig(opts.config);
      const metricsAt = opts.metrics === undefined ? null : parseHostPort(opts.metrics, 9153);
      if (typeof metricsAt === 'string') throw usageError(`--metrics: ${metricsAt}`);
      const log = createLogger('dns');
      await runUntilSignal(log, () =>
        startAgent({
          config,
          log,
          dnsOnly: true,
          httpListen: metricsAt ? formatHostPort(metricsAt) : null,
        }),
      );
    });
}
