/**
 * End to end through the SNI/Host proxy (root, one lab): payments-api's rule has `verify: SNI`
 * on TCP 443, so its HTTPS connections are redirected to the proxy, which lets a connection
 * through only when the policy allows the SNI name AND the destination is an address this pod
 * learned for that very name. api.stripe.com shares its address with cdn-neighbour.example.net
 * (the CDN case an IP set alone cannot tell apart).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { findPod, type LabPlan, siteFor } from '../../../src/lab/plan.ts';
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

const NAME = uniqueLabName('sni');
const PAY = 'payments-api';
const UNM = 'unmanaged';

describe('end to end: names are verified where addresses are shared', { skip, concurrency: false }, () => {
  let plan: LabPlan;
  const ip4 = (name: string) => {
    const a = siteFor(plan, name)?.ipv4[0];
    assert.ok(a, name);
    return a;
  };
  /**
   * The proxy's decision line for a connection to `dst` presenting `sni` (null: none), after
   * line `from`. The name is part of the match: lines of an earlier connection to the same
   * address (its close line, say) may still arrive after `from`.
   */
  const decision = (from: number, dst: string, sni: string | null): Promise<LogLine> =>
    waitFor(`an SNI proxy decision for ${sni ?? '(no SNI)'} at ${dst}`, () =>
      flowLog(plan)
        .slice(from)
        .find(
          (l) =>
            l['component'] === 'sni-proxy' &&
            l['dst'] === dst &&
            l['sni'] === sni &&
            (l['verdict'] === 'allow' || l['verdict'] === 'deny'),
        ),
    );

  before(async () => {
    plan = await upLab(NAME);
  });
  after(async () => {
    await downLab(NAME);
  });

  it('the allowed name on its learned address passes the proxy', async () => {
    const from = flowLog(plan).length;
    const r = await http(plan, PAY, 'api.stripe.com');
    assertServed(r, 'api.stripe.com', 'payments-api -> https://api.stripe.com');
    const line = await decision(from, ip4('api.stripe.com'), 'api.stripe.com');
    assert.equal(line['verdict'], 'allow');
    assert.equal(line['sni'], 'api.stripe.com');
    assert.equal(line['src'], findPod(plan, PAY).ipv4);
  });

  it('SNI-02: another name on the shared address is refused, though the address is learned', async () => {
    await http(plan, PAY, 'api.stripe.com'); // the pod has learned the shared address
    const from = flowLog(plan).length;
    const r = await http(plan, PAY, 'cdn-neighbour.example.net', {
      via: ip4('api.stripe.com'),
      connectTimeoutS: 3,
    });
    assert.notEqual(r.code, 0, `expected the proxy to close the connection: ${r.body}`);
    const line = await decision(from, ip4('api.stripe.com'), 'cdn-neighbour.example.net');
    assert.equal(line['verdict'], 'deny');
    assert.equal(line['sni'], 'cdn-neighbour.example.net');
    assert.equal(line['reason'], 'sni_not_allowed');
  });

  it('SNI-01: an allowed SNI sent to an address never learned for it is refused (spoofed SNI)', async () => {
    const elsewhere = ip4('github.com');
    const from = flowLog(plan).length;
    const r = await http(plan, PAY, 'api.stripe.com', { via: elsewhere, connectTimeoutS: 3 });
    assert.notEqual(r.code, 0, 'no response through a spoofed SNI');
    const line = await decision(from, elsewhere, 'api.stripe.com');
    assert.equal(line['verdict'], 'deny');
    assert.equal(line['reason'], 'sni_ip_mismatch');
  });

  it('TLS-05: a connection without SNI (an IP literal) is refused', async () => {
    const target = ip4('registry.npmjs.org');
    const from = flowLog(plan).length;
    const r = await http(plan, PAY, target, { connectTimeoutS: 3 });
    assert.notEqual(r.code, 0);
    const line = await decision(from, target, null);
    assert.equal(line['reason'], 'no_sni');
  });

  it('control: an ungoverned pod reaches the neighbour (the proxy only sees governed sources)', async () => {
    const r = await http(plan, UNM, 'cdn-neighbour.example.net');
    assertServed(r, 'cdn-neighbour.example.net', 'unmanaged -> https://cdn-neighbour.example.net');
  });
});
