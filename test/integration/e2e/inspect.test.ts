/**
 * End to end through TLS inspection (root, one lab, the agent with examples/): payments-api's
 * rule for files.stripe.com says `verify: Inspect` (GET and HEAD under /v1/files/, POST /v1/files), and
 * the lab CA doubles as the inspection CA. The connection is redirected by nftables to the SNI
 * proxy, checked like any verify port (name allowed, address learned for it), then terminated
 * and judged request by request; what passes reaches nginx unchanged.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { findPod, type LabPlan } from '../../../src/lab/plan.ts';
import {
  assertServed,
  downLab,
  flowLog,
  http,
  type LogLine,
  skip,
  uniqueLabName,
  upLab,
  waitFor,
} from './helpers.ts';

const NAME = uniqueLabName('inspect');
const CI = 'payments-api';
const API = 'files.stripe.com';

describe('end to end: TLS inspection with HTTP rules', { skip, concurrency: false }, () => {
  let plan: LabPlan;
  const requestLine = (from: number, path: string): Promise<LogLine> =>
    waitFor(`a proxy_request line for ${path}`, () =>
      flowLog(plan)
        .slice(from)
        .find((l) => l['event'] === 'proxy_request' && l['path'] === path),
    );

  before(async () => {
    plan = await upLab(NAME);
  });
  after(async () => {
    await downLab(NAME);
  });

  it('an allowed path is served by the real site, through a minted certificate the pod trusts', async () => {
    const from = flowLog(plan).length;
    const r = await http(plan, CI, API, { path: '/v1/files/f1' });
    assertServed(r, API, `${CI} -> https://${API}/v1/files/f1`);
    const line = await requestLine(from, '/v1/files/f1');
    assert.equal(line['verdict'], 'allow');
    assert.equal(line['reason'], 'http_rule');
    assert.equal(line['policy'], 'payments/stripe-only');
    assert.equal(line['http_rule'], 0);
    assert.equal(line['src'], findPod(plan, CI).ipv4);
    const conn = flowLog(plan)
      .slice(from)
      .find((l) => l['event'] === 'proxy' && l['sni'] === API);
    assert.equal(conn?.['inspect'], true);
  });

  for (const [label, options, path, reason] of [
    ['a path no HTTP rule allows', { path: '/v1/charges' }, '/v1/charges', 'path_not_allowed'],
    [
      'a method no HTTP rule allows',
      { path: '/v1/files/x', method: 'DELETE' },
      '/v1/files/x',
      'method_not_allowed',
    ],
    [
      'SNI-10: a fronted request (Host is another allowed name)',
      { path: '/v1/files/f', headers: ['Host: api.stripe.com'] },
      '/v1/files/f',
      'domain_fronting',
    ],
  ] as const) {
    it(`${label} gets 403 ${reason} and one flow line`, async () => {
      const from = flowLog(plan).length;
      const r = await http(plan, CI, API, options);
      assert.equal(r.status, 403, r.stderr);
      assert.equal(r.body, `namegate: ${reason}`);
      const line = await requestLine(from, path);
      assert.equal(line['verdict'], 'deny');
      assert.equal(line['reason'], reason);
      assert.equal(line['authority'], API);
    });
  }

  it('a name of the same pod without inspection is relayed untouched (the site, not namegate, answers)', async () => {
    const r = await http(plan, CI, 'api.stripe.com', { path: '/anything' });
    assertServed(r, 'api.stripe.com', `${CI} -> https://api.stripe.com/anything`);
  });
});
