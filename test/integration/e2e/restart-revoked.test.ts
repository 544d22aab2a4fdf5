/**
 * End to end (root, own lab): a policy changed while the agent was down takes effect in the
 * kernel before the restarted agent answers DNS (issue 13, item 1). The pod learned example.org
 * and holds a connection to it; the agent is killed; the policy that allowed example.org is
 * removed; on restart the checkpointed entry is no longer justified, so its elements leave the
 * kernel and the held connection's conntrack entry is deleted before the DNS proxy opens its
 * sockets: the first DNS answer finds the element gone, the held connection is dropped, and a
 * new connection is refused. Then the lab's own case: the pod's identity changes while the agent
 * is down to one whose policy grants the same port for other names.
 */
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { findPod, type LabPlan, labPlan, siteFor } from '../../../src/lab/plan.ts';
import {
  agentLog,
  agentPid,
  closeAll,
  dig,
  downLab,
  ECHO_PORT,
  EchoServer,
  HeldConnection,
  hasElement,
  isRunning,
  paymentsPolicy,
  policyDir,
  removeDir,
  skip,
  startLabAgent,
  tcpConnects,
  uniqueLabName,
  upLab,
  waitFor,
  withoutSniProxy,
  writeAgentConfig,
} from './helpers.ts';

const NAME = uniqueLabName('rrevoke');
const PAY = 'payments-api';
const FAMILIES = [4, 6] as const;
const HOLD_FILE = 'e2e-hold.yaml';

describe('end to end: a policy changed while the agent is down', { skip, concurrency: false }, () => {
  let plan: LabPlan;
  let dir: string | undefined;
  let checkpoint = '';
  const open: Array<{ stop?: () => void; close?: () => void }> = [];

  before(async () => {
    dir = await policyDir({ [HOLD_FILE]: paymentsPolicy('e2e-hold', ['example.org']) });
    checkpoint = path.join(labPlan(NAME).stateDir, 'store.ckpt');
    plan = await upLab(NAME, {
      policies: [dir],
      config: (c) => ({
        ...withoutSniProxy(c),
        store: { checkpoint: { path: checkpoint, intervalSeconds: 1 } },
      }),
    });
    open.push(await EchoServer.start(plan, ECHO_PORT));
  });
  after(async () => {
    closeAll(open);
    await downLab(NAME);
    await removeDir(dir);
  });

  it('removes what the restored state no longer justifies, flows included, before DNS is served (REL-03)', async () => {
    const pay = findPod(plan, PAY);
    const src = { 4: pay.ipv4, 6: pay.ipv6 };
    const org = siteFor(plan, 'example.org');
    assert.ok(org);
    const orgIp = { 4: org.ipv4[0]!, 6: org.ipv6[0]! };

    const conns: Record<4 | 6, HeldConnection> = {} as never;
    for (const f of FAMILIES) {
      const d = await dig(plan, PAY, 'example.org', f === 4 ? 'A' : 'AAAA');
      assert.deepEqual(d.addresses, [orgIp[f]]);
      conns[f] = await HeldConnection.open(plan, PAY, orgIp[f], ECHO_PORT);
      open.push(conns[f]);
      assert.ok(await conns[f].ping(), `IPv${f} held connection echoes`);
      assert.ok(await hasElement(plan, src[f], orgIp[f], ECHO_PORT), `IPv${f} element learned`);
    }
    await waitFor('the checkpoint to hold example.org', async () => {
      const text = await readFile(checkpoint, 'utf8').catch(() => '');
      return text.includes(`"${orgIp[4]}"`) && text.includes(`"${orgIp[6]}"`);
    });

    const pid = await agentPid(plan);
    process.kill(pid, 'SIGKILL');
    await waitFor('the agent to die', () => !isRunning(pid));
    // While it is down, the policy that allowed example.org goes away.
    await rm(path.join(dir ?? '', HOLD_FILE));
    for (const f of FAMILIES) {
      assert.ok(
        await hasElement(plan, src[f], orgIp[f], ECHO_PORT),
        `IPv${f}: the kernel kept it while down`,
      );
      assert.ok(await conns[f].ping(), `IPv${f}: the flow runs while down`);
    }

    const logged = agentLog(plan).length;
    const restarting = startLabAgent(plan);
    restarting.catch(() => {});
    // The first answer of the restarted agent: by then the elements must already be gone.
    const first = await waitFor(
      'the restarted agent to answer DNS',
      async () => {
        const d = await dig(plan, PAY, 'example.org', 'A', { timeoutS: 1 });
        return d.status === null ? null : d;
      },
      { timeoutMs: 60_000, intervalMs: 50 },
    );
    const present = await Promise.all(FAMILIES.map((f) => hasElement(plan, src[f], orgIp[f], ECHO_PORT)));
    assert.deepEqual(present, [false, false], 'no element of example.org when DNS first answers');
    assert.equal(first.status, 'REFUSED', `example.org is refused now: ${first.raw}`);
    await restarting;

    const restored = agentLog(plan)
      .slice(logged)
      .find((l) => l['msg'] === 'checkpoint restored');
    assert.ok(restored, 'the restore logged');
    const kernel = restored['kernel'] as Record<string, number>;
    assert.ok((kernel['stale'] ?? 0) >= 2, `stale elements judged: ${JSON.stringify(restored)}`);
    assert.ok(Number(restored['forgotten']) >= 2, `elements removed: ${JSON.stringify(restored)}`);
    for (const f of FAMILIES) {
      assert.equal(await conns[f].ping(), false, `IPv${f}: the held connection is dropped`);
      assert.equal(
        await tcpConnects(plan, PAY, orgIp[f], ECHO_PORT),
        false,
        `IPv${f}: a new connection is dropped`,
      );
    }
  });

  it('a pod relabelled while down loses what it learned under its old identity, though its new policy grants the port (REL-03)', async () => {
    const pay = findPod(plan, PAY);
    const stripe = siteFor(plan, 'api.stripe.com');
    assert.ok(stripe);
    const ip = stripe.ipv4[0]!;
    const d = await dig(plan, PAY, 'api.stripe.com', 'A');
    assert.deepEqual(d.addresses, [ip]);
    assert.ok(await hasElement(plan, pay.ipv4, ip, 443), 'element learned');
    assert.ok(await tcpConnects(plan, PAY, ip, 443), 'the pod connects');
    await waitFor('the checkpoint to hold api.stripe.com', async () =>
      (await readFile(checkpoint, 'utf8').catch(() => '')).includes(`"api.stripe.com"`),
    );

    const pid = await agentPid(plan);
    process.kill(pid, 'SIGKILL');
    await waitFor('the agent to die', () => !isRunning(pid));
    // While it is down the pod becomes a CI runner: ci-runners.yaml grants TCP 443 (for GitHub
    // and npm), so only the checkpoint tells that this element was learned for api.stripe.com.
    await writeAgentConfig(plan, (c) => ({
      ...withoutSniProxy(c),
      store: { checkpoint: { path: checkpoint, intervalSeconds: 1 } },
      sources: c.sources.map((g) =>
        g.name === PAY ? { ...g, namespace: 'ci', labels: { role: 'runner' } } : g,
      ),
    }));
    assert.ok(await hasElement(plan, pay.ipv4, ip, 443), 'the kernel kept it while down');

    const restarting = startLabAgent(plan);
    restarting.catch(() => {});
    const first = await waitFor(
      'the restarted agent to answer DNS',
      async () => {
        const r = await dig(plan, PAY, 'api.stripe.com', 'A', { timeoutS: 1 });
        return r.status === null ? null : r;
      },
      { timeoutMs: 60_000, intervalMs: 50 },
    );
    assert.equal(await hasElement(plan, pay.ipv4, ip, 443), false, 'no element when DNS first answers');
    assert.equal(first.status, 'REFUSED', `api.stripe.com is refused to a CI runner: ${first.raw}`);
    await restarting;
    assert.equal(await tcpConnects(plan, PAY, ip, 443), false, 'the old element no longer lets it connect');
  });
});
