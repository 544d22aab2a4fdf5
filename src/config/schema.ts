/**
 * The agent config file: one section per component, each in its own file of this folder with
 * its schema, its checks beyond the shape, and the one function that maps it to the component's
 * runtime settings. Every object is strict (an unknown key is an error: a typo must not silently
 * fall back to a default) and every field has a default where one is safe.
 */
import { z } from 'zod';
import { DatapathSectionSchema } from './datapath.ts';
import { DnsSectionSchema } from './dns.ts';
import { HttpSectionSchema } from './http.ts';
import { KubernetesConfigSchema } from './kubernetes.ts';
import { ObserveSectionSchema } from './observe.ts';
import { PoliciesSectionSchema } from './policies.ts';
import { ProxySectionSchema } from './proxy.ts';
import { SourcesSectionSchema } from './sources.ts';
import { StoreSectionSchema } from './store.ts';
import { SyncSectionSchema } from './sync.ts';
import { TtlSectionSchema } from './ttl.ts';

/** Every section; a new one is a file here and an entry in this list. */
export const SECTIONS = {
  dns: DnsSectionSchema,
  ttl: TtlSectionSchema.prefault({}),
  store: StoreSectionSchema.prefault({}),
  sources: SourcesSectionSchema,
  policies: PoliciesSectionSchema,
  datapath: DatapathSectionSchema.prefault({}),
  http: HttpSectionSchema.prefault({}),
  proxy: ProxySectionSchema.prefault({}),
  observe: ObserveSectionSchema.prefault({}),
  kubernetes: KubernetesConfigSchema.optional(),
  /** `namegate sync` only; the agent ignores it. */
  sync: SyncSectionSchema.optional(),
};

export const AgentConfigSchema = z.strictObject(SECTIONS);

export type AgentConfig = z.output<typeof AgentConfigSchema>;
