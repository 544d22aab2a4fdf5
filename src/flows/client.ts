/**
 * Where `namegate observe`, `namegate recommend` and `namegate dashboard` get flows from:
 *   - an agent's flow API (http://127.0.0.1:9253 by default, the agent's health listener);
 *   - every agent of a cluster through the API server's pod proxy
 *     (/api/v1/namespaces/<ns>/pods/<agent>:<port>/proxy/flows), merged;
 *   - flow log files.
 * Each yields FlowEvents with `node` set; history from several agents is merged by time.
 * Lines are bounded (a longer one is dropped and counted), streams end on the signal.
 */
import { createReadStream } from 'node:fs';
import http from 'node:http';
import { ErrorCode, NamegateError } from '../core/errors.ts';
import type { FlowEvent } from './event.ts';
import { FlowReader, MAX_LINE, readFlowFiles } from './reader.ts';

export interface FlowQuery {
  /** Filter and time parameters as the flow API takes them (filter.ts, since, last, ...). */
  readonly params: URLSearchParams;
  readonly follow: boolean;
}

export interface FlowOrigin {
  /** The node (agent) name shown with its events. */
  readonly node: string;
  /** Stream lines until the answer ends or the signal aborts. */
  lines(q: FlowQuery, onLine: (line: string) => void, signal: AbortSignal): Promise<void>;
}

/** Split a byte stream into lines, dropping (and counting) lines over MAX_LINE. */
export class LineSplitter {
  #rest = '';
  dropped = 0;

  push(chunk: string, onLine: (line: string) => void): void {
    let text = this.#rest + chunk;
    let nl = text.indexOf('\n');
    while (nl >= 0) {
      const line = text.slice(0, nl);
      if (line.length <= MAX_LINE) onLine(line);
      else this.dropped++;
      text = text.slice(nl + 1);
      nl = text.indexOf('\n');
    }
    if (text.length > MAX_LINE) {
      this.dropped++;
      text = '';
    }
    this.#rest = text;
  }
}

/** An agent's flow API at `base` (http://host:port). */
export function agentOrigin(base: string, node = new URL(base).host): FlowOrigin {
  return {
    node,
    lines: (q, onLine, signal) =>
      new Promise((resolve, reject) => {
        const params = new URLSearchParams(q.params);
        if (q.follow) params.set('follow', '1');
        const req = http.get(new URL(`/flows?${params}`, base), { signal }, (res) => {
          if (res.statusCode !== 200) {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (c: string) => {
              body = (body + c).slice(0, 2000);
            });
            res.on('end', () =>
              reject(new NamegateError(ErrorCode.FlowApi, `${node}: HTTP ${res.statusCode}: ${body.trim()}`)),
            );
            return;
          }
          const split = new LineSplitter();
          res.setEncoding('utf8');
          res.on('data', (c: string) => split.push(c, onLine));
          res.on('end', () => resolve());
          res.on('error', (err) => (signal.aborted ? resolve() : reject(err)));
        });
        req.on('error', (err) =>
          signal.aborted
            ? resolve()
            : reject(new NamegateError(ErrorCode.FlowApi, `${node}: ${err.message}`)),
        );
      }),
  };
}

/** What the pod-proxy origins need of a Kubernetes client (src/k8s/api.ts KubeApi has it). */
export interface PodProxyApi {
  get<T>(path: string, query?: Readonly<Record<string, string>>): Promise<T>;
  /** GET a path (with its query string) and pass the body on as it arrives. */
  stream(path: string, onChunk: (text: string) => void, options: { signal: AbortSignal }): Promise<void>;
}

interface PodItem {
  metadata?: { name?: string };
  spec?: {
    nodeName?: string;
    containers?: Array<{ ports?: Array<{ name?: string; containerPort?: number }> }>;
  };
  status?: { phase?: string };
}

/** Where the agents are in a cluster: the chart's labels, its release namespace, its port. */
export interface ClusterAgents {
  readonly namespace: string;
  readonly selector: string;
  /** The agents' health port; default: the container port named "health". */
  readonly port?: number;
}

export const DEFAULT_AGENTS: ClusterAgents = {
  namespace: 'namegate-system',
  selector: 'app.kubernetes.io/name=namegate,app.kubernetes.io/component=agent',
};

function healthPort(pod: PodItem): number | null {
  for (const c of pod.spec?.containers ?? [])
    for (const p of c.ports ?? []) if (p.name === 'health' && p.containerPort) return p.containerPort;
  return null;
}

/** Every running agent, through the API server's pod proxy (needs pods list and pods/proxy get). */
export async function clusterOrigins(
  api: PodProxyApi,
  agents: ClusterAgents = DEFAULT_AGENTS,
): Promise<FlowOrigin[]> {
  const list = await api.get<{ items: PodItem[] }>(
    `/api/v1/namespaces/${encodeURIComponent(agents.namespace)}/pods`,
    {
      labelSelector: agents.selector,
    },
  );
  const out: FlowOrigin[] = [];
  for (const pod of list.items) {
    const name = pod.metadata?.name;
    if (!name || pod.status?.phase !== 'Running') continue;
    const port = agents.port ?? healthPort(pod);
    if (port === null) continue;
    const node = pod.spec?.nodeName ?? name;
    const path = `/api/v1/namespaces/${encodeURIComponent(agents.namespace)}/pods/${encodeURIComponent(name)}:${port}/proxy/flows`;
    out.push({
      node,
      lines: async (q, onLine, signal) => {
        const query = new URLSearchParams(q.params);
        if (q.follow) query.set('follow', '1');
        const split = new LineSplitter();
        await api.stream(`${path}?${query}`, (chunk) => split.push(chunk, onLine), { signal });
      },
    });
  }
  if (out.length === 0)
    throw new NamegateError(
      ErrorCode.FlowApi,
      `no running agent pods in namespace ${agents.namespace} with labels ${agents.selector}`,
    );
  return out;
}

/** Flow log files as one origin. */
export function fileOrigin(paths: readonly string[]): FlowOrigin {
  return {
    node: 'file',
    lines: async (_q, onLine) => {
      for (const p of paths) {
        const split = new LineSplitter();
        for await (const chunk of createReadStream(p, { encoding: 'utf8', highWaterMark: 256 * 1024 }))
          split.push(chunk as string, onLine);
      }
    },
  };
}

export interface CollectOptions {
  readonly follow: boolean;
  /** Applied again here: file origins cannot filter, and merged history is cut to `last`. */
  readonly filter?: ((e: FlowEvent) => boolean) | null;
  readonly sinceMs?: number;
  readonly untilMs?: number;
  readonly last?: number;
  /** Set node names on events (more than one origin). */
  readonly tagNodes: boolean;
}

/** The line the flow API sends between history and live events when following. */
export const LIVE_MARK = '{"event":"live"}';

/**
 * Read every origin with one request each: history (up to the LIVE_MARK line, or the end) is
 * merged by time over all origins and cut to `last`; then live events are passed on as they
 * arrive. Live events of origins that finished their history early wait until all have.
 */
export async function collectFlows(
  origins: readonly FlowOrigin[],
  query: FlowQuery,
  options: CollectOptions,
  onEvent: (e: FlowEvent) => void,
  signal: AbortSignal,
): Promise<void> {
  const keep = (e: FlowEvent) => {
    if (options.filter && !options.filter(e)) return false;
    const t = Date.parse(e.time);
    if (options.sinceMs !== undefined && t < options.sinceMs) return false;
    if (options.untilMs !== undefined && t >= options.untilMs) return false;
    return true;
  };
  const history: FlowEvent[] = [];
  const early: FlowEvent[] = [];
  let pending = origins.length;
  let merged = false;
  const historyDone = () => {
    if (--pending > 0) return;
    history.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
    const cut =
      options.last !== undefined && history.length > options.last
        ? history.slice(history.length - options.last)
        : history;
    for (const e of cut) onEvent(e);
    for (const e of early) onEvent(e);
    merged = true;
  };
  await Promise.all(
    origins.map(async (o) => {
      const reader = new FlowReader();
      let live = false;
      await o.lines(
        query,
        (l) => {
          if (!live && l === LIVE_MARK) {
            live = true;
            historyDone();
            return;
          }
          const read = reader.line(l);
          if (read === null || !keep(read)) return;
          const e = options.tagNodes && read.node === null ? { ...read, node: o.node } : read;
          if (!live) history.push(e);
          else if (merged) onEvent(e);
          else early.push(e);
        },
        signal,
      );
      if (!live) historyDone();
    }),
  );
}

/** Flow log files straight into a callback (recommend over large files: no sorting, no copy). */
export async function eachFileEvent(
  paths: readonly string[],
  onEvent: (e: FlowEvent) => void,
): Promise<FlowReader> {
  const reader = new FlowReader();
  await readFlowFiles(paths, reader, (e) => {
    onEvent(e);
    return true;
  });
  return reader;
}
