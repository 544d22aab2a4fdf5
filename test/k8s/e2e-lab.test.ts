/**
 * End to end with the lab (root): a real etcd + kube-apiserver, the lab's namespaces, and the
 * real agent (`namegate agent`, nftables) in the lab's node namespace, with identities and
 * policies from the API under the chart's agent RBAC (a TokenRequest token of its
 * ServiceAccount), and `namegate controller` under the chart's controller RBAC.
 *
 * The agent reaches the API server (loopback of the root namespace) through two relays joined by
 * a Unix socket (test/k8s/lab-cluster.ts, startApiBridge): it dials https://127.0.0.1:6443 in the
 * node namespace; no route or firewall rule changes anywhere.
 *
 * Pods are created through the API on the agent's node with the lab pods' namespaces, labels and
 * addresses (pods/status). Then, through the API only:
 * - an EgressPolicy governs a lab pod's real traffic (HTTPS works for the allowed name, a denied
 *   name gets REFUSED, a raw IP is dropped);
 * - a change takes effect (the time from the API write is measured and reported, never asserted:
 *   a loaded machine is slow, and how fast is bench/'s business);
 * - relabelling a pod out of a policy removes its learned elements and ends its access;
 * - deleting a pod removes its elements before its IP is handed to another pod;
 * - an invalid policy gets Accepted=False from the controller and disturbs nothing;
 * - a CiliumNetworkPolicy with toFQDNs is enforced the same way;
 * - an API server crash and restart: enforcement never lapses, the agent relists, and a change
 *   made after the restart takes effect.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync } from 'node:fs';
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, type TestContext, test } from 'node:test';
import type { KubeApi, KubeObject } from '../../src/k8s/api.ts';
import { PODS } from '../../src/k8s/identity.ts';
import type { PolicyStatus } from '../../src/k8s/status.ts';
import { labExec } from '../../src/lab/exec.ts';
import { labDown, labUp } from '../../src/lab/lab.ts';
import { helloBody } from '../../src/lab/nginx-config.ts';
import { type LabPlan, labPlan, statePaths } from '../../src/lab/plan.ts';
import type { Daemon } from '../../src/lab/processes.ts';
import { kernelDrops } from '../integration/e2e/helpers.ts';
import { LAB_COMMANDS, skipUnless } from '../support/requirements.ts';
import { ensureNamespace, eventually, TestApiServer } from './apiserver.ts';
import { apply, createPod, installCrds, labelPod, readYamlDocs, remove } from './helpers.ts';
import {
  type ApiBridge,
  agentKubeconfig,
  agentLog,
  agentMetric,
  agentRevocations,
  chartRbac,
  curlFrom,
  dnsAnswer,
  type KernelElement,
  k8sDir,
  kernelState,
  kubeAgentConfig,
  msUntil,
  PodConnection,
  RELEASE_NAMESPACE,
  startApiBridge,
  startKubeAgent,
  stopDaemon,
} from './lab-cluster.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const CLI = path.join(ROOT, 'src/cli/main.ts');
const CILIUM_CRDS = path.join(ROOT, 'test/testdata/k8s/cilium-crds.yaml');

const skip = skipUnless({ tools: [...LAB_COMMANDS, 'nft'] });

const LAB = `ke${(process.pid % 46656).toString(36)}`;
/** The lab's pod network (pods 10.10.n.2, fd00:10:n::2): the cluster CIDRs of this cluster. */
const CLUSTER_CIDRS = ['10.10.0.0/16', 'fd00:10::/32'];
const NODE_NAME = 'lab-node-1';

function egressPolicy(
  namespace: string,
  name: string,
  matchLabels: Record<string, string>,
  names: readonly string[],
  extra: { patterns?: readonly string[] } = {},
): KubeObject {
  return {
    apiVersion: 'namegate.dev/v1alpha1',
    kind: 'EgressPolicy',
    metadata: { name, namespace },
    spec: {
      podSelector: { matchLabels },
      egress: [
        {
          toFQDNs: [
            ...names.map((n) => ({ name: n })),
            ...(extra.patterns ?? []).map((pattern) => ({ pattern })),
          ],
          ports: [{ port: 443 }],
        },
      ],
    },
  };
}

const paymentsPolicy = (names: readonly string[]) =>
  egressPolicy('payments', 'payments-egress', { app: 'payments-api' }, names);

function hasElement(
  learned: readonly KernelElement[],
  source: string,
  destination: string,
  port = 443,
): boolean {
  return learned.some(
    (e) => e.source === source && e.destination === destination && e.protocol === 'tcp' && e.port === port,
  );
}

async function statusOf(api: KubeApi, namespace: string, name: string): Promise<PolicyStatus | undefined> {
  const obj = await api.get<{ status?: PolicyStatus }>(
    `/apis/namegate.dev/v1alpha1/namespaces/${namespace}/egresspolicies/${name}`,
  );
  return obj.status;
}

function accepted(s: PolicyStatus | undefined) {
  return s?.conditions?.find((c) => c.type === 'Accepted');
}

describe('kubernetes end to end with the lab', { skip, concurrency: false, timeout: 300_000 }, () => {
  const plan: LabPlan = labPlan(LAB);
  const pod = (id: string) => {
    const p = plan.pods.find((x) => x.id === id);
    if (!p) throw new Error(`no lab pod ${id}`);
    return p;
  };
  const cleanups: Array<() => Promise<void>> = [];
  let server: TestApiServer;
  let admin: KubeApi;
  let bridge: ApiBridge;
  let agent: Daemon;
  let controller: ChildProcess | null = null;

  /** Run a test body; on failure, append the end of the agent's log to the error. */
  const withLogs =
    (fn: (t: TestContext) => Promise<void>) =>
    async (t: TestContext): Promise<void> => {
      try {
        await fn(t);
      } catch (err) {
        const tail = await agentLog(plan).catch(() => '(no agent log)');
        if (err instanceof Error) err.message += `\n--- end of the agent log ---\n${tail}`;
        throw err;
      }
    };

  before(async () => {
    server = await TestApiServer.start();
    cleanups.push(() => server.stop());
    admin = server.adminApi();
    await installCrds(admin);
    await installCrds(admin, readYamlDocs(CILIUM_CRDS));
    await ensureNamespace(admin, RELEASE_NAMESPACE);
    // The chart's identities and RBAC (the Cilium dialect on: the agent reads it too).
    for (const obj of chartRbac(['dialects.cilium=true'])) await apply(admin, obj);

    // The lab's pods, through the API, on the agent's node, with the lab's addresses.
    for (const p of plan.pods) {
      await ensureNamespace(admin, p.namespace, { ...p.namespaceLabels });
      await createPod(admin, {
        namespace: p.namespace,
        name: p.id,
        node: NODE_NAME,
        labels: { ...p.labels },
        ips: [p.ipv4, p.ipv6],
      });
    }
    // A pod of another node with the same labels: the agent must not take it as its own.
    await createPod(admin, {
      namespace: 'payments',
      name: 'payments-api-elsewhere',
      node: 'other-node',
      labels: { app: 'payments-api' },
      ips: ['10.99.0.9'],
    });

    cleanups.push(async () => {
      await labDown({ name: LAB });
    });
    await labUp({ name: LAB });

    const agentSa = await server.serviceAccountConfig(RELEASE_NAMESPACE, 'namegate-agent');
    const kubeconfig = agentKubeconfig(plan, server, agentSa.path);
    bridge = await startApiBridge(plan, server);
    cleanups.push(() => bridge.stop());

    const controllerSa = await server.serviceAccountConfig(RELEASE_NAMESPACE, 'namegate-controller');
    const logFd = openSync(path.join(k8sDir(plan), 'controller.log'), 'a');
    try {
      const child = spawn(
        process.execPath,
        [
          CLI,
          'controller',
          '--kubeconfig',
          controllerSa.path,
          '--lease-namespace',
          RELEASE_NAMESPACE,
          '--identity',
          'e2e-controller',
          '--listen',
          '127.0.0.1:0',
        ],
        { stdio: ['ignore', logFd, logFd] },
      );
      controller = child;
      cleanups.push(async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      });
    } finally {
      closeSync(logFd);
    }

    const config = kubeAgentConfig(plan, { kubeconfig, nodeName: NODE_NAME, dialects: { cilium: true } });
    // As the chart does with clusterCIDRs: the lab's pod network is cluster-internal.
    const datapath = { ...(config['datapath'] as object), internalCIDRs: CLUSTER_CIDRS };
    agent = await startKubeAgent(plan, { ...config, datapath });
    cleanups.push(() => stopDaemon(agent));
  });

  after(async () => {
    const errors: unknown[] = [];
    // NAMEGATE_E2E_LOGS=DIR keeps the agent's, the controller's and the flow log (the lab's state
    // dir goes with the lab).
    const keep = process.env['NAMEGATE_E2E_LOGS'];
    if (keep) {
      await mkdir(keep, { recursive: true });
      const logs = statePaths(plan).logs;
      for (const [from, to] of [
        [path.join(logs, 'agent.log'), 'agent.log'],
        [path.join(logs, 'flow.log'), 'flow.log'],
        [path.join(plan.stateDir, 'k8s', 'controller.log'), 'controller.log'],
      ] as const) {
        await copyFile(from, path.join(keep, to)).catch(() => {});
      }
    }
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch (err) {
        errors.push(err);
      }
    }
    // Whatever happened above, no namespace of this lab survives the file.
    await labDown({ name: LAB }).catch((err: unknown) => errors.push(err));
    if (errors.length > 0) throw new AggregateError(errors, 'cleanup failed');
  });

  test(
    'an EgressPolicy applied through the API governs a lab pod',
    withLogs(async (t) => {
      const pay = pod('payments-api');
      const start = performance.now();
      await apply(admin, paymentsPolicy(['api.stripe.com']));
      const ms = await msUntil(
        start,
        'payments-api governed',
        async () => (await dnsAnswer(plan, pay.id, 'evil.example.com')).status === 'REFUSED',
      );
      t.diagnostic(`policy applied -> denied name REFUSED: ${ms.toFixed(0)} ms`);
      // DNS follows the new set at once; the kernel follows at the enforcer's sync right after
      // (docs/kubernetes.md). The drop checks below need the pod in the Enforce sets: wait for
      // that event, not for DNS (on a loaded machine the raw-IP probe came first).
      const governed = await msUntil(start, 'payments-api governed in the kernel', async () => {
        const k = await kernelState(plan);
        return k.enforce.has(pay.ipv4) && k.enforce.has(pay.ipv6);
      });
      t.diagnostic(`policy applied -> pod in the Enforce sets: ${governed.toFixed(0)} ms`);

      const stripe = await dnsAnswer(plan, pay.id, 'api.stripe.com');
      assert.equal(stripe.status, 'NOERROR');
      assert.deepEqual(stripe.answers, ['203.0.113.10']);
      for (const family of [4, 6] as const) {
        const r = await curlFrom(plan, pay.id, 'api.stripe.com', { family });
        assert.equal(r.code, 0, `HTTPS to api.stripe.com over IPv${family}: ${r.stderr}`);
        assert.equal(r.stdout.trim(), helloBody('api.stripe.com'));
      }
      // A raw IP nobody resolved: dropped (a connect timeout, not a refusal).
      const raw = await curlFrom(plan, pay.id, 'evil.example.com', { ip: '203.0.113.66' });
      assert.equal(raw.code, 28, `raw IP must be dropped: code ${raw.code} ${raw.stderr}`);

      const k = await kernelState(plan);
      assert.ok(k.enforce.has(pay.ipv4) && k.enforce.has(pay.ipv6), 'both addresses governed (Enforce)');
      assert.ok(hasElement(k.learned, pay.ipv4, '203.0.113.10'), 'IPv4 element learned');
      assert.ok(hasElement(k.learned, pay.ipv6, '2001:db8:113::10'), 'IPv6 element learned');
      assert.ok(!k.enforce.has('10.99.0.9'), 'a pod of another node is not governed here');

      // Another pod (the cluster CIDRs) is reached without any policy or lookup, both families;
      // the internet only as learned (api.stripe.com's address was learned for TCP 443 only).
      const other = pod('unmanaged');
      for (const ip of [other.ipv4, other.ipv6]) {
        const r = await labExec(plan, pay.id, ['ping', '-n', '-c', '1', '-W', '2', ip], { timeoutMs: 8_000 });
        assert.equal(r.code, 0, `payments-api pings pod ${ip} (internal): ${r.stdout}${r.stderr}`);
      }
      const outside = await labExec(plan, pay.id, ['ping', '-n', '-c', '1', '-W', '1', '203.0.113.10'], {
        timeoutMs: 8_000,
      });
      assert.notEqual(outside.code, 0, 'ICMP to a learned internet address stays dropped');

      // A pod no policy selects is left alone.
      const free = await curlFrom(plan, 'unmanaged', 'evil.example.com');
      assert.equal(free.code, 0, `unmanaged pod: ${free.stderr}`);
      assert.ok(!k.enforce.has(pod('unmanaged').ipv4));
    }),
  );

  test(
    'a policy change takes effect: a name added, then removed',
    withLogs(async (t) => {
      const pay = pod('payments-api');
      const t0 = performance.now();
      await apply(admin, paymentsPolicy(['api.stripe.com', 'github.com']));
      const allowMs = await msUntil(
        t0,
        'github.com allowed',
        async () => (await dnsAnswer(plan, pay.id, 'github.com')).status === 'NOERROR',
      );
      t.diagnostic(`API write (name added) -> DNS answer: ${allowMs.toFixed(0)} ms`);
      const gh = await curlFrom(plan, pay.id, 'github.com');
      assert.equal(gh.code, 0, gh.stderr);
      assert.ok(hasElement((await kernelState(plan)).learned, pay.ipv4, '203.0.113.20'));

      const t1 = performance.now();
      await apply(admin, paymentsPolicy(['api.stripe.com']));
      const [deniedMs, kernelMs] = await Promise.all([
        msUntil(
          t1,
          'github.com denied',
          async () => (await dnsAnswer(plan, pay.id, 'github.com')).status === 'REFUSED',
        ),
        msUntil(
          t1,
          'github.com elements gone',
          async () => !hasElement((await kernelState(plan)).learned, pay.ipv4, '203.0.113.20'),
        ),
      ]);
      t.diagnostic(`API write (name removed) -> REFUSED: ${deniedMs.toFixed(0)} ms`);
      t.diagnostic(`API write (name removed) -> element gone from the nft set: ${kernelMs.toFixed(0)} ms`);
      const after = await curlFrom(plan, pay.id, 'github.com', { ip: '203.0.113.20' });
      assert.equal(after.code, 28, `github.com by its old address must be dropped: ${after.stderr}`);
      assert.equal((await curlFrom(plan, pay.id, 'api.stripe.com')).code, 0, 'the other name still works');
    }),
  );

  test(
    'relabelling a pod out of the policy ends its access (K8S-02)',
    withLogs(async (t) => {
      const ci = pod('ci-runner');
      await apply(admin, egressPolicy('ci', 'ci-runners', { role: 'runner' }, ['github.com']));
      // Every pod of the namespace stays governed after the relabel: only the runner rule goes.
      await apply(admin, egressPolicy('ci', 'ci-baseline', {}, ['registry.npmjs.org']));
      await msUntil(
        performance.now(),
        'ci policies in force',
        async () => (await dnsAnswer(plan, ci.id, 'github.com')).status === 'NOERROR',
      );
      for (const family of [4, 6] as const) {
        const r = await curlFrom(plan, ci.id, 'github.com', { family });
        assert.equal(r.code, 0, `github.com over IPv${family}: ${r.stderr}`);
      }
      const before = await kernelState(plan);
      assert.ok(hasElement(before.learned, ci.ipv4, '203.0.113.20'));
      assert.ok(hasElement(before.learned, ci.ipv6, '2001:db8:113::20'));
      // An established connection, to show that it ends too (its flow is deleted with the element).
      const held = PodConnection.open(plan, ci.id, 'github.com', '203.0.113.20');
      t.after(() => held.close());
      assert.ok(await held.request(30_000), 'a request on the held connection before the relabel');
      assert.ok(await held.request(30_000), 'the connection is kept alive');

      // Done is what the agent reports once elements and flows are both gone (`revoked`, logged
      // after conntrack), not the moment the elements leave the set: the flow ends just after.
      const revokedBefore = await agentRevocations(plan, ci.ipv4);
      const t0 = performance.now();
      await labelPod(admin, 'ci', ci.id, { role: 'builder' });
      const goneMs = await msUntil(
        t0,
        'runner revocation done',
        async () => (await agentRevocations(plan, ci.ipv4)) > revokedBefore,
      );
      const revoked = await kernelState(plan);
      assert.ok(!hasElement(revoked.learned, ci.ipv4, '203.0.113.20'), 'the IPv4 element is gone');
      assert.ok(!hasElement(revoked.learned, ci.ipv6, '2001:db8:113::20'), 'the IPv6 element is gone');
      t.diagnostic(`relabel -> revocation done (elements and flows gone): ${goneMs.toFixed(0)} ms`);

      // A request on the held connection is dropped at the node: its segment shows in the pod's
      // kernel drop counter (the event), and a request that never reached the server has no
      // answer, now or later. No wait for a silence.
      const drops = await kernelDrops(plan, ci.ipv4);
      const answered = held.send();
      await msUntil(performance.now(), 'the held request dropped at the node', async () => {
        if (answered() || held.closed) return true;
        return (await kernelDrops(plan, ci.ipv4)) > drops;
      });
      assert.equal(answered(), false, 'the established connection carries nothing after the relabel');
      assert.equal(held.closed, false, 'nothing of the server reached the pod either (no close)');
      assert.equal((await dnsAnswer(plan, ci.id, 'github.com')).status, 'REFUSED');
      for (const ip of ['203.0.113.20', '2001:db8:113::20']) {
        const r = await curlFrom(plan, ci.id, 'github.com', { ip });
        assert.equal(r.code, 28, `github.com at ${ip} after the relabel must be dropped: ${r.stderr}`);
      }
      const k = await kernelState(plan);
      assert.ok(k.enforce.has(ci.ipv4), 'still governed by the baseline policy');
      assert.equal(
        (await curlFrom(plan, ci.id, 'registry.npmjs.org')).code,
        0,
        'the baseline still allows npm',
      );
    }),
  );

  test(
    'deleting a pod removes its elements before its IP is reused',
    withLogs(async (t) => {
      const ci = pod('ci-runner');
      assert.equal((await curlFrom(plan, ci.id, 'registry.npmjs.org')).code, 0);
      const mine = (e: KernelElement) => e.source === ci.ipv4 || e.source === ci.ipv6;
      assert.ok((await kernelState(plan)).learned.some(mine), 'the pod has learned elements');
      const identities = await agentMetric(plan, 'namegate_k8s_identities');

      const t0 = performance.now();
      await remove(admin, PODS, 'ci', ci.id);
      const goneMs = await msUntil(t0, 'deleted pod forgotten by the kernel', async () => {
        const k = await kernelState(plan);
        return !k.learned.some(mine) && !k.enforce.has(ci.ipv4) && !k.enforce.has(ci.ipv6);
      });
      t.diagnostic(
        `pod delete -> its elements and addresses gone from the nft sets: ${goneMs.toFixed(0)} ms`,
      );
      await eventually('identities down by two', async () =>
        (await agentMetric(plan, 'namegate_k8s_identities')) === identities - 2 ? true : undefined,
      );

      // While no pod holds them, the addresses are unknown inside the pod CIDRs: they get nothing,
      // as a pod created while the watch is down would (K8S-04): DNS held for an identity that
      // does not come (dns.unknownHoldMs), then refused; traffic dropped.
      assert.equal((await dnsAnswer(plan, ci.id, 'github.com', 'A', 6)).status, 'REFUSED');
      const evil = plan.sites.find((x) => x.names.includes('evil.example.com'))?.ipv4[0];
      assert.ok(evil);
      assert.equal(
        (await curlFrom(plan, ci.id, 'evil.example.com', { ip: evil })).code,
        28,
        'unknown: dropped',
      );

      // The addresses go to a pod no policy selects: it inherits nothing and is left alone.
      await createPod(admin, {
        namespace: 'sandbox',
        name: 'reuser',
        node: NODE_NAME,
        labels: { app: 'reuser' },
        ips: [ci.ipv4, ci.ipv6],
      });
      await eventually('identities back', async () =>
        (await agentMetric(plan, 'namegate_k8s_identities')) === identities ? true : undefined,
      );
      assert.equal((await dnsAnswer(plan, ci.id, 'github.com')).status, 'NOERROR');
      assert.equal((await curlFrom(plan, ci.id, 'evil.example.com')).code, 0, 'ungoverned: left alone');
      const k = await kernelState(plan);
      assert.ok(!k.learned.some(mine), 'nothing is learned for an ungoverned pod');
      assert.ok(!k.enforce.has(ci.ipv4));
    }),
  );

  test(
    'an invalid policy gets Accepted=False and the others keep working',
    withLogs(async (t) => {
      const pay = pod('payments-api');
      await apply(
        admin,
        egressPolicy('payments', 'too-broad', { app: 'payments-api' }, [], { patterns: ['*.com'] }),
      );
      const bad = await eventually(
        'Accepted=False on the invalid policy',
        async () => {
          const c = accepted(await statusOf(admin, 'payments', 'too-broad'));
          return c?.status === 'False' ? c : undefined;
        },
        20_000,
      );
      assert.match(bad.message, /spec\.egress\[0\]\.toFQDNs\[0\]\.pattern/);
      t.diagnostic(`controller: ${bad.reason}: ${bad.message.split('\n')[0]}`);
      const good = await eventually('Accepted=True on the valid policy', async () => {
        const c = accepted(await statusOf(admin, 'payments', 'payments-egress'));
        return c?.status === 'True' ? c : undefined;
      });
      assert.equal(good.status, 'True');

      // Had it been taken, *.com would allow example.com: it must not.
      assert.equal((await dnsAnswer(plan, pay.id, 'example.com')).status, 'REFUSED');
      assert.equal((await curlFrom(plan, pay.id, 'api.stripe.com')).code, 0);
      // The valid policies still follow changes while the invalid one is there.
      const t0 = performance.now();
      await apply(admin, paymentsPolicy(['api.stripe.com', 'pypi.org']));
      const ms = await msUntil(
        t0,
        'pypi.org allowed',
        async () => (await dnsAnswer(plan, pay.id, 'pypi.org')).status === 'NOERROR',
      );
      t.diagnostic(`a change beside an invalid policy -> in force: ${ms.toFixed(0)} ms`);
      await apply(admin, paymentsPolicy(['api.stripe.com']));
      await remove(
        admin,
        {
          group: 'namegate.dev',
          version: 'v1alpha1',
          plural: 'egresspolicies',
          kind: 'EgressPolicy',
          namespaced: true,
        },
        'payments',
        'too-broad',
      );
      await msUntil(
        performance.now(),
        'pypi.org denied again',
        async () => (await dnsAnswer(plan, pay.id, 'pypi.org')).status === 'REFUSED',
      );
    }),
  );

  test(
    'a CiliumNetworkPolicy with toFQDNs is enforced the same way',
    withLogs(async (t) => {
      const web = pod('web');
      const t0 = performance.now();
      await apply(admin, {
        apiVersion: 'cilium.io/v2',
        kind: 'CiliumNetworkPolicy',
        metadata: { name: 'web-egress', namespace: 'web' },
        spec: {
          endpointSelector: { matchLabels: { app: 'web' } },
          egress: [
            {
              toFQDNs: [{ matchName: 'pypi.org' }, { matchPattern: '*.pythonhosted.org' }],
              toPorts: [{ ports: [{ port: '443', protocol: 'TCP' }] }],
            },
          ],
        },
      });
      const ms = await msUntil(
        t0,
        'web governed by the CNP',
        async () => (await dnsAnswer(plan, web.id, 'evil.example.com')).status === 'REFUSED',
      );
      t.diagnostic(`CiliumNetworkPolicy applied -> denied name REFUSED: ${ms.toFixed(0)} ms`);

      for (const name of ['pypi.org', 'files.pythonhosted.org']) {
        const r = await curlFrom(plan, web.id, name);
        assert.equal(r.code, 0, `${name}: ${r.stderr}`);
        assert.equal(r.stdout.trim(), helloBody(name));
      }
      const http = await curlFrom(plan, web.id, 'pypi.org', { scheme: 'http' });
      assert.equal(http.code, 28, 'port 80 is not in toPorts: dropped');
      const raw = await curlFrom(plan, web.id, 'evil.example.com', { ip: '203.0.113.66' });
      assert.equal(raw.code, 28, 'raw IP dropped');
      const k = await kernelState(plan);
      assert.ok(k.enforce.has(web.ipv4) && k.enforce.has(web.ipv6));
      assert.ok(hasElement(k.learned, web.ipv4, '203.0.113.50'));
      assert.ok(!hasElement(k.learned, web.ipv4, '203.0.113.50', 80));
    }),
  );

  test(
    'an API server restart keeps enforcement; the agent resyncs (K8S-04)',
    withLogs(async (t) => {
      const pay = pod('payments-api');
      const relists = await agentMetric(plan, 'namegate_k8s_relists_total');
      const restarts = await agentMetric(plan, 'namegate_k8s_watch_restarts_total');

      // Probe the allowed and a denied name all along, from before the crash to after the resync.
      let probing = true;
      const lapses: string[] = [];
      let probes = 0;
      const prober = (async () => {
        while (probing) {
          const [ok, denied] = await Promise.all([
            dnsAnswer(plan, pay.id, 'api.stripe.com'),
            dnsAnswer(plan, pay.id, 'evil.example.com'),
          ]);
          probes++;
          if (ok.status !== 'NOERROR') lapses.push(`api.stripe.com: ${ok.status}`);
          if (denied.status !== 'REFUSED') lapses.push(`evil.example.com: ${denied.status}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      try {
        await server.stopApiServer('SIGKILL');
        // The agent has noticed: its watches broke and it is retrying against a dead server.
        await eventually('the agent saw its watches break', async () =>
          (await agentMetric(plan, 'namegate_k8s_watch_restarts_total')) > restarts ? true : undefined,
        );
        const down = await curlFrom(plan, pay.id, 'api.stripe.com');
        assert.equal(down.code, 0, `HTTPS while the API server is down: ${down.stderr}`);
        const raw = await curlFrom(plan, pay.id, 'github.com', { ip: '203.0.113.20' });
        assert.equal(raw.code, 28, 'still dropped while the API server is down');
        assert.equal((await curlFrom(plan, 'web', 'pypi.org')).code, 0, 'the CNP too');

        await server.startApiServer();
        const t0 = performance.now();
        // The admin client's kept-alive connections died with the old server: retry the write.
        await eventually('policy write after the restart', () =>
          apply(admin, paymentsPolicy(['api.stripe.com', 'github.com'])).then(() => true),
        );
        const ms = await msUntil(
          t0,
          'a change after the restart',
          async () => (await dnsAnswer(plan, pay.id, 'github.com')).status === 'NOERROR',
          60_000,
        );
        t.diagnostic(`API server back -> first change enforced: ${ms.toFixed(0)} ms after the write`);
        assert.equal((await curlFrom(plan, pay.id, 'github.com')).code, 0);
      } finally {
        probing = false;
        await prober;
      }
      t.diagnostic(`${probes} probe rounds during the restart, ${lapses.length} lapses`);
      assert.deepEqual(lapses, [], 'enforcement never lapsed');
      assert.ok((await agentMetric(plan, 'namegate_k8s_relists_total')) > relists, 'the agent relisted');
      await eventually('agent /readyz answers 200 again', async () => {
        const r = await labExec(plan, 'node', [
          'curl',
          '-sf',
          '--max-time',
          '2',
          'http://127.0.0.1:9253/readyz',
        ]);
        return r.code === 0 ? true : undefined;
      });
      assert.equal(controller?.exitCode ?? null, null, 'the controller survived the restart');
    }),
  );
});
