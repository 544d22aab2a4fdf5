/**
 * Read and validate the agent config file. Every problem is reported with the path of its
 * field ("dns.upstreams[1]: ...") and all problems are reported at once. Meaning beyond the
 * schema (addresses, zones, TTL ordering, overlapping source groups) is checked here too, so a
 * config that loads is one the components can use as is.
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { ErrorCode, NamegateError } from '../core/errors.ts';
import { canonicalIp } from '../core/ip.ts';
import { tryCanonicalName } from '../core/names.ts';
import { zodProblems as nativeZodProblems } from '../formats/native.ts';
import { groupProblems } from '../identity/static-groups.ts';
import { ttlPolicyProblems } from '../store/ttl.ts';
import { type AgentConfig, AgentConfigSchema } from './schema.ts';
import { resolveSyncPaths, syncProblems } from './sync.ts';

export const CONFIG_MAX_BYTES = 1024 * 1024;

export interface ConfigProblem {
  readonly path: string;
  readonly message: string;
}

export class ConfigError extends NamegateError {
  readonly problems: readonly ConfigProblem[];
  constructor(file: string, problems: readonly ConfigProblem[]) {
    const lines = problems.map((p) => `  ${p.path === '' ? '(top level)' : p.path}: ${p.message}`);
    super(ErrorCode.ConfigInvalid, `${file}: invalid config\n${lines.join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export interface HostPort {
  readonly host: string;
  readonly port: number;
  readonly family: 4 | 6;
}

/** "192.0.2.1", "192.0.2.1:53", "[2001:db8::1]:53" or "2001:db8::1"; IP literals only. */
export function parseHostPort(text: string, defaultPort = 53): HostPort | string {
  let host = text;
  let portText: string | null = null;
  const bracket = /^\[([^\]]+)\](?::([0-9]+))?$/.exec(text);
  if (bracket) {
    host = bracket[1] ?? '';
    portText = bracket[2] ?? null;
  } else if (/^[0-9.]+:[0-9]+$/.test(text)) {
    const i = text.lastIndexOf(':');
    host = text.slice(0, i);
    portText = text.slice(i + 1);
  }
  const ip = canonicalIp(host);
  if (!ip)
    return `${JSON.stringify(text)} is not an IP address with an optional port (use [v6]:port for IPv6)`;
  const port = portText === null ? defaultPort : Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    return `port ${JSON.stringify(portText)} is not 0-65535`;
  return { host: ip, port, family: ip.includes(':') ? 6 : 4 };
}

/** Validate an already parsed document; relative paths are resolved against `baseDir`. */
export function validateConfig(doc: unknown, baseDir: string, file = 'config'): AgentConfig {
  const parsed = AgentConfigSchema.safeParse(doc ?? {});
  if (!parsed.success) throw new ConfigError(file, zodProblems(parsed.error));
  const config = parsed.data;
  const problems: ConfigProblem[] = [];
  config.dns.listen.forEach((l, i) => {
    const hp = parseHostPort(l);
    if (typeof hp === 'string') problems.push({ path: `dns.listen[${i}]`, message: hp });
  });
  config.dns.upstreams.forEach((u, i) => {
    const hp = parseHostPort(u);
    if (typeof hp === 'string') problems.push({ path: `dns.upstreams[${i}]`, message: hp });
    else if (hp.port === 0)
      problems.push({ path: `dns.upstreams[${i}]`, message: 'port 0 is not a server port' });
  });
  config.dns.passThroughZones.forEach((z, i) => {
    const name = tryCanonicalName(z);
    if (typeof name !== 'string')
      problems.push({ path: `dns.passThroughZones[${i}]`, message: name.message });
  });
  for (const message of ttlPolicyProblems({
    minTtlSeconds: config.ttl.minTTL,
    maxTtlSeconds: config.ttl.maxTTL,
    graceSeconds: config.ttl.grace,
  })) {
    problems.push({ path: 'ttl', message });
  }
  if (config.store.maxIpsPerName > config.store.maxIpsPerSource) {
    problems.push({ path: 'store.maxIpsPerName', message: 'must not be larger than store.maxIpsPerSource' });
  }
  for (const p of groupProblems(config.sources))
    problems.push({ path: `sources${p.path}`, message: p.message });
  if (config.sync)
    problems.push(
      ...syncProblems(
        config.sync,
        config.sources.map((g) => g.name),
      ),
    );
  if (problems.length > 0) throw new ConfigError(file, problems);

  return {
    ...config,
    dns: {
      ...config.dns,
      passThroughZones: config.dns.passThroughZones.map((z) => tryCanonicalName(z) as string),
      flowLog:
        config.dns.flowLog.path === undefined
          ? config.dns.flowLog
          : { ...config.dns.flowLog, path: path.resolve(baseDir, config.dns.flowLog.path) },
    },
    store: {
      ...config.store,
      ...(config.store.checkpoint
        ? {
            checkpoint: {
              ...config.store.checkpoint,
              path: path.resolve(baseDir, config.store.checkpoint.path),
            },
          }
        : {}),
    },
    policies: config.policies.map((p) => path.resolve(baseDir, p)),
    ...(config.sync ? { sync: resolveSyncPaths(config.sync, baseDir) } : {}),
  };
}

export function zodProblems(error: z.ZodError): ConfigProblem[] {
  return nativeZodProblems(error);
}

/** Read, parse (YAML or JSON, one document) and validate a config file. */
export async function loadConfig(file: string): Promise<AgentConfig> {
  let text: string;
  try {
    const info = await stat(file);
    if (info.size > CONFIG_MAX_BYTES) {
      throw new ConfigError(file, [{ path: '', message: `${info.size} bytes; at most ${CONFIG_MAX_BYTES}` }]);
    }
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(file, [{ path: '', message: (err as Error).message }]);
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => ({ path: '', message: `not valid YAML: ${e.message.split('\n')[0]}` })),
    );
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new ConfigError(file, [{ path: '', message: `not valid YAML: ${(err as Error).message}` }]);
  }
  return validateConfig(value, path.dirname(path.resolve(file)), file);
}
