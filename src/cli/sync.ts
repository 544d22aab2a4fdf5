/**
 * `namegate sync --config FILE`: keep IP allowlists following DNS where namegate cannot own DNS
 * (NetworkPolicy, an nftables gateway, AWS and Google Cloud request files). `--once` resolves
 * every name once, writes every target once, prints the status and exits (0: every target
 * written; 3: a target failed). Otherwise it runs until SIGTERM/SIGINT, following DNS and
 * policy changes; SIGHUP re-reads the policy files.
 */
import type { Command } from 'commander';
import { type RunningSync, startSync } from '../agent/sync.ts';
import { loadConfig } from '../config/load.ts';
import { errorMessage } from '../core/errors.ts';
import { createLogger } from '../observe/log.ts';
import { Exit, usageError } from './output.ts';
import { runUntilSignal } from './run-agent.ts';

interface SyncCliOptions {
  config: string;
  once?: boolean;
  listenHealth?: string;
}

export function registerSync(program: Command): void {
  program
    .command('sync')
    .description(
      'keep IP allowlists following DNS (NetworkPolicy, nftables, AWS, Google Cloud) where a DNS proxy cannot run',
    )
    .requiredOption('--config <file>', 'config file (YAML) with a `sync` section, dns.upstreams and policies')
    .option('--once', 'resolve every name once, write every target once, print the status and exit')
    .option(
      '--listen-health <host:port>',
      'address of /metrics, /healthz, /readyz and /status (overrides http.listen)',
    )
    .addHelpText(
      'after',
      `
Exact names are resolved through dns.upstreams (A and AAAA, CNAMEs followed) and re-resolved
before their TTL runs out; every address seen within sync.windowSeconds stays allowed. Wildcard
patterns cannot be resolved: they are reported (log, metric, status) and nothing is written for
them; use the DNS proxy (namegate agent) for those. A failed resolution keeps the last good
addresses. See docs/sync.md and docs/enforcement-modes.md.

Examples:
  namegate sync --config sync.yaml --once     # one pass; status on stdout
  namegate sync --config sync.yaml            # follow DNS; /status on http.listen`,
    )
    .action(async (opts: SyncCliOptions) => {
      const config = await loadConfig(opts.config);
      if (!config.sync) throw usageError(`${opts.config}: no \`sync\` section (see docs/sync.md)`);
      const log = createLogger('sync');
      if (!opts.once) {
        await runUntilSignal(
          log,
          () => startSync({ config, log, ...(opts.listenHealth ? { httpListen: opts.listenHealth } : {}) }),
          'sync',
        );
        return;
      }
      let running: RunningSync;
      try {
        running = await startSync({ config, log, once: true, httpListen: null });
      } catch (err) {
        log.fatal({ event: 'sync', err: errorMessage(err) }, 'sync did not start');
        process.exitCode = Exit.Failure;
        return;
      }
      const status = await running.syncer.once();
      await running.stop();
      process.stdout.write(`${JSON.stringify(status, null, 2)}\n`);
      const failed = Object.values(status.targets).some((t) => t && !t.ok);
      process.exitCode = failed ? Exit.Failure : Exit.Ok;
    });
}
