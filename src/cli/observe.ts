/**
 * `namegate observe`: follow flows (DNS, proxy, kernel) live or from history, from one agent,
 * every agent of a cluster, or flow log files; filtered; as a table, compact lines or JSON lines.
 */
import { type Command, Option } from 'commander';
import { collectFlows } from '../flows/client.ts';
import type { FlowEvent } from '../flows/event.ts';
import {
  compactLine,
  jsonLine,
  OUTPUT_FORMATS,
  type OutputFormat,
  table,
  tableHeader,
  tableRow,
} from '../flows/format.ts';
import { type OriginOptions, originOptions, resolveOrigins } from './flow-origins.ts';
import { colour } from './output.ts';

interface ObserveOptions extends OriginOptions {
  follow?: boolean;
  output: OutputFormat;
}

export function registerObserve(program: Command): void {
  const cmd = program
    .command('observe')
    .description('show flows (DNS answers, proxy decisions, kernel drops) live or from history, filtered')
    .option('-f, --follow', 'keep following new flows (Ctrl-C ends)')
    .addOption(
      new Option('-o, --output <format>', 'table, compact or json (one FlowEvent per line)')
        .choices(OUTPUT_FORMATS)
        .default('table'),
    );
  originOptions(cmd).action(async (opts: ObserveOptions) => {
    const r = await resolveOrigins(opts);
    const abort = new AbortController();
    const stop = () => abort.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    // Lines are gathered and written in chunks: one write per line costs a system call each,
    // which at thousands of events a second is most of what this process does.
    let pending: string[] = [];
    let timer: NodeJS.Timeout | null = null;
    const flush = () => {
      if (timer) clearTimeout(timer);
      timer = null;
      if (pending.length === 0) return;
      process.stdout.write(`${pending.join('\n')}\n`);
      pending = [];
    };
    const out = (s: string) => {
      pending.push(s);
      if (pending.length >= 512) flush();
      else timer ??= setTimeout(flush, 50);
    };
    const collected: FlowEvent[] = [];
    let header = false;
    const onEvent = (e: FlowEvent) => {
      if (opts.output === 'json') out(jsonLine(e));
      else if (opts.output === 'compact') out(compactLine(e, colour));
      else if (!opts.follow) collected.push(e);
      else {
        if (!header) {
          out(tableHeader(r.multi));
          header = true;
        }
        out(tableRow(e, r.multi, colour));
      }
    };
    // Without --follow, an agent sends its whole memory: default to the last 20 then (as hubble).
    const last = r.last ?? (opts.follow || r.sinceMs !== undefined ? undefined : 20);
    if (last !== undefined && !r.params.has('last')) r.params.set('last', String(last));
    try {
      await collectFlows(
        r.origins,
        { params: r.params, follow: opts.follow === true },
        {
          follow: opts.follow === true,
          filter: r.predicate,
          ...(r.sinceMs !== undefined ? { sinceMs: r.sinceMs } : {}),
          ...(r.untilMs !== undefined ? { untilMs: r.untilMs } : {}),
          ...(last !== undefined ? { last } : {}),
          tagNodes: r.multi,
        },
        onEvent,
        abort.signal,
      );
    } finally {
      flush();
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
    if (opts.output === 'table' && !opts.follow)
      process.stdout.write(collected.length > 0 ? table(collected, colour) : '');
  });
}
