/**
 * The options `observe`, `recommend` and `dashboard` share: where flows come from (an agent, every
 * agent of a cluster through the API server, or flow log files), the filters, and the time window.
 */
import { type Command, Option } from 'commander';
import { parseTime } from '../flows/api.ts';
import { agentOrigin, clusterOrigins, DEFAULT_AGENTS, type FlowOrigin, fileOrigin } from '../flows/client.ts';
import {
  compileFilter,
  FILTER_KEYS,
  type FlowFilterSpec,
  filterToQuery,
  isEmptyFilter,
} from '../flows/filter.ts';
import { KubeApi, loadKubeConfig } from '../k8s/api.ts';
import { usageError } from './output.ts';

export const DEFAULT_AGENT = 'http://127.0.0.1:9253';

export interface OriginOptions {
  agent?: string;
  kubernetes?: boolean;
  kubeconfig?: string;
  agentsNamespace: string;
  agentsSelector: string;
  file?: string[];
  pod?: string[];
  namespace?: string[];
  label?: string[];
  verdict?: string[];
  name?: string[];
  ip?: string[];
  port?: string[];
  protocol?: string[];
  type?: string[];
  since?: string;
  until?: string;
  last?: string;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** Add the origin, filter and time options to a command. */
export function originOptions(cmd: Command): Command {
  return cmd
    .option('--agent <url>', `an agent's flow API (default ${DEFAULT_AGENT})`)
    .option('--kubernetes', "every agent of the cluster, through the API server's pod proxy")
    .option(
      '--kubeconfig <file>',
      'kubeconfig for --kubernetes (default: $KUBECONFIG, ~/.kube/config, in-cluster)',
    )
    .option('--agents-namespace <ns>', 'namespace of the agent pods', DEFAULT_AGENTS.namespace)
    .option('--agents-selector <labels>', 'label selector of the agent pods', DEFAULT_AGENTS.selector)
    .option('--file <path>', 'read a flow log file instead (repeatable)', collect)
    .option('--pod <ns/name>', 'source pod, "namespace/name" prefix (repeatable: any of them)', collect)
    .addOption(new Option('-n, --namespace <ns>', 'source namespace (repeatable)').argParser(collect))
    .addOption(
      new Option(
        '-l, --label <selector>',
        'source labels: app=web, app!=web, app, !app (repeatable)',
      ).argParser(collect),
    )
    .option('--verdict <v>', 'allow, deny, audit, drop, error (repeatable)', collect)
    .option(
      '--name <pattern>',
      'destination name, as in policies: api.x.com, *.x.com, **.x.com (repeatable)',
      collect,
    )
    .option('--ip <cidr>', 'destination address or CIDR (repeatable)', collect)
    .option('--port <n>', 'destination port (repeatable)', collect)
    .option('--protocol <p>', 'tcp, udp, icmp, dns, tls, http (repeatable)', collect)
    .option('--type <t>', 'dns, proxy, kernel (repeatable)', collect)
    .option('--since <time>', 'events since: RFC 3339, or 30s, 5m, 2h, 1d ago')
    .option('--until <time>', 'events before: RFC 3339, or 30s, 5m, 2h, 1d ago')
    .option('--last <n>', 'the last N events (over all agents)');
}

export function filterSpec(o: OriginOptions): FlowFilterSpec {
  const spec: Record<string, string[]> = {};
  for (const k of FILTER_KEYS) {
    const v = o[k];
    if (v && v.length > 0) spec[k] = v;
  }
  return spec;
}

export interface Resolved {
  readonly origins: FlowOrigin[];
  readonly spec: FlowFilterSpec;
  readonly predicate: ReturnType<typeof compileFilter> | null;
  readonly params: URLSearchParams;
  readonly sinceMs?: number;
  readonly untilMs?: number;
  readonly last?: number;
  readonly multi: boolean;
}

export async function resolveOrigins(o: OriginOptions, now = Date.now()): Promise<Resolved> {
  const chosen = [o.agent !== undefined, o.kubernetes === true, (o.file ?? []).length > 0].filter(
    Boolean,
  ).length;
  if (chosen > 1) throw usageError('choose one of --agent, --kubernetes and --file');
  const spec = filterSpec(o);
  const predicate = isEmptyFilter(spec) ? null : compileFilter(spec); // throws usage errors
  const params = filterToQuery(spec);
  const time = (flag: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    try {
      return parseTime(v, now);
    } catch (err) {
      throw usageError(`--${flag}: ${(err as Error).message}`);
    }
  };
  const sinceMs = time('since', o.since);
  const untilMs = time('until', o.until);
  if (o.since !== undefined) params.set('since', new Date(sinceMs as number).toISOString());
  if (o.until !== undefined) params.set('until', new Date(untilMs as number).toISOString());
  let last: number | undefined;
  if (o.last !== undefined) {
    last = Number(o.last);
    if (!Number.isInteger(last) || last < 0 || last > 100_000) throw usageError('--last: a number 0..100000');
    params.set('last', String(last));
  }
  let origins: FlowOrigin[];
  if ((o.file ?? []).length > 0) origins = [fileOrigin(o.file as string[])];
  else if (o.kubernetes) {
    const api = new KubeApi(loadKubeConfig(o.kubeconfig), { userAgent: 'namegate-observe' });
    origins = await clusterOrigins(api, { namespace: o.agentsNamespace, selector: o.agentsSelector });
  } else {
    const base = o.agent ?? DEFAULT_AGENT;
    try {
      new URL(base);
    } catch {
      throw usageError(`--agent: ${JSON.stringify(base)} is not a URL (http://host:port)`);
    }
    origins = [agentOrigin(base)];
  }
  return {
    origins,
    spec,
    predicate,
    params,
    ...(sinceMs !== undefined ? { sinceMs } : {}),
    ...(untilMs !== undefined ? { untilMs } : {}),
    ...(last !== undefined ? { last } : {}),
    multi: origins.length > 1,
  };
}
