/**
 * The dashboard page in real headless Chromium against the flow API, fed by the DNS flow log
 * writer as the proxy feeds it: the page loads with nothing from elsewhere, counters move as
 * decisions happen, filters narrow the table, and "propose a rule" shows YAML that validates.
 * (The same page against the real agent in the lab: test/integration/e2e/dashboard.test.ts.)
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { FlowLog } from '../../../src/dns/flow-log.ts';
import { FlowApi } from '../../../src/flows/api.ts';
import { FlowHub } from '../../../src/flows/hub.ts';
import { SourceBook, sourceLine } from '../../../src/flows/sources.ts';
import { FlowStats } from '../../../src/flows/stats.ts';
import { validateNative } from '../../../src/formats/native.ts';
import { proposeRule } from '../../../src/recommend/propose.ts';
import { waitFor } from '../netns.ts';
import { chromiumMissing, openBrowser, screenshot } from './browser.ts';

const PODS = [
  { src: '10.10.2.2', ns: 'ci', pod: 'ci-runner', labels: { role: 'runner' } },
  {
    src: '10.10.3.2',
    ns: 'web',
    pod: 'web-7d4b9c8f6-x2x1z',
    labels: { app: 'web', 'pod-template-hash': '7d4b9c8f6' },
  },
];

test('dashboard: loads, counters move, filters narrow, proposals validate', {
  skip: chromiumMissing(),
}, async (t) => {
  const hub = new FlowHub(new SourceBook(), { flushMs: 50 });
  const stats = new FlowStats();
  const api = new FlowApi({ hub, stats, governed: () => PODS.length, propose: proposeRule });
  const server = createServer((req, res) => {
    if (!api.handle(req, res)) {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const time = new Date().toISOString();
  for (const p of PODS)
    hub.write(
      sourceLine(time, p.src, {
        identity: `pod:${p.ns}/${p.pod}`,
        namespace: p.ns,
        pod: p.pod,
        labels: p.labels,
        workload: null,
      }),
    );
  const log = new FlowLog(hub, 'all', Date.now, 0);
  let n = 0;
  const decide = (count: number) => {
    for (let i = 0; i < count; i++, n++) {
      const p = PODS[n % 2]!;
      const denied = n % 5 === 0;
      const name = denied ? `blocked${n % 3}.example.com` : p.ns === 'ci' ? 'github.com' : 'pypi.org';
      const verdict = denied ? (p.ns === 'web' ? 'audit' : 'deny') : 'allow';
      log.record({
        src: p.src,
        identity: `pod:${p.ns}/${p.pod}`,
        qname: name,
        qtype: 1,
        verdict,
        reason: denied ? 'no_matching_rule' : 'fqdn_rule',
        policy: denied ? null : `${p.ns}/egress`,
        rule: denied ? null : 0,
        ips: denied ? [] : ['203.0.113.20'],
        ttl: 300,
        rcode: denied ? 5 : 0,
        ms: 0.3,
        transport: 'udp',
      });
      stats.count('dns', verdict, p.src, name);
    }
  };
  decide(50);

  const { page } = await openBrowser(t);
  const external: string[] = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(base)) external.push(r.url());
  });
  await page.goto(`${base}/dashboard`);
  await page.waitForSelector('#status[data-state="live"]');
  const queries = async () => Number((await page.textContent('#total-queries'))?.replace(/,/g, ''));
  // Polled from here: the page's content security policy allows no evaluated script.
  await waitFor('50 queries on the page', async () => (await queries()) >= 50);
  const before = await queries();
  decide(500);
  await waitFor('the counter to move', async () => (await queries()) > before);
  assert.ok((await queries()) >= 550);
  assert.ok(Number(await page.textContent('#total-denied')) > 0);
  assert.equal(await page.textContent('#governed'), '2');
  await page.waitForSelector('#top-denied tbody tr');
  assert.match((await page.textContent('#top-denied tbody')) ?? '', /blocked\d\.example\.com/);
  await page.waitForSelector('#flows tbody tr');
  assert.ok((await page.locator('#flows tbody tr').count()) <= 200);
  await screenshot(page, 'overview');

  // Filter: only ci, only denials.
  await page.fill('#filter-namespace', 'ci');
  await page.selectOption('#filter-verdict', 'deny');
  await page.click('#filters button[type=submit]');
  decide(100);
  await page.waitForSelector('#flows tbody tr');
  const sources = await page.locator('#flows tbody tr td:nth-child(3)').allTextContents();
  const verdicts = await page.locator('#flows tbody tr td:nth-child(6)').allTextContents();
  assert.ok(sources.length > 0);
  assert.ok(
    sources.every((s) => s.startsWith('ci/')),
    sources.join(','),
  );
  assert.ok(
    verdicts.every((v) => v === 'deny'),
    verdicts.join(','),
  );
  await screenshot(page, 'filtered');

  // A bad filter says why.
  await page.fill('#filter-name', 'a..b');
  await page.click('#filters button[type=submit]');
  await waitFor('the filter error', async () =>
    ((await page.textContent('#filter-error')) ?? '').includes('--name'),
  );
  await page.fill('#filter-name', '');

  // Propose a rule for a denied flow: the YAML validates.
  await page.click('#filters button[type=submit]');
  decide(20);
  await page.waitForSelector('#flows tbody tr button.propose');
  await page.click('#flows tbody tr button.propose');
  await page.waitForSelector('#proposal-status[data-valid]');
  assert.equal(await page.getAttribute('#proposal-status', 'data-valid'), 'true');
  const yaml = (await page.textContent('#proposal-yaml')) ?? '';
  const docs = parseAllDocuments(yaml).map((d) => d.toJS());
  assert.equal(docs.length, 1);
  const v = validateNative(docs[0]);
  assert.deepEqual(v.errors, []);
  assert.equal(v.policy?.ref.namespace, 'ci');
  await screenshot(page, 'proposal');
  assert.deepEqual(external, []);
});
