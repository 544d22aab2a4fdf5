/**
 * `namegate datapath status|uninstall|ruleset`: look at or remove the kernel state the agent
 * leaves in place on purpose (enforcement outlives the agent).
 *   status     sets, their element counts and size limits, per-source drop counters
 *   uninstall  delete table inet namegate: enforcement stops at once (idempotent)
 *   ruleset    print the table the driver would program for the default config
 */
import type { Command } from 'commander';
import { ErrorCode, NamegateError } from '../core/errors.ts';
import { resolveNftConfig } from '../datapath/nft-config.ts';
import { NftDatapath } from '../datapath/nft-driver.ts';
import { openExecutor } from '../datapath/nft-executor.ts';
import { renderRuleset } from '../datapath/nft-ruleset.ts';
import { createLogger } from '../observe/log.ts';
import { colour, Exit } from './output.ts';

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
    .command('uninstall')
    .description(
      'delete table inet namegate: every namegate rule, set and learned element (enforcement stops)',
    )
    .option('--table <name>', 'nftables table (family inet)', 'namegate')
    .action(async (opts: Opts) => {
      const config = resolveNftConfig({ table: opts.table });
      const exec = await openExecutor('auto', createLogger('datapath'));
      try {
        const r = await exec.run(`delete table inet ${config.table}`);
        if (!r.ok && !/No such file or directory/.test(r.err))
          throw new NamegateError(ErrorCode.CommandFailed, `delete table inet ${config.table}: ${r.err}`);
        console.log(
          r.ok ? `table inet ${config.table} deleted` : `table inet ${config.table} was not present`,
        );
        process.exitCode = Exit.Ok;
      } finally {
        await exec.close();
      }
    });

  cmd
    .command('ruleset')
    .description('print the nftables table the driver programs (default config)')
    .action(() => {
      console.log(renderRuleset(resolveNftConfig()));
      process.exitCode = Exit.Ok;
    });
}
