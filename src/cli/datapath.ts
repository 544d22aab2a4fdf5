/**
 * `namegate datapath status|uninstall|ruleset`: look at or remove the kernel state the agent
 * leaves in place on purpose (enforcement outlives the agent).
 *   status     sets, their element counts and size limits, per-source drop counters
 *   uninstall  delete table inet namegate: enforcement stops at once (idempotent)
 *   uninstall-on-stop  the chart's pre-delete hook: agents delete it when they stop
 *   ruleset    print the table the driver would program for the default config
 */
import type { Command } from 'commander';
import { ErrorCode, NamegateError } from '../core/errors.ts';
import { resolveNftConfig } from '../datapath/nft-config.ts';
import { NftDatapath } from '../datapath/nft-driver.ts';
import { openExecutor } from '../datapath/nft-executor.ts';
import { renderRuleset } from '../datapath/nft-ruleset.ts';
import { KubeApi, loadKubeConfig } from '../k8s/api.ts';
import { prepareUninstall } from '../k8s/rollout.ts';
import { createLogger, type Logger } from '../observe/log.ts';
import { colour, Exit } from './output.ts';

/** Delete table inet <table>; false when it was not there (idempotent). */
export async function removeTable(table: string, logger: Logger): Promise<boolean> {
  const exec = await openExecutor('auto', logger);
  try {
    const r = await exec.run(`delete table inet ${table}`);
    if (!r.ok && !/No such file or directory/.test(r.err))
      throw new NamegateError(ErrorCode.CommandFailed, `delete table inet ${table}: ${r.err}`);
    return r.ok;
  } finally {
    await exec.close();
  }
}

interface Opts {
  table: string;
  json?: boolean;
}

export function registerDatapath(program: Command): void {
  const cmd = program.command('datapath').description("inspect or remove namegate's nftables table");

  cmd
    .command('status')
    .description('sets, element counts and per-source drop counters of table inet namegate')
    .option('--table <name>', 'nftables table (family inet)', 'namegate')
    .option('--json', 'print JSON')
    .action(async (opts: Opts) => {
      const dp = await NftDatapath.open({ config: { table: opts.table }, logger: createLogger('datapath') });
      try {
        const s = await dp.status();
        if (opts.json) {
          console.log(JSON.stringify(s, null, 2));
        } else if (!s.present) {
          console.log(`table inet ${s.table}: ${colour.yellow('not present')} (nothing is enforced)`);
        } else {
          console.log(`table inet ${s.table} (executor: ${s.executor})`);
          for (const set of s.sets)
            console.log(
              `  set ${set.name.padEnd(10)} ${String(set.elements).padStart(8)} / ${set.size ?? '-'}`,
            );
          const drops = [...s.drops].sort((a, b) => b.packets - a.packets);
          if (drops.length > 0) console.log('  dropped packets per source (Audit: would-be drops):');
          for (const d of drops) console.log(`    ${d.source.padEnd(40)} ${d.mode.padEnd(8)} ${d.packets}`);
          const u = s.sourceDrops;
          if (u.unknown + u.spoofed > 0)
            console.log(`  dropped packets of the source CIDRs: unknown ${u.unknown}, spoofed ${u.spoofed}`);
        }
        process.exitCode = Exit.Ok;
      } finally {
        await dp.close();
      }
    });

  cmd
    .command('uninstall-on-stop')
    .description(
      "make every agent of a DaemonSet remove the table when it stops (the chart's pre-delete hook; waits for the rollout)",
    )
    .requiredOption('--daemonset <name>', 'the agent DaemonSet')
    .option('--namespace <ns>', 'its namespace (default: $POD_NAMESPACE, else namegate-system)')
    .option('--container <name>', 'the agent container', 'agent')
    .option('--timeout <seconds>', 'longest wait for the rollout', '240')
    .action(async (opts: { daemonset: string; namespace?: string; container: string; timeout: string }) => {
      const log = createLogger('datapath');
      const done = await prepareUninstall(
        new KubeApi(loadKubeConfig(), { userAgent: 'namegate-uninstall' }),
        {
          namespace: opts.namespace ?? process.env['POD_NAMESPACE'] ?? 'namegate-system',
          daemonSet: opts.daemonset,
          container: opts.container,
          timeoutMs: Number(opts.timeout) * 1000,
          log,
        },
      );
      if (!done)
        throw new NamegateError(
          ErrorCode.CommandFailed,
          `daemonset ${opts.daemonset} did not roll out in ${opts.timeout} s`,
        );
      console.log(`daemonset ${opts.daemonset}: every agent removes table inet namegate when it stops`);
      process.exitCode = Exit.Ok;
    });

  cmd
    .command('uninstall')
    .description(
      'delete table inet namegate: every namegate rule, set and learned element (enforcement stops)',
    )
    .option('--table <name>', 'nftables table (family inet)', 'namegate')
    .action(async (opts: Opts) => {
      const table = resolveNftConfig({ table: opts.table }).table;
      const deleted = await removeTable(table, createLogger('datapath'));
      console.log(deleted ? `table inet ${table} deleted` : `table inet ${table} was not present`);
      process.exitCode = Exit.Ok;
    });

  cmd
    .command('ruleset')
    .description('print the nftables table the driver programs (default config)')
    .action(() => {
      console.log(renderRuleset(resolveNftConfig()));
      process.exitCode = Exit.Ok;
    });
}
