/**
 * The learning and revocation path on the real kernel (router namespace: nftables, conntrack;
 * the pod's connections are real TCP through it), with the real DNS pipeline and enforcer:
 *
 * - a revocation is one step: once the agent reports it done, the element and the established
 *   connection's conntrack entry are both gone and the connection carries nothing (issue 13.3);
 * - an answer asked before a revocation and answered after it does not put the element back;
 * - what is in use is never evicted: at the per-name cap, a live connection's address stays and
 *   the new address is rejected; once the connection is closed, the next answer evicts it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AllowElement } from '../../../src/datapath/datapath.ts';
import { waitFor } from '../netns.ts';
import { A4, DriverClient, S4, S4b, Session, startServer, topology } from './topology.ts';

const HOST = 'test/integration/datapath/enforce-host.ts';
const NAME = 'api.example.com';
const GROUPS = [{ name: 'pod-a', namespace: 'shop', labels: { app: 'web' }, cidrs: [`${A4}/32`] }];
const WEB = `
apiVersion: namegate.dev/v1alpha1
kind: EgressPolicy
metadata: { name: web, namespace: shop }
spec:
  podSelector: { matchLabels: { app: web } }
  egress: [{ toFQDNs: [{ name: ${NAME} }], ports: [{ port: 443 }] }]
`;
/** Keeps the pod governed (Enforce) with nothing allowed: the web rule is revoked. */
const NOTHING = `
apiVersion: namegate.dev/v1alpha1
kind: EgressPolicy
metadata: { name: web, namespace: shop }
spec:
  podSelector: { matchLabels: { app: web } }
  egress: [{ toFQDNs: [{ name: other.example.com }], ports: [{ port: 443 }] }]
`;

const holds = (learned: AllowElement[], destination: string) =>
  learned.some((e) => e.source === A4 && e.destination === destination && e.portFrom === 443);

test('learning and revocation on the real kernel', async (t) => {
  const topo = await topology(t);
  await startServer(topo.inet, 'inet', [443]);
  const conntrack = async (destination: string) =>
    (await topo.router.exec(['conntrack', '-L', '-s', A4, '-d', destination, '-p', 'tcp', '--dport', '443']))
      .stdout;

  await t.test(
    'a revocation is done when the element and the established flow are both gone (K8S-02)',
    async () => {
      const host = await DriverClient.start(topo.router, { groups: GROUPS, policies: [WEB] }, HOST);
      t.after(() => host.close());
      await host.call('answer', NAME, [S4]);
      assert.deepEqual(await host.call('ask', A4, NAME), { rcode: 0 });
      const s = await Session.open(topo.podA, S4, 443);
      t.after(() => s.close());
      assert.equal((await s.ping()).result, 'ok', 'requests on the connection');
      assert.equal((await s.ping()).result, 'ok');
      assert.match(await conntrack(S4), /ESTABLISHED/);

      await host.call('policies', [NOTHING]);
      await host.call('sync', 'policy');
      // The sync resolves after its revocation reported done: nothing of it may remain now.
      const [done] = await host.call<Array<Record<string, unknown>>>('log', 'revoked');
      assert.ok(done, 'the revocation was reported');
      assert.deepEqual(done['sources'], [A4]);
      assert.ok((done['flows'] as number) >= 1, JSON.stringify(done));
      assert.ok(!holds(await host.call('learned'), S4), 'the element is gone');
      assert.doesNotMatch(await conntrack(S4), /ESTABLISHED/, 'the flow is gone');
      assert.notEqual((await s.ping()).result, 'ok', 'the connection carries nothing any more');
      await host.close();
    },
  );

  await t.test('an answer asked before a revocation and answered after it does not re-add', async () => {
    const host = await DriverClient.start(topo.router, { groups: GROUPS, policies: [WEB] }, HOST);
    t.after(() => host.close());
    await host.call('answer', NAME, [S4b]);
    const asked = host.call<{ rcode: number }>('ask', A4, NAME, true);
    await waitFor('the query at the upstream', async () => (await host.call<number>('heldCount', NAME)) > 0);
    await host.call('policies', [NOTHING]);
    await host.call('sync', 'policy');
    await host.call('release', NAME);
    assert.deepEqual(await asked, { rcode: 5 });
    await host.call('idle');
    assert.ok(!holds(await host.call('learned'), S4b), 'no element for the revoked name');
    await host.close();
  });

  await t.test('what is in use is never evicted at the per-name cap (TIME-06)', async () => {
    const host = await DriverClient.start(
      topo.router,
      {
        groups: GROUPS,
        policies: [WEB],
        limits: { maxIpsPerName: 1, maxIpsPerSource: 100, maxEntries: 1000 },
        inUseMaxAgeMs: 100,
      },
      HOST,
    );
    t.after(() => host.close());
    await host.call('answer', NAME, [S4]);
    assert.deepEqual(await host.call('ask', A4, NAME), { rcode: 0 });
    const s = await Session.open(topo.podA, S4, 443);
    t.after(() => s.close());
    assert.equal((await s.ping()).result, 'ok');

    // The name now answers another address: learning it would evict the live one.
    await host.call('answer', NAME, [S4b]);
    await host.call('ask', A4, NAME);
    let learned = await host.call<AllowElement[]>('learned');
    assert.ok(holds(learned, S4), 'the address in use keeps its element');
    assert.ok(!holds(learned, S4b), 'the new address is rejected (fail closed) rather than evict it');
    assert.match(await conntrack(S4), /ESTABLISHED/);
    assert.equal((await s.ping()).result, 'ok', 'the live connection is untouched');

    // Closed, the connection leaves conntrack's live states; the next answer may evict its address.
    s.close();
    await waitFor('the connection closed in conntrack', async () => !/ESTABLISHED/.test(await conntrack(S4)));
    await waitFor('the new address learned', async () => {
      await host.call('ask', A4, NAME);
      return holds(await host.call('learned'), S4b);
    });
    learned = await host.call<AllowElement[]>('learned');
    assert.ok(!holds(learned, S4), 'evicted once nothing used it');
    await host.close();
  });
});
