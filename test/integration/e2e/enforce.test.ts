/**
 * End to end with the example policies (root, one lab for the file): the agent in the node
 * namespace enforces for real. Allowed names work over HTTPS on IPv4 and IPv6; denied names get
 * REFUSED and teach the kernel nothing; addresses nobody learned, ports the rule does not list,
 * and the escape paths (QUIC, other resolvers, DoT, ICMP, the metadata address) are dropped;
 * learning is per source; an Audit source drops nothing and its would-be denials are logged and
 * counted. Every scenario also shows the control: the unmanaged pod (no policy) gets through, so
 * a drop is namegate's doing and not the lab's.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { findPod, type LabPlan, siteFor } from '../../../src/lab/plan.ts';
import { run } from '../../../src/lab/run.ts';
import {
  assertDropped,
  assertServed,
  closeAll,
  DROP,
  dig,
  downLab,
  droppedMetric,
  EchoServer,
  element,
  flowLog,
  hasElement,
  http,
  kernelDrops,
  learnedKeys,
  learnedSnapshot,
  metrics,
  pings,
  skip,
  sum,
  tcpConnects,
  tcpGreeting,
  udpReply,
  uniqueLabName,
  upLab,
  waitFor,
  waitForFlow,
  withoutSniProxy,
} from './helpers.ts';

const NAME = uniqueLabName('basic');
const PAY = 'payments-api';
const CI = 'ci-runner';
const WEB = 'web';
const UNM = 'unmanaged';
const FAMILIES = [4, 6] as const;
/** The metadata address: nothing in the lab serves it until the L3-08 test adds a listener. */
const METADATA = '169.254.169.254';
const METADATA_PORT = 80;

describe('end to end: the example policies in the lab', { skip, concurrency: false }, () => {
  let plan: LabPlan;
  const cleanup: Array<{ stop?: () => void; close?: () => void }> = [];
  const src = (pod: string, f: 4 | 6) => (f === 4 ? findPod(plan, pod).ipv4 : findPod(plan, pod).ipv6);
  const ip = (name: string, f: 4 | 6, i = 0) => {
    const s = siteFor(plan, name);
    assert.ok(s, name);
    const a = f === 4 ? s.ipv4[i] : s.ipv6[i];
    assert.ok(a, `${name} IPv${f}`);
    return a;
  };
  const qtype = (f: 4 | 6) => (f === 4 ? 'A' : 'AAAA');

  before(async () => {
    plan = await upLab(NAME, { config: withoutSniProxy });
  });
  after(async () => {
    closeAll(cleanup);
    await downLab(NAME);
  });

  it('an allowed name works over HTTPS, on IPv4 and IPv6, and its addresses are learned for that pod', async () => {
    for (const f of FAMILIES) {
      const r = await http(plan, PAY, 'api.stripe.com', { family: f });
      assertServed(r, 'api.stripe.com', `payments-api -> https://api.stripe.com (IPv${f})`);
      assert.equal(r.remoteIp, ip('api.stripe.com', f));
      assert.ok(
        await hasElement(plan, src(PAY, f), ip('api.stripe.com', f), 443),
        `allow${f} holds payments-api . api.stripe.com . tcp . 443`,
      );
      const line = await waitForFlow(plan, {
        src: src(PAY, 4),
        qname: 'api.stripe.com',
        qtype: qtype(f),
        verdict: 'allow',
        rcode: 'NOERROR',
      });
      assert.deepEqual(line['ips'], [ip('api.stripe.com', f)]);
      assert.equal(line['policy'], 'payments/stripe-only');
    }
  });

  it('a denied name gets REFUSED with the Extended DNS Error "Blocked", and nothing is learned (DNS-07)', async () => {
    const before = await learnedSnapshot(plan);
    const logged = flowLog(plan).length;
    for (const f of FAMILIES) {
      const d = await dig(plan, PAY, 'evil.example.com', qtype(f));
      assert.equal(d.status, 'REFUSED', d.raw);
      assert.deepEqual(d.addresses, []);
      assert.match(d.ede ?? '', /^15 \(Blocked\)/, `EDE in dig output: ${d.raw}`);
      await waitForFlow(
        plan,
        {
          src: src(PAY, 4),
          qname: 'evil.example.com',
          qtype: qtype(f),
          verdict: 'deny',
          rcode: 'REFUSED',
          ips: [],
        },
        logged,
      );
      // The client gives up on the name: nothing to connect to.
      const r = await http(plan, PAY, 'evil.example.com', { family: f });
      assert.equal(r.code, 6, `curl cannot resolve a denied name (exit ${r.code}: ${r.stderr})`);
    }
    assert.deepEqual(await learnedSnapshot(plan), before, 'no learned set changed');
  });

  it('a connection straight to an address that was not learned is dropped (IPv4 and IPv6)', async () => {
    await Promise.all(
      FAMILIES.map(async (f) => {
        const target = ip('github.com', f);
        const dropsBefore = await kernelDrops(plan, src(PAY, f));
        const [pay, unm] = await Promise.all([
          http(plan, PAY, 'github.com', { family: f, via: target, ...DROP }),
          http(plan, UNM, 'github.com', { family: f, via: target }),
        ]);
        assertDropped(pay, `payments-api -> ${target}:443 (never learned)`);
        assertServed(unm, 'github.com', `unmanaged -> ${target}:443 (control)`);
        assert.ok(
          (await kernelDrops(plan, src(PAY, f))) > dropsBefore,
          `drops${f} counted payments-api's SYNs`,
        );
      }),
    );
  });

  it('an allowed name on a port the rule does not list is dropped (L3-02)', async () => {
    await Promise.all(
      FAMILIES.map(async (f) => {
        const target = ip('api.stripe.com', f);
        const d = await dig(plan, PAY, 'api.stripe.com', qtype(f));
        assert.deepEqual(d.addresses, [target]);
        const keys = await learnedKeys(plan, f);
        assert.ok(keys.has(element(src(PAY, f), target, 443)), 'port 443 learned');
        assert.ok(!keys.has(element(src(PAY, f), target, 80)), 'port 80 not learned');
        const [plain, other, ssh] = await Promise.all([
          http(plan, PAY, 'api.stripe.com', { family: f, scheme: 'http', ...DROP }),
          tcpConnects(plan, PAY, target, 8443),
          tcpConnects(plan, PAY, target, 22),
        ]);
        assertDropped(plain, `payments-api -> http://api.stripe.com (port 80, IPv${f})`);
        assert.equal(other, false, `TCP ${target}:8443 dropped`);
        assert.equal(ssh, false, `TCP ${target}:22 dropped`);
        // Control: port 80 is served (the unmanaged pod gets it), so the drop is the datapath's.
        assertServed(
          await http(plan, UNM, 'api.stripe.com', { family: f, scheme: 'http', via: target }),
          'api.stripe.com',
          'unmanaged -> http://api.stripe.com (control)',
        );
        // And 443 still works for the pod.
        assertServed(
          await http(plan, PAY, 'api.stripe.com', { family: f }),
          'api.stripe.com',
          'payments-api 443',
        );
      }),
    );
  });

  it('per-source learning: a pod cannot use an address another pod learned (the element exists, but not for it)', async () => {
    for (const f of FAMILIES) {
      const stripe = ip('api.stripe.com', f);
      const github = ip('github.com', f);
      // Same name, two pods, two policies: different answers.
      const [a, b] = await Promise.all([
        dig(plan, PAY, 'api.stripe.com', qtype(f)),
        dig(plan, CI, 'api.stripe.com', qtype(f)),
      ]);
      assert.equal(a.status, 'NOERROR');
      assert.deepEqual(a.addresses, [stripe]);
      assert.equal(b.status, 'REFUSED', b.raw);
      // ci-runner learns github.com for itself.
      const g = await dig(plan, CI, 'github.com', qtype(f));
      assert.deepEqual(g.addresses, [github]);
      const keys = await learnedKeys(plan, f);
      assert.ok(keys.has(element(src(PAY, f), stripe, 443)), "payments-api's element exists");
      assert.ok(keys.has(element(src(CI, f), github, 443)), "ci-runner's element exists");
      assert.ok(!keys.has(element(src(CI, f), stripe, 443)), 'nothing learned for ci-runner to stripe');
      const [ciToStripe, payToGithub, ciToGithub] = await Promise.all([
        http(plan, CI, 'api.stripe.com', { family: f, via: stripe, ...DROP }),
        http(plan, PAY, 'github.com', { family: f, via: github, ...DROP }),
        http(plan, CI, 'github.com', { family: f }),
      ]);
      assertDropped(ciToStripe, `ci-runner -> api.stripe.com at ${stripe} (learned by payments-api only)`);
      assertDropped(payToGithub, `payments-api -> github.com at ${github} (learned by ci-runner only)`);
      assertServed(ciToGithub, 'github.com', 'ci-runner -> github.com');
    }
  });

  it('Audit mode drops nothing; would-be denials are logged (verdict audit) and counted', async () => {
    const m0 = await metrics(plan);
    const logged = flowLog(plan).length;
    const dropsBefore = { 4: await kernelDrops(plan, src(WEB, 4)), 6: await kernelDrops(plan, src(WEB, 6)) };
    for (const f of FAMILIES) {
      // A name the audit policy does not allow: answered, logged as audit, and the connection
      // (to an address learned by nobody) passes.
      const r = await http(plan, WEB, 'evil.example.com', { family: f });
      assertServed(r, 'evil.example.com', `web -> https://evil.example.com (IPv${f})`);
      await waitForFlow(
        plan,
        { src: src(WEB, 4), qname: 'evil.example.com', qtype: qtype(f), verdict: 'audit', rcode: 'NOERROR' },
        logged,
      );
      // What an Enforce source loses, an Audit source keeps: another port, QUIC, DoT, ICMP.
      const [port, quic, dot, icmp] = await Promise.all([
        tcpConnects(plan, WEB, ip('example.org', f), 443, 5),
        udpReply(plan, WEB, ip('evil.example.com', f), plan.quicPort),
        tcpGreeting(plan, WEB, f === 4 ? plan.otherResolver.ipv4 : plan.otherResolver.ipv6, plan.dotPort),
        pings(plan, WEB, ip('example.org', f)),
      ]);
      assert.equal(port, true, 'TCP to an unlearned address passes');
      assert.match(quic, /^quic-like reply from /, 'QUIC passes');
      assert.match(dot, /^dot-like listener at /, 'TCP 853 passes');
      assert.equal(icmp, true, 'ICMP echo passes');
      // The allowed name is learned as usual.
      assertServed(await http(plan, WEB, 'pypi.org', { family: f }), 'pypi.org', 'web -> pypi.org');
      assert.ok(await hasElement(plan, src(WEB, f), ip('pypi.org', f), 443));
    }
    // Counted in the kernel per source...
    for (const f of FAMILIES) {
      assert.ok(
        (await kernelDrops(plan, src(WEB, f))) > dropsBefore[f],
        `web's IPv${f} would-be drops counted in drops${f}`,
      );
    }
    // ... and exported: DNS verdicts and the per-source drop counter (cached up to 5 s).
    const m1 = await waitFor(
      'the audit drop counter metric to grow',
      async () => {
        const m = await metrics(plan);
        return droppedMetric(m, src(WEB, 4), 'Audit') > droppedMetric(m0, src(WEB, 4), 'Audit') &&
          droppedMetric(m, src(WEB, 6), 'Audit') > droppedMetric(m0, src(WEB, 6), 'Audit')
          ? m
          : null;
      },
      { timeoutMs: 12_000, intervalMs: 1_000 },
    );
    const audits = (m: typeof m0) => sum(m, 'namegate_dns_queries_total', { verdict: 'audit' });
    assert.ok(audits(m1) >= audits(m0) + 2, 'namegate_dns_queries_total{verdict="audit"} counted A and AAAA');
    assert.equal(droppedMetric(m1, src(WEB, 4), 'Enforce'), 0, 'web is not counted as Enforce');
  });

  it('QUIC (UDP 443) to a learned address is dropped (L3-01)', async () => {
    await Promise.all(
      FAMILIES.map(async (f) => {
        const target = ip('api.stripe.com', f);
        await dig(plan, PAY, 'api.stripe.com', qtype(f));
        assert.ok(await hasElement(plan, src(PAY, f), target, 443), 'TCP 443 learned');
        const [pay, unm] = await Promise.all([
          udpReply(plan, PAY, target, plan.quicPort),
          udpReply(plan, UNM, target, plan.quicPort),
        ]);
        assert.equal(pay, '', `payments-api: no UDP reply from ${target}:443`);
        assert.equal(unm, `quic-like reply from ${target}`, 'unmanaged gets the reply (control)');
      }),
    );
  });

  it('DNS to another resolver (UDP and TCP 53) is answered by namegate, not by that resolver (DNS-01)', async () => {
    const other = { 4: plan.otherResolver.ipv4, 6: plan.otherResolver.ipv6 };
    const fake = { 4: plan.otherResolverAnswer.ipv4, 6: plan.otherResolverAnswer.ipv6 };
    for (const f of FAMILIES) {
      for (const tcp of [false, true]) {
        const how = `@${other[f]} over ${tcp ? 'TCP' : 'UDP'}`;
        const logged = flowLog(plan).length;
        const allowed = await dig(plan, PAY, 'api.stripe.com', qtype(f), { server: other[f], tcp });
        assert.equal(allowed.status, 'NOERROR', `${how}: ${allowed.raw}`);
        assert.deepEqual(
          allowed.addresses,
          [ip('api.stripe.com', f)],
          `${how}: the real answer, not ${fake[f]}`,
        );
        await waitForFlow(
          plan,
          {
            src: src(PAY, f),
            qname: 'api.stripe.com',
            qtype: qtype(f),
            verdict: 'allow',
            transport: tcp ? 'tcp' : 'udp',
          },
          logged,
        );
        const denied = await dig(plan, PAY, 'evil.example.com', qtype(f), { server: other[f], tcp });
        assert.equal(denied.status, 'REFUSED', `${how}: ${denied.raw}`);
        assert.match(denied.ede ?? '', /^15 \(Blocked\)/);
        // Control: the unmanaged pod reaches the other resolver, which answers its fake address.
        const control = await dig(plan, UNM, 'api.stripe.com', qtype(f), { server: other[f], tcp });
        assert.deepEqual(control.addresses, [fake[f]], `${how} from unmanaged (control)`);
      }
    }
  });

  it('TCP 853 (DNS over TLS) is dropped (DNS-05)', async () => {
    await Promise.all(
      FAMILIES.map(async (f) => {
        const other = f === 4 ? plan.otherResolver.ipv4 : plan.otherResolver.ipv6;
        const [pay, unm] = await Promise.all([
          tcpGreeting(plan, PAY, other, plan.dotPort),
          tcpGreeting(plan, UNM, other, plan.dotPort),
        ]);
        assert.equal(pay, '', `payments-api: nothing from ${other}:853`);
        assert.match(unm, /^dot-like listener at /, 'unmanaged is greeted (control)');
      }),
    );
  });

  it('ICMP echo to an address nobody learned is dropped (L3-04)', async () => {
    await Promise.all(
      FAMILIES.map(async (f) => {
        const target = ip('example.org', f);
        const [pay, unm] = await Promise.all([pings(plan, PAY, target), pings(plan, UNM, target)]);
        assert.equal(pay, false, `payments-api: no echo reply from ${target}`);
        assert.equal(unm, true, 'unmanaged gets the reply (control)');
      }),
    );
  });

  it('direct TCP to the metadata address 169.254.169.254 is dropped (L3-08)', async () => {
    // The lab has no metadata service: give the internet namespace the address and a listener,
    // so that the control pod proves the address is reachable at all.
    const add = await run(['ip', '-n', plan.inetNetns, 'addr', 'add', `${METADATA}/32`, 'dev', 'lo']);
    assert.equal(add.code, 0, add.stderr);
    cleanup.push(await EchoServer.start(plan, METADATA_PORT, METADATA));
    const dropsBefore = await kernelDrops(plan, src(PAY, 4));
    const [pay, unm] = await Promise.all([
      tcpConnects(plan, PAY, METADATA, METADATA_PORT),
      tcpConnects(plan, UNM, METADATA, METADATA_PORT, 5),
    ]);
    assert.equal(pay, false, 'payments-api: TCP to 169.254.169.254:80 dropped');
    assert.equal(unm, true, 'unmanaged connects (control)');
    assert.ok((await kernelDrops(plan, src(PAY, 4))) > dropsBefore, 'counted as a drop');
  });
});
