/**
 * End to end (root, one lab for the file): what the agent sees, people see.
 *
 * - Kernel drops become flow events read from NFLOG: a hard-coded address (never resolved), an
 *   address only another pod learned, a port the rule does not grant, each with the name the
 *   address was learned for; Audit would-be drops are events marked audit.
 * - `namegate observe` (the real CLI, against the agent's flow API) filters by pod, verdict, type
 *   and name, and follows new events.
 * - The closed loop of `namegate recommend`: the web pod's traffic is recorded under an Audit
 *   policy that allows nothing, recommended, put in force in Enforce mode in place of the Audit
 *   policy, and replayed: every observed flow is allowed, names not observed stay denied.
 * - The dashboard served by the agent, in headless Chromium: counters move with the lab's
 *   traffic, the filter narrows the table, and "propose a rule" gives YAML that validates.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { type FlowEvent, parseFlowLine } from '../../../src/flows/event.ts';
import { validateNative } from '../../../src/formats/native.ts';
import { AGENT_HTTP_LISTEN } from '../../../src/lab/agent-config.ts';
import { labExec } from '../../../src/lab/exec.ts';
import { findPod, type LabPlan, siteFor } from '../../../src/lab/plan.ts';
import { CHROMIUM, chromiumMissing, screenshot } from '../dashboard/browser.ts';
import {
  assertDropped,
  assertServed,
  DROP,
  dig,
  downLab,
  http,
  paymentsPolicy,
  policyDir,
  removeDir,
  skip,
  uniqueLabName,
  upLab,
  waitFor,
  withoutSniProxy,
} from './helpers.ts';

const NAME = uniqueLabName('observe');
const BIN = fileURLToPath(new URL('../../../bin/namegate', import.meta.url));
const AGENT = `http://${AGENT_HTTP_LISTEN}`;

/** The web pod under an Audit policy that allows nothing: everything it does is recorded. */
const LEARN_WEB = `apiVersion: namegate.dev/v1alpha1
kind: EgressPolicy
metadata:
  name: learn-web
  namespace: web
spec:
  mode: Audit
  podSelector:
    matchLabels:
      app: web
  egress: []
`;

/** What the web pod does while recorded, and replays under the recommendation. */
const WEB_TRAFFIC: ReadonlyArray<{ name: string; scheme: 'https' | 'http' }> = [
  { name: 'pypi.org', scheme: 'https' },
  { name: 'files.pythonhosted.org', scheme: 'https' },
  { name: 'deb.debian.org', scheme: 'http' },
  { name: 'raw.githubusercontent.com', scheme: 'https' },
  { name: 'objects.githubusercontent.com', scheme: 'https' },
];
/** Names the web pod never used: they must stay denied. */
const NOT_OBSERVED = ['evil.example.com', 'example.org', 'registry.npmjs.org'];

/** `namegate <args>` in the node namespace (where the agent's flow API listens). */
async function namegate(plan: LabPlan, args: readonly string[], timeoutMs = 30_000): Promise<string> {
  const r = await labExec(plan, 'node', [BIN, ...args], { timeoutMs });
  assert.equal(r.code, 0, `namegate ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function observe(plan: LabPlan, args: readonly string[]): Promise<FlowEvent[]> {
  const out = await namegate(plan, ['observe', '--agent', AGENT, '-o', 'json', ...args]);
  return out
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as FlowEvent);
}

describe('end to end: flow events, observe, recommend, dashboard', { skip, concurrency: false }, () => {
  let plan: LabPlan;
  let dir: string | undefined;

  before(async () => {
    dir = await policyDir({
      'e2e-observe.yaml': paymentsPolicy('e2e-observe', ['api.stripe.com'], [443, 8443]),
      'learn-web.yaml': LEARN_WEB,
    });
    // The example audit policy would allow the web pod some names; the learning one replaces it.
    rmSync(path.join(dir, 'cluster-audit.yaml'), { force: true });
    plan = await upLab(NAME, { policies: [dir], config: withoutSniProxy });
  });
  after(async () => {
    await downLab(NAME);
    await removeDir(dir);
  });

  it('kernel drops are flow events with the reason and the name kept', async () => {
    const pay = findPod(plan, 'payments-api');
    const evil = siteFor(plan, 'evil.example.com');
    const github = siteFor(plan, 'github.com');
    // A hard-coded address: nobody resolved it.
    assertDropped(
      await http(plan, 'payments-api', 'evil.example.com', { ...DROP, via: evil?.ipv4[0] as string }),
      'a hard-coded address',
    );
    // An address only ci-runner learned.
    assert.ok((await dig(plan, 'ci-runner', 'github.com')).addresses.length > 0);
    assertDropped(
      await http(plan, 'payments-api', 'github.com', { ...DROP, via: github?.ipv4[0] as string }),
      "another pod's address",
    );
    // Resolved, but the rule grants 443 and 8443 only.
    assert.ok((await dig(plan, 'payments-api', 'api.stripe.com')).addresses.length > 0);
    assertDropped(
      await http(plan, 'payments-api', 'api.stripe.com', { ...DROP, scheme: 'http' }),
      'a port the rule does not grant',
    );

    const events = await waitFor('three kernel drops of payments-api', async () => {
      const got = await observe(plan, [
        '--pod',
        'payments/payments-api',
        '--type',
        'kernel',
        '--verdict',
        'drop',
        '--last',
        '100',
      ]);
      const reasons = new Set(got.map((e) => e.reason));
      return reasons.has('never_resolved') && reasons.has('other_source') && reasons.has('other_port')
        ? got
        : null;
    });
    const byReason = (r: string) => events.find((e) => e.reason === r) as FlowEvent;
    assert.equal(byReason('never_resolved').dst, evil?.ipv4[0]);
    assert.equal(byReason('never_resolved').src, pay.ipv4);
    assert.equal(byReason('never_resolved').dport, 443);
    assert.equal(byReason('never_resolved').proto, 'tcp');
    assert.equal(byReason('other_source').name, 'github.com');
    assert.deepEqual(byReason('other_source').detail?.learnedBy, ['group:ci-runner']);
    assert.equal(byReason('other_port').name, 'api.stripe.com');
    assert.equal(byReason('other_port').dport, 80);
    assert.match(byReason('other_port').detail?.ports ?? '', /TCP\/443/);
    assert.equal(byReason('other_port').policy, 'payments/e2e-observe');
  });

  it('observe filters and follows; Audit would-be drops are audit events', async () => {
    const follow = spawn(
      'ip',
      [
        'netns',
        'exec',
        `ng-${NAME}-node`,
        BIN,
        'observe',
        '--agent',
        AGENT,
        '-f',
        '-o',
        'json',
        '--namespace',
        'web',
        '--type',
        'kernel',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const seen: FlowEvent[] = [];
    let rest = '';
    follow.stdout.setEncoding('utf8');
    follow.stdout.on('data', (c: string) => {
      const lines = (rest + c).split('\n');
      rest = lines.pop() ?? '';
      for (const l of lines) if (l.trim()) seen.push(JSON.parse(l) as FlowEvent);
    });
    try {
      await waitFor('the follower attached', async () => {
        const m = await labExec(plan, 'node', ['curl', '-sS', `${AGENT}/metrics`]);
        return /^namegate_flows_followers [1-9]/m.test(m.stdout);
      });
      // Audit: the connection passes, the event says audit (and the name, from the audit answer).
      assertServed(await http(plan, 'web', 'pypi.org'), 'pypi.org', 'Audit lets it through');
      const e = await waitFor('the audit event, followed', () =>
        seen.find((x) => x.name === 'pypi.org' && x.verdict === 'audit'),
      );
      assert.equal(e.type, 'kernel');
      assert.equal(e.namespace, 'web');
      assert.equal(e.dport, 443);
      assert.ok(seen.every((x) => x.namespace === 'web' && x.type === 'kernel'));
    } finally {
      follow.kill('SIGINT');
    }
    // History with a name pattern, as a table.
    const table = await namegate(plan, [
      'observe',
      '--agent',
      AGENT,
      '--name',
      '*.stripe.com',
      '--last',
      '5',
    ]);
    assert.match(table.split('\n')[0] ?? '', /^TIME +TYPE +SOURCE/);
    assert.ok(table.includes('api.stripe.com'));
    // A bad filter is a usage error (exit 2) that names the flag.
    const bad = await labExec(plan, 'node', [BIN, 'observe', '--agent', AGENT, '--verdict', 'maybe']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--verdict/);
  });

  it('recommend closes the loop: Audit record -> recommendation -> Enforce -> replay', async () => {
    // Record: every flow twice (the default stabilization wants a name seen twice).
    for (let round = 0; round < 2; round++)
      for (const t of WEB_TRAFFIC)
        assertServed(
          await http(plan, 'web', t.name, { scheme: t.scheme }),
          t.name,
          `Audit mode, round ${round}`,
        );
    // Wait until the agent has a kernel event (with its port) for every address. Names that share
    // one address (raw. and objects.githubusercontent.com) are told apart by DNS events only: a
    // kernel event carries the name this source learned for the address last, whichever it was
    // when the event was read.
    const addresses = new Set(WEB_TRAFFIC.map((t) => siteFor(plan, t.name)?.ipv4[0] as string));
    let seen = new Set<string>();
    await waitFor('kernel audit events for every recorded address', async () => {
      // Straight from the flow API (a curl per probe, not a CLI start: cheap on a loaded machine).
      const r = await labExec(plan, 'node', [
        'curl',
        '-sS',
        `${AGENT}/flows?namespace=web&type=kernel&verdict=audit&last=1000`,
      ]);
      const got = r.stdout
        .split('\n')
        .map((l) => parseFlowLine(l))
        .filter((e): e is FlowEvent => e !== null);
      seen = new Set(got.map((e) => `${e.name} ${e.dst} ${e.reason}`));
      const dsts = new Set(got.map((e) => e.dst));
      return [...addresses].every((a) => dsts.has(a)) ? true : null;
    }).catch((err: Error) => {
      throw new Error(`${err.message}; seen: ${[...seen].join(', ')}`);
    });
    const recommend = ['recommend', '--agent', AGENT, '--namespace', 'web', '--siblings', '2'];
    const yaml = await namegate(plan, recommend);
    const docs = parseAllDocuments(yaml)
      .map((d) => d.toJS() as Record<string, unknown> | null)
      .filter((d): d is Record<string, unknown> => d !== null);
    assert.equal(docs.length, 1, yaml);
    const v = validateNative(docs[0]);
    assert.deepEqual(v.errors, []);
    assert.equal(v.policy?.mode, 'Enforce');
    assert.ok(yaml.includes('*.githubusercontent.com'), `siblings become a wildcard:\n${yaml}`);
    assert.ok(!yaml.includes('evil.example.com'));
    // Cilium and network-policy-api forms pass their readers too.
    for (const format of ['cilium', 'npa']) await namegate(plan, [...recommend, '-o', format]);

    // Enforce: the recommendation replaces the learning policy; the agent reloads the folder.
    rmSync(path.join(dir as string, 'learn-web.yaml'));
    await writeFile(path.join(dir as string, 'recommended-web.yaml'), yaml);
    await waitFor('the recommendation in force', async () => {
      const p = await labExec(plan, 'node', ['curl', '-sS', `${AGENT}/debug/policies`]);
      return p.stdout.includes('web-egress') && !p.stdout.includes('learn-web');
    });
    // Replay: every observed flow is allowed...
    for (const t of WEB_TRAFFIC)
      assertServed(await http(plan, 'web', t.name, { scheme: t.scheme }), t.name, 'under the recommendation');
    // ...and names not observed stay denied (DNS refused, and a direct connection dropped).
    for (const n of NOT_OBSERVED) {
      const d = await dig(plan, 'web', n);
      assert.equal(d.status, 'REFUSED', `${n} is not resolvable`);
      const site = siteFor(plan, n);
      assertDropped(await http(plan, 'web', n, { ...DROP, via: site?.ipv4[0] as string }), `${n} by address`);
    }
    const r = await readFile(path.join(dir as string, 'recommended-web.yaml'), 'utf8');
    assert.ok(r.includes('kind: EgressPolicy'));
  });

  it('the dashboard in headless Chromium: counters move, filters work, proposals validate', {
    skip: chromiumMissing(),
  }, async (t) => {
    // Chromium runs in the node namespace, where the agent listens on loopback.
    const wrapDir = mkdtempSync(path.join(os.tmpdir(), 'ng-chromium-netns-'));
    t.after(() => rmSync(wrapDir, { recursive: true, force: true }));
    const wrapper = path.join(wrapDir, 'chromium');
    writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ng-${NAME}-node ${CHROMIUM} "$@"\n`);
    chmodSync(wrapper, 0o755);
    const { chromium } = await import('playwright-core');
    const { FLAGS } = await import('../dashboard/browser.ts');
    const browser = await chromium.launch({ executablePath: wrapper, headless: true, args: FLAGS });
    t.after(() => browser.close());
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    await page.goto(`${AGENT}/dashboard`);
    await page.waitForSelector('#status[data-state="live"]');
    const count = async (sel: string) => Number(((await page.textContent(sel)) ?? '').replace(/,/g, ''));
    const before = await count('#total-queries');
    for (const n of ['github.com', 'registry.npmjs.org', 'evil.example.com']) await dig(plan, 'ci-runner', n);
    await waitFor('the query counter to move', async () => (await count('#total-queries')) >= before + 3);
    await waitFor('the denied counter', async () => (await count('#total-denied')) > 0);
    assert.ok((await count('#governed')) >= 3);
    await screenshot(page, 'lab-overview');

    await page.fill('#filter-namespace', 'ci');
    await page.selectOption('#filter-verdict', 'deny');
    await page.click('#filters button[type=submit]');
    await dig(plan, 'ci-runner', 'evil.example.com');
    await dig(plan, 'payments-api', 'evil.example.com');
    await page.waitForSelector('#flows tbody tr button.propose');
    const sources = await page.locator('#flows tbody tr td:nth-child(3)').allTextContents();
    assert.ok(sources.length > 0 && sources.every((s) => s.startsWith('ci/')), sources.join(','));
    await page.click('#flows tbody tr button.propose');
    await page.waitForSelector('#proposal-status[data-valid]');
    assert.equal(await page.getAttribute('#proposal-status', 'data-valid'), 'true');
    const yaml = (await page.textContent('#proposal-yaml')) ?? '';
    const v = validateNative(parseAllDocuments(yaml)[0]?.toJS());
    assert.deepEqual(v.errors, []);
    assert.ok(yaml.includes('evil.example.com'));
    await screenshot(page, 'lab-proposal');
    const lines = (await readFile(path.join(plan.stateDir, 'logs', 'flow.log'), 'utf8')).split('\n');
    assert.ok(
      lines.some((l) => parseFlowLine(l)?.type === 'kernel'),
      'kernel events are in the flow log file too',
    );
  });
});
