/**
 * The `sources` section: static source groups (a gateway's workloads by CIDR, with the
 * namespace and labels policies select them by). They become the StaticGroups identity
 * provider as they are.
 */
import { z } from 'zod';
import { groupProblems, type SourceGroup } from '../identity/static-groups.ts';
import type { ConfigProblem } from './problem.ts';

export const SourceGroupSchema = z.strictObject({
  name: z.string().min(1).max(253),
  namespace: z.string().min(1).max(63).default('default'),
  labels: z.record(z.string(), z.string()).default({}),
  namespaceLabels: z.record(z.string(), z.string()).default({}),
  cidrs: z.array(z.string()).min(1),
});

export const SourcesSectionSchema = z.array(SourceGroupSchema).default([]);

export type SourcesSection = z.output<typeof SourcesSectionSchema>;

/** Valid CIDRs, and no prefix in two groups. */
export function sourcesSectionProblems(sources: SourcesSection): ConfigProblem[] {
  return groupProblems(sources).map((p) => ({ path: `sources${p.path}`, message: p.message }));
}

export function sourceGroupsFrom(sources: SourcesSection): readonly SourceGroup[] {
  return sources;
}
