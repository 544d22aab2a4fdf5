/**
 * `namegate dashboard`: the dashboard for a whole cluster (every agent through the API server's
 * pod proxy), or for an agent or flow log files, served on this machine. Flows from all origins
 * feed one local hub and one set of statistics; the page is the agent's own.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Command } from 'commander';
import { parseHostPort } from '../core/host-port.ts';
import { FlowApi } from '../flows/api.ts';
import { collectFlows } from '../flows/client.ts';
import { eventLine } from '../flows/event.ts';
import { FlowHub } from '../flows/hub.ts';
import { SourceBook, sourceLine } from '../flows/sources.ts';
import { FlowStats } from '../flows/stats.ts';
import { proposeRule } from '../recommend/propose.ts';
import { type OriginOptions, originOptions, resolveOrigins } from './flow-origins.ts';
import { usageError } from './output.ts';

interface DashboardOptions extends OriginOptions {
  listen: string;
}

export function registerDashboard(program: Command): void {
  const cmd = program
    .command('dashboard')
    .description(
      'serve the live dashboard here, for every agent of a cluster (--kubernetes), an agent, or files',
    )
    .option('--listen <addr:port>', 'where to serve the page', '127.0.0.1:9254');
  originOptions(cmd).action(async (opts: DashboardOptions) => {
    const at = parseHostPort(opts.listen, 9254);
    if (typeof at === 'string') throw usageError(`--listen: ${at}`);
    const r = await resolveOrigins(opts);
    const sources = new SourceBook();
    const hub = new FlowHub(sources);
    const stats = new FlowStats();
    const api = new FlowApi({ hub, stats, governed: () => sources.size, propose: proposeRule });
    const server = createServer((req, res) => {
      if (!api.handle(req, res)) {
        res.writeHead(302, { location: '/dashboard' });
        res.end();
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(at.port, at.host, resolve);
    });
    const a = server.address() as AddressInfo;
    process.stderr.write(
      `dashboard: http://${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}/dashboard (Ctrl-C ends)\n`,
    );
    const abort = new AbortController();
    process.once('SIGINT', () => abort.abort());
    process.once('SIGTERM', () => abort.abort());
    const seen = new Set<string>();
    // Events from every origin, re-written into the local hub as normalized lines.
    await collectFlows(
      r.origins,
      { params: r.params, follow: (opts.file ?? []).length === 0 },
      { follow: (opts.file ?? []).length === 0, filter: r.predicate, tagNodes: r.multi },
      (e) => {
        if (!seen.has(e.src) && (e.identity !== null || e.labels !== null)) {
          seen.add(e.src);
          const info = {
            identity: e.identity,
            namespace: e.namespace,
            pod: e.pod,
            labels: e.labels,
            workload: e.workload,
          };
          sources.set(e.src, info);
          hub.write(sourceLine(e.time, e.src, info));
        }
        hub.write(eventLine(e));
        stats.count(e.type, e.verdict, e.src, e.name, e.count);
      },
      abort.signal,
    );
    if ((opts.file ?? []).length > 0)
      await new Promise<void>((resolve) => abort.signal.addEventListener('abort', () => resolve()));
    server.closeAllConnections();
    server.close();
  });
}
