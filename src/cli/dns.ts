/**
 * `namegate dns --config FILE`: run the DNS proxy alone, with the recording datapath (nothing
 * in the kernel changes), to try policies against real clients. SIGHUP reloads the policy
 * files (a reload with errors keeps the last good policies); SIGINT/SIGTERM stop it after a
 * last checkpoint.
 */
import { once } from 'node:events';
import http from 'node:http';
import type { Command } from 'commander';
import { pino } from 'pino';
import { loadConfig, parseHostPort } from '../config/load.ts';
import type { AgentConfig } from '../config/schema.ts';
import { systemClock } from '../core/clock.ts';
import { errorMessage } from '../core/errors.ts';
import { RecordingDatapath } from '../datapath/recording.ts';
import { DnsProxy } from '../dns/proxy.ts';
import { formatProblem, loadPolicies } from '../formats/load.ts';
import { StaticGroups } from '../identity/static-groups.ts';
import { createLogger, type Logger } from '../observe/log.ts';
import { createRegistry } from '../observe/metrics.ts';
import { CompiledPolicies } from '../policy/compile.ts';
import { Exit, usageError } from './output.ts';

interface DnsOptions {
  config: string;
  metrics?: string;
}

async function compile(config: AgentConfig, log: Logger): Promise<CompiledPolicies | null> {
  const report = await loadPolicies(config.policies);
  for (const w of report.warnings) log.warn({ problem: formatProblem(w) }, 'policy warning');
  if (report.errors.length > 0) {
    for (const e of report.errors) log.error({ problem: formatProblem(e) }, 'policy error');
    return null;
  }
  return new CompiledPolicies(report.policies.map((p) => p.policy));
}

export function registerDns(program: Command): void {
  program
    .command('dns')
    .description('run the DNS proxy alone with a recording datapath (for trials; the kernel is not changed)')
    .requiredOption('--config <file>', 'agent config file (YAML)')
    .option('--metrics <addr:port>', 'serve Prometheus metrics at http://<addr:port>/metrics')
    .action(async (opts: DnsOptions) => {
      // An invalid config is a ConfigError (NG_CONFIG_INVALID): main.ts prints it and exits 2.
      const config = await loadConfig(opts.config);
      const metricsAt = opts.metrics === undefined ? null : parseHostPort(opts.metrics, 9153);
      if (typeof metricsAt === 'string') throw usageError(`--metrics: ${metricsAt}`);

      const log = createLogger('dns');
      const flowDest = pino.destination({
        dest: config.dns.flowLog.path ?? 1,
        sync: false,
        minLength: 4096,
        ...(config.dns.flowLog.path ? { mkdir: true, append: true } : {}),
      });
      const flowLog = config.dns.flowLog.mode === 'none' ? null : flowDest;

      let current = await compile(config, log);
      if (!current) {
        console.error('fix the policy errors above (namegate validate prints them too)');
        process.exitCode = Exit.BadInput;
        return;
      }
      const registry = createRegistry({ defaultMetrics: true });
      const datapath = new RecordingDatapath(systemClock);
      const proxy = await DnsProxy.start({
        config,
        policies: { current: () => current as CompiledPolicies },
        identities: new StaticGroups(config.sources),
        datapath,
        registry,
        log,
        flowLog,
      });
      log.info(
        { listen: proxy.addresses(), policies: current.size },
        'dns proxy listening (recording datapath)',
      );

      let metricsServer: http.Server | null = null;
      if (metricsAt) {
        metricsServer = http.createServer((req, res) => {
          if (req.url !== '/metrics') {
            res.writeHead(404).end();
            return;
          }
          registry.metrics().then(
            (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
            (err: unknown) => res.writeHead(500).end(errorMessage(err)),
          );
        });
        metricsServer.listen(metricsAt.port, metricsAt.host);
      }

      const onHup = () => {
        compile(config, log).then(
          (next) => {
            if (next) {
              current = next;
              log.info({ policies: next.size }, 'policies reloaded');
            } else {
              log.error('policy reload failed; keeping the last good policies');
            }
          },
          (err: unknown) =>
            log.error({ err: errorMessage(err) }, 'policy reload failed; keeping the last good policies'),
        );
      };
      process.on('SIGHUP', onHup);
      await Promise.race([once(process, 'SIGINT'), once(process, 'SIGTERM')]);
      process.off('SIGHUP', onHup);
      log.info('stopping');
      await proxy.stop();
      metricsServer?.close();
      flowDest.flushSync();
      process.exitCode = Exit.Ok;
    });
}
