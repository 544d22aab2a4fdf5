/**
 * `namegate recommend`: the minimal policies that would have allowed what Audit-mode (or
 * ungoverned) workloads did, from flow log files or from the agents' history, as namegate,
 * Cilium or network-policy-api YAML. Every document is checked by its format's reader first.
 */
import { type Command, Option } from 'commander';
import { MAX_LAST, parseTime } from '../flows/api.ts';
import { collectFlows, eachFileEvent } from '../flows/client.ts';
import { type PortSpec, Recommender } from '../recommend/engine.ts';
import { RECOMMEND_FORMATS, type RecommendFormat, renderDocument, renderYaml } from '../recommend/render.ts';
import { validateRecommended } from '../recommend/validate.ts';
import { type OriginOptions, originOptions, resolveOrigins } from './flow-origins.ts';
import { Exit, usageError } from './output.ts';

interface RecommendOptions extends OriginOptions {
  output: RecommendFormat;
  siblings: string;
  minSeen: string;
  window: string;
  defaultPort: string[];
}

function parsePorts(list: readonly string[]): PortSpec[] {
  return list.map((text) => {
    const m = /^(TCP|UDP|tcp|udp)\/(\d{1,5})$/.exec(text);
    const port = Number(m?.[2]);
    if (!m || port < 1 || port > 65535)
      throw usageError(`--default-port: ${JSON.stringify(text)} is not PROTOCOL/PORT (TCP/443)`);
    return { protocol: (m[1] as string).toUpperCase() as 'TCP' | 'UDP', port };
  });
}

function count(flag: string, text: string, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > max) throw usageError(`--${flag}: a number 0..${max}`);
  return n;
}

export function registerRecommend(program: Command): void {
  const cmd = program
    .command('recommend')
    .description('recommend policies from the flows of Audit-mode (or ungoverned) workloads')
    .addOption(
      new Option('-o, --output <format>', 'namegate, cilium or npa (network-policy-api)')
        .choices(RECOMMEND_FORMATS)
        .default('namegate'),
    )
    .option('--siblings <n>', 'distinct names under one parent before they become a wildcard (0: never)', '3')
    .option('--min-seen <n>', 'times a name must be seen to be recommended (fewer: listed apart)', '2')
    .option(
      '--window <duration>',
      'stabilization window: names first seen this close to the end are listed apart (e.g. 10m)',
      '0s',
    )
    .option(
      '--default-port <proto/port>',
      'ports for names resolved but never seen connecting (repeatable)',
      (v: string, p: string[] = []) => [...p, v],
    );
  originOptions(cmd).action(async (opts: RecommendOptions) => {
    const options = {
      siblings: count('siblings', opts.siblings, 1000),
      minSeen: count('min-seen', opts.minSeen, 1_000_000),
      windowMs: (() => {
        try {
          return Date.now() - parseTime(opts.window, Date.now());
        } catch (err) {
          throw usageError(`--window: ${(err as Error).message}`);
        }
      })(),
      defaultPorts: parsePorts(opts.defaultPort ?? ['TCP/443']),
    };
    const r = await resolveOrigins(opts);
    const rec = new Recommender();
    if ((opts.file ?? []).length > 0) {
      // Files can be large: streamed straight into the recommender, no sorting, no copies.
      await eachFileEvent(opts.file as string[], (e) => {
        if (r.predicate && !r.predicate(e)) return;
        const t = Date.parse(e.time);
        if ((r.sinceMs !== undefined && t < r.sinceMs) || (r.untilMs !== undefined && t >= r.untilMs)) return;
        rec.add(e);
      });
    } else {
      if (!r.params.has('last')) r.params.set('last', String(MAX_LAST));
      await collectFlows(
        r.origins,
        { params: r.params, follow: false },
        { follow: false, filter: r.predicate, tagNodes: r.multi },
        (e) => rec.add(e),
        new AbortController().signal,
      );
    }
    const recs = rec.result(options);
    process.stderr.write(
      `recommend: ${rec.events} flow events read, ${rec.used} used, ${recs.length} workload(s)\n`,
    );
    let invalid = 0;
    for (const w of recs) {
      if (w.rules.length === 0) continue;
      const v = validateRecommended(renderDocument(w, opts.output), opts.output);
      for (const e of v.errors) {
        invalid++;
        process.stderr.write(
          `recommend: ${w.workload.namespace}/${w.workload.name}: ${opts.output} reader rejects it: ${e}\n`,
        );
      }
    }
    process.stdout.write(renderYaml(recs, opts.output, options));
    if (invalid > 0) process.exitCode = Exit.Failure;
  });
}
