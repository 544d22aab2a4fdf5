/**
 * The chart's dialect parts, generated from the dialect registry (src/formats/registry.ts):
 * the `dialects:` block of values.yaml (between its BEGIN/END markers) and
 * templates/_dialects.tpl (the read-only RBAC rules of the enabled kinds). Run by
 * scripts/generate-deploy.sh, whose --check (and so the deploy test) fails when they are stale.
 *
 *   node scripts/chart-dialects.ts CHART_DIR    rewrite both files in that chart folder
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { IMPORTERS } from '../src/formats/registry.ts';

const BEGIN = '# BEGIN dialects: generated from src/formats/registry.ts by scripts/generate-deploy.sh';
const END = '# END dialects';

export function valuesBlock(): string {
  const width = Math.max(...IMPORTERS.map((i) => i.dialect.length));
  return [
    BEGIN,
    '# Foreign policy kinds to read from the API, each only while its CRD is installed. Turning one on',
    '# also grants the agent read access to that kind.',
    'dialects:',
    ...IMPORTERS.map((i) => `  ${`${i.dialect}: false`.padEnd(width + 8)} # ${i.summary}`),
    END,
  ].join('\n');
}

export function rbacTemplate(): string {
  const lines = [
    '{{/* Generated from src/formats/registry.ts by scripts/generate-deploy.sh; do not edit. */}}',
    '{{/* The foreign kinds enabled in values, as RBAC rules (read only). */}}',
    '{{- define "namegate.dialectRules" -}}',
  ];
  for (const i of IMPORTERS) {
    lines.push(`{{- if .Values.dialects.${i.dialect} }}`);
    const groups = [...new Set(i.kinds.map((k) => k.group))];
    for (const g of groups) {
      const plurals = i.kinds.filter((k) => k.group === g).map((k) => JSON.stringify(k.plural));
      lines.push(
        `- apiGroups: [${JSON.stringify(g)}]`,
        `  resources: [${plurals.join(', ')}]`,
        '  verbs: ["list", "watch"]',
      );
    }
    lines.push('{{- end }}');
  }
  lines.push('{{- end -}}', '');
  return lines.join('\n');
}

async function main(chart: string): Promise<void> {
  const valuesFile = path.join(chart, 'values.yaml');
  const values = await readFile(valuesFile, 'utf8');
  const from = values.indexOf(BEGIN);
  const to = values.indexOf(END);
  if (from < 0 || to < from) throw new Error(`${valuesFile}: no "${BEGIN}" ... "${END}" block`);
  await writeFile(valuesFile, values.slice(0, from) + valuesBlock() + values.slice(to + END.length));
  await writeFile(path.join(chart, 'templates/_dialects.tpl'), rbacTemplate());
}

const chart = process.argv[2];
if (!chart) {
  console.error('usage: node scripts/chart-dialects.ts CHART_DIR');
  process.exit(2);
}
await main(chart);
