/**
 * The Grafana dashboard shipped with the chart: rendered by helm as a ConfigMap with the
 * sidecar's label, and every query in it uses only metrics the agent exports. The exported set
 * is read off a real agent started in-process (recording datapath; the nftables driver's metrics
 * are registered as the driver registers them), so a metric renamed or dropped in the code
 * fails here.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { startAgent } from '../../../src/agent/agent.ts';
import { validateConfig } from '../../../src/config/load.ts';
import { systemClock } from '../../../src/core/clock.ts';
import { DatapathMetrics } from '../../../src/datapath/metrics.ts';
import { RecordingDatapath } from '../../../src/datapath/recording.ts';
import { silentLogger } from '../../../src/observe/log.ts';
import { createRegistry } from '../../../src/observe/metrics.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const DASHBOARD = path.join(ROOT, 'deploy/helm/namegate/dashboards/namegate.json');

interface Panel {
  readonly title: string;
  readonly targets?: ReadonlyArray<{ readonly expr: string }>;
}

function queries(): Array<{ panel: string; expr: string }> {
  const d = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
    panels: Panel[];
    templating: { list: Array<{ query?: unknown }> };
  };
  const out = d.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
  for (const v of d.templating.list)
    if (typeof v.query === 'string' && v.query.includes('namegate_'))
      out.push({ panel: 'variables', expr: v.query });
  return out;
}

/** Metric names in a PromQL expression (histogram series map to their histogram). */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\bnamegate_[a-z0-9_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, ''));
}

async function exportedMetrics(): Promise<Set<string>> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ng-grafana-'));
  const registry = createRegistry({ defaultMetrics: true });
  try {
    const config = validateConfig(
      {
        dns: { listen: ['127.0.0.1:0'], upstreams: ['127.0.0.1:9'] },
        sources: [{ name: 'a', namespace: 'a', labels: {}, cidrs: ['10.9.0.0/24'] }],
        policies: [dir],
        proxy: { connect: { enabled: true, listen: ['127.0.0.1:0'] } },
      },
      dir,
    );
    // The nftables driver registers these; the recording datapath does not.
    new DatapathMetrics(registry);
    const agent = await startAgent({
      config,
      registry,
      log: silentLogger(),
      clock: systemClock,
      datapath: new RecordingDatapath(systemClock),
      flowLog: null,
      httpListen: null,
    });
    try {
      return new Set((await registry.getMetricsAsJSON()).map((m) => m.name));
    } finally {
      await agent.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('every query of the Grafana dashboard uses only metrics the agent exports', async () => {
  const exported = await exportedMetrics();
  assert.ok(exported.has('namegate_policy_decisions_total'));
  const all = queries();
  assert.ok(all.length >= 15);
  const missing: string[] = [];
  for (const q of all)
    for (const name of metricNames(q.expr)) if (!exported.has(name)) missing.push(`${q.panel}: ${name}`);
  assert.deepEqual(missing, []);
});

test('the chart ships it as a ConfigMap for the dashboard sidecar', (t) => {
  let helm: string;
  try {
    helm = execFileSync(path.join(ROOT, 'scripts/build-test-bins.sh'), ['--print-path', 'helm'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    t.skip('helm is not built (scripts/build-test-bins.sh helm)');
    return;
  }
  const out = execFileSync(
    helm,
    ['template', 'namegate', path.join(ROOT, 'deploy/helm/namegate'), '--namespace', 'ns'],
    {
      encoding: 'utf8',
    },
  );
  type Doc = {
    kind?: string;
    metadata?: { name?: string; labels?: Record<string, string> };
    data?: Record<string, string>;
  };
  const cm = parseAllDocuments(out)
    .map((d) => d.toJS() as Doc | null)
    .find((d) => d?.kind === 'ConfigMap' && d.metadata?.name?.endsWith('grafana-dashboard'));
  assert.ok(cm, 'the dashboard ConfigMap is rendered');
  assert.equal(cm.metadata?.labels?.['grafana_dashboard'], '1');
  assert.deepEqual(
    JSON.parse(cm.data?.['namegate.json'] ?? '{}'),
    JSON.parse(readFileSync(DASHBOARD, 'utf8')),
  );
});
