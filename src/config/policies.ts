/** The `policies` section: policy files and folders (any dialect), read and watched by the agent. */
import path from 'node:path';
import { z } from 'zod';

export const PoliciesSectionSchema = z
  .array(z.string())
  .default([])
  .describe('Policy files or folders; relative to the config file.');

export type PoliciesSection = z.output<typeof PoliciesSectionSchema>;

export function resolvePoliciesSection(policies: PoliciesSection, baseDir: string): PoliciesSection {
  return policies.map((p) => path.resolve(baseDir, p));
}
