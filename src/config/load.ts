/**
 * Read and validate the agent config file. Every problem is reported with the path of its
 * field ("dns.upstreams[1]: ...") and all problems are reported at once. Meaning beyond the
 * schema (addresses, zones, TTL ordering, overlapping source groups) is checked too, by each
 * section's own file, so a config that loads is one the mapping functions can use as is.
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { zodProblems as nativeZodProblems } from '../formats/native.ts';
import { dnsSectionProblems, resolveDnsSection } from './dns.ts';
import { resolvePoliciesSection } from './policies.ts';
import { ConfigError, type ConfigProblem } from './problem.ts';
import { resolveProxySection } from './proxy.ts';
import { type AgentConfig, AgentConfigSchema } from './schema.ts';
import { sourcesSectionProblems } from './sources.ts';
import { resolveStoreSection, storeSectionProblems } from './store.ts';
import { resolveSyncSection, syncSectionProblems } from './sync.ts';
import { ttlSectionProblems } from './ttl.ts';

export const CONFIG_MAX_BYTES = 1024 * 1024;

export { ConfigError, type ConfigProblem };

/** Validate an already parsed document; relative paths are resolved against `baseDir`. */
export function validateConfig(doc: unknown, baseDir: string, file = 'config'): AgentConfig {
  const parsed = AgentConfigSchema.safeParse(doc ?? {});
  if (!parsed.success) throw new ConfigError(file, zodProblems(parsed.error));
  const config = parsed.data;
  const problems = [
    ...dnsSectionProblems(config.dns),
    ...ttlSectionProblems(config.ttl),
    ...storeSectionProblems(config.store),
    ...sourcesSectionProblems(config.sources),
    ...(config.sync ? syncSectionProblems(config.sync, config.sources) : []),
  ];
  if (problems.length > 0) throw new ConfigError(file, problems);
  return {
    ...config,
    dns: resolveDnsSection(config.dns, baseDir),
    store: resolveStoreSection(config.store, baseDir),
    policies: resolvePoliciesSection(config.policies, baseDir),
    proxy: resolveProxySection(config.proxy, baseDir),
    ...(config.sync ? { sync: resolveSyncSection(config.sync, baseDir) } : {}),
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
