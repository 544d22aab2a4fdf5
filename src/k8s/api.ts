/**
 * A small JSON client for the Kubernetes API. @kubernetes/client-node loads the kubeconfig (or
 * the in-cluster service account, with token refresh) and supplies TLS material and headers;
 * requests and watch streams go through node:https so that one code path carries lists, watches,
 * status patches and leases, with our own bounds on time and bytes.
 */
import https from 'node:https';
import { KubeConfig } from '@kubernetes/client-node';
import { ErrorCode, NamegateError } from '../core/errors.ts';

/** One API resource: where it lives and how it is named. */
export interface ResourceType {
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  readonly kind: string;
  readonly namespaced: boolean;
}

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [key: string]: unknown;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
  [key: string]: unknown;
}

export interface KubeList<T = KubeObject> {
  metadata?: { resourceVersion?: string; continue?: string };
  items: T[];
}

export interface WatchEvent {
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  readonly object: KubeObject;
}

export const LIMITS = {
  /** Largest response body read into memory (a list page, an object). */
  responseBytes: 64 * 1024 * 1024,
  /** Largest single watch event line. */
  watchLineBytes: 16 * 1024 * 1024,
} as const;

/** A failed API call, with the HTTP status (0 for transport errors) and the API's reason. */
export class KubeApiError extends NamegateError {
  readonly status: number;
  readonly reason: string;

  constructor(status: number, reason: string, message: string, options?: { cause?: unknown }) {
    super(ErrorCode.KubernetesApi, message, options);
    this.name = 'KubeApiError';
    this.status = status;
    this.reason = reason;
  }
}

export function isApiStatus(err: unknown, status: number): err is KubeApiError {
  return err instanceof KubeApiError && err.status === status;
}

/** Load credentials: an explicit kubeconfig file, else $KUBECONFIG, ~/.kube/config or in-cluster. */
export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault();
  if (!kc.getCurrentCluster()) {
    throw new NamegateError(ErrorCode.ConfigInvalid, 'no Kubernetes cluster in the kubeconfig');
  }
  return kc;
}

export function resourcePath(
  r: ResourceType,
  where: { namespace?: string | undefined; name?: string | undefined; subresource?: string | undefined } = {},
): string {
  let p = r.group === '' ? `/api/${r.version}` : `/apis/${r.group}/${r.version}`;
  if (r.namespaced && where.namespace !== undefined)
    p += `/namespaces/${encodeURIComponent(where.namespace)}`;
  p += `/${r.plural}`;
  if (where.name !== undefined) p += `/${encodeURIComponent(where.name)}`;
  if (where.subresource !== undefined) p += `/${where.subresource}`;
  return p;
}

export function apiVersionOf(r: ResourceType): string {
  return r.group === '' ? r.version : `${r.group}/${r.version}`;
}

export type Query = Readonly<Record<string, string | number | boolean | undefined>>;

export interface RequestOptions {
  readonly query?: Query;
  readonly body?: unknown;
  /** Defaults to application/json; patches pass their patch type. */
  readonly contentType?: string;
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

export class KubeApi {
  readonly config: KubeConfig;
  readonly #server: URL;
  readonly #timeoutMs: number;
  readonly #userAgent: string;

  constructor(config: KubeConfig, options: { timeoutMs?: number; userAgent?: string } = {}) {
    const cluster = config.getCurrentCluster();
    if (!cluster) throw new NamegateError(ErrorCode.ConfigInvalid, 'no Kubernetes cluster in the kubeconfig');
    this.config = config;
    this.#server = new URL(cluster.server);
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#userAgent = options.userAgent ?? 'namegate';
  }

  get server(): string {
    return this.#server.origin;
  }

  async request<T = KubeObject>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const body = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body));
    const res = await this.#send(method, path, options, body, options.timeoutMs ?? this.#timeoutMs);
    const text = await readBody(res, LIMITS.responseBytes);
    const status = res.statusCode ?? 0;
    if (status < 200 || status > 299) throw apiError(status, text, method, path);
    return (text === '' ? {} : JSON.parse(text)) as T;
  }

  /** A request whose answer is not JSON (/readyz, /version text). */
  async text(
    method: string,
    path: string,
    options: RequestOptions = {},
  ): Promise<{ status: number; body: string }> {
    const res = await this.#send(method, path, options, undefined, options.timeoutMs ?? this.#timeoutMs);
    return { status: res.statusCode ?? 0, body: await readBody(res, LIMITS.responseBytes) };
  }

  get<T = KubeObject>(path: string, query?: Query): Promise<T> {
    return this.request<T>('GET', path, query ? { query } : {});
  }

  /**
   * GET `pathAndQuery` (a path with its query string, repeated keys kept) and pass the body on as
   * it arrives: pod-proxy streams such as the agents' /flows. Rejects on a non-2xx status.
   */
  async stream(
    pathAndQuery: string,
    onChunk: (text: string) => void,
    options: { signal: AbortSignal },
  ): Promise<void> {
    const res = await this.#send('GET', pathAndQuery, { signal: options.signal }, undefined, 0);
    const status = res.statusCode ?? 0;
    if (status < 200 || status > 299) {
      const text = await readBody(res, LIMITS.responseBytes).catch(() => '');
      throw apiError(status, text, 'GET', pathAndQuery.split('?')[0] ?? pathAndQuery);
    }
    await new Promise<void>((resolve, reject) => {
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => onChunk(chunk));
      res.on('end', () => resolve());
      res.on('error', (err) => (options.signal.aborted ? resolve() : reject(err)));
      res.on('close', () => resolve());
    });
  }

  /**
   * Stream a watch and call onEvent per event line; resolves when the server ends the stream,
   * rejects on a transport error or when `signal` aborts (also while waiting for headers). Bytes
   * of any kind call onActivity, which the reflector's watchdog uses to tell a quiet stream from
   * a dead one.
   */
  async watch(
    path: string,
    query: Query,
    onEvent: (event: WatchEvent) => void,
    options: { signal: AbortSignal; onActivity?: () => void },
  ): Promise<void> {
    const onActivity = options.onActivity ?? (() => {});
    const res = await this.#send(
      'GET',
      path,
      { query: { ...query, watch: true }, signal: options.signal },
      undefined,
      0,
    );
    const status = res.statusCode ?? 0;
    if (status !== 200) {
      const text = await readBody(res, LIMITS.responseBytes).catch(() => '');
      throw apiError(status, text, 'WATCH', path);
    }
    onActivity();
    await new Promise<void>((resolve, reject) => {
      let buffered = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        onActivity();
        buffered += chunk;
        let nl = buffered.indexOf('\n');
        while (nl >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          if (line.trim() !== '') {
            let event: WatchEvent;
            try {
              event = JSON.parse(line) as WatchEvent;
            } catch (err) {
              res.destroy(
                new KubeApiError(0, 'BadWatchEvent', 'a watch event is not valid JSON', { cause: err }),
              );
              return;
            }
            try {
              onEvent(event);
            } catch (err) {
              res.destroy(err instanceof Error ? err : new Error(String(err)));
              return;
            }
          }
          nl = buffered.indexOf('\n');
        }
        if (buffered.length > LIMITS.watchLineBytes) {
          res.destroy(
            new KubeApiError(0, 'WatchLineTooLong', `a watch event is over ${LIMITS.watchLineBytes} bytes`),
          );
        }
      });
      res.on('end', () => resolve());
      res.on('error', (err) => reject(err));
      res.on('close', () => {
        if (!res.complete) {
          reject(
            options.signal.aborted
              ? options.signal.reason
              : new KubeApiError(0, 'WatchClosed', 'the watch stream was cut'),
          );
        }
      });
    });
  }

  async #send(
    method: string,
    path: string,
    options: RequestOptions,
    body: Buffer | undefined,
    timeoutMs: number,
  ): Promise<import('node:http').IncomingMessage> {
    const url = new URL(path, this.#server);
    for (const [k, v] of Object.entries(options.query ?? {}))
      if (v !== undefined) url.searchParams.set(k, String(v));
    const opts: https.RequestOptions = {
      method,
      headers: {
        accept: 'application/json',
        'user-agent': this.#userAgent,
        ...(body
          ? { 'content-type': options.contentType ?? 'application/json', 'content-length': body.length }
          : {}),
      },
    };
    await this.config.applyToHTTPSOptions(opts);
    return new Promise((resolve, reject) => {
      const req = https.request(
        url,
        { ...opts, ...(options.signal ? { signal: options.signal } : {}) },
        (res) => {
          // A connection cut before the caller reads the body must not be an uncaught error;
          // readBody and watch see it through res.errored and 'close'.
          res.on('error', () => {});
          resolve(res);
        },
      );
      req.on('error', (err) =>
        reject(
          err instanceof KubeApiError
            ? err
            : new KubeApiError(0, 'Transport', `${method} ${url.pathname}: ${err.message}`, { cause: err }),
        ),
      );
      if (timeoutMs > 0) {
        req.setTimeout(timeoutMs, () =>
          req.destroy(
            new KubeApiError(0, 'Timeout', `${method} ${url.pathname}: no answer within ${timeoutMs} ms`),
          ),
        );
      }
      req.end(body);
    });
  }
}

function readBody(res: import('node:http').IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const cut = (): KubeApiError =>
      new KubeApiError(0, 'Transport', 'the connection closed before the response was complete', {
        cause: res.errored,
      });
    if (res.errored || (res.destroyed && !res.complete)) {
      reject(cut());
      return;
    }
    res.on('close', () => {
      if (!res.complete) reject(cut());
    });
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        res.destroy(new KubeApiError(0, 'ResponseTooLarge', `a response is over ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', reject);
  });
}

function apiError(status: number, text: string, method: string, path: string): KubeApiError {
  let reason = 'Unknown';
  let message = text.slice(0, 500);
  try {
    const s = JSON.parse(text) as { reason?: string; message?: string };
    reason = s.reason ?? reason;
    message = s.message ?? message;
  } catch {
    // not a Status object; keep the raw text
  }
  return new KubeApiError(status, reason, `${method} ${path}: ${status} ${reason}: ${message}`);
}
