/**
 * namegate on a real Kubernetes node (root): `lab up --kubernetes` runs etcd, kube-apiserver,
 * kube-controller-manager, kube-scheduler, kubelet, containerd + runc, the CNI bridge, kube-proxy
 * (nftables) and CoreDNS in the lab's node namespaces; the lab's internet (knotd, nginx) is the
 * outside world. namegate is installed with `helm install` exactly as docs/kubernetes.md says,
 * from the image `make image` builds, and governs real pods of Deployments:
 *
 * - agent DaemonSet and controller Deployment Ready, the controller holds its Lease, the agent
 *   governs pods by their pod IPs;
 * - an EgressPolicy lets a pod reach an allowed name over HTTPS, a denied name gets REFUSED, an
 *   unlearned IP is dropped, a pod no policy selects is free, cluster-internal traffic (a
 *   Service, CoreDNS, *.svc.cluster.local) keeps working;
 * - a new pod is governed before its first DNS answer; a deleted pod's address, reused by a pod
 *   of another namespace, inherits nothing; 20 replicas are all governed;
 * - deleting the agent pod keeps established connections and never answers a denied name;
 *   `helm upgrade` (Cilium dialect on: a config change) rolls the agents with no failed request
 *   for an allowed name (the two agents share their answers, so either SNI proxy accepts; open
 *   connections drain), and a CiliumNetworkPolicy is enforced; `helm uninstall` removes the
 *   nftables table; the rendered manifests install the same thing.
 *
 * One cluster for the file: the steps build on each other, in order.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, type TestContext, test } from 'node:test';
import type { KubeApi, KubeObject } from '../../src/k8s/api.ts';
import { apply, forgetDiscovery, readYamlDocs } from '../../src/lab/cluster/apply.ts';
import { podExec } from '../../src/lab/cluster/exec.ts';
import {
  applyPolicies,
  applyWorkloads,
  CHART,
  helm,
  helmInstall,
  installSets,
  RELEASE,
  RELEASE_NAMESPACE,
  waitNamegateReady,
} from '../../src/lab/cluster/install.ts';
import { adminApi, listPods, type PodInfo, waitFor, waitRolledOut } from '../../src/lab/cluster/kube.ts';
import { labCaConfigMap, namespaceObject, testClientDeployment } from '../../src/lab/cluster/manifests.ts';
import { type ClusterPlan, clusterPlan, lastReservedIpFile } from '../../src/lab/cluster/plan.ts';
import { governedMs, parseProbe, probeCommand } from '../../src/lab/cluster/probe.ts';
import { type ClusterRecord, readClusterRecord } from '../../src/lab/cluster/up.ts';
import { labExec } from '../../src/lab/exec.ts';
import { labDown, labUp } from '../../src/lab/lab.ts';
import { helloBody } from '../../src/lab/nginx-config.ts';
import { statePaths } from '../../src/lab/plan.ts';
import { logTail } from '../../src/lab/processes.ts';
import { kernelState } from '../k8s/lab-cluster.ts';
import { skipUnless } from '../support/requirements.ts';
import { curl, dig, governedAddresses, openPodConnection, runningPods, workload } from './helpers.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const LAB = `kc${(process.pid % 1296).toString(36)}`;
const FM = 'namegate-test';
const STRIPE_IP = '203.0.113.10';
const GITHUB_IP = '203.0.113.20';

const skip = skipUnless({ tools: ['containerd', 'runc', 'nsenter', 'unshare', 'nft'] });

describe('namegate on a real Kubernetes node', { skip, concurrency: false, timeout: 1_200_000 }, () => {
  let cp: ClusterPlan;
  let api: KubeApi;
  let record: ClusterRecord;
  let testClient: string;

  const withLogs =
    (fn: (t: TestContext) => Promise<void>) =>
    async (t: TestContext): Promise<void> => {
      try {
        await fn(t);
      } catch (err) {
        const logs = statePaths(cp.lab).logs;
        const tail = await logTail(path.join(logs, 'kubelet.log'), 15);
        if (err instanceof Error) err.message += `\n--- end of the kubelet log ---\n${tail}`;
        throw err;
      }
    };

  before(async () => {
    await labUp({ name: LAB, kubernetes: true, progress: (m) => process.stderr.write(`lab ${LAB}: ${m}\n`) });
    cp = clusterPlan(LAB);
    api = adminApi(cp);
    const r = readClusterRecord(cp);
    assert.ok(r, 'lab up --kubernetes wrote its record');
    record = r;
    testClient = record.images['test-client']!.ref;
  });
  after(async () => {
    await labDown({ name: LAB });
  });

  const pod = (ns: string, name: string): Promise<PodInfo> => workload(api, ns, name);
  const scaleTo = (ns: string, name: string, replicas: number) =>
    api.request('PATCH', `/apis/apps/v1/namespaces/${ns}/deployments/${name}/scale`, {
      body: { spec: { replicas } },
      contentType: 'application/merge-patch+json',
    });
  const governed = (...pods: PodInfo[]) =>
    governedAddresses(
      cp,
      pods.map((p) => p.ip!),
    );

  test(
    'helm install as the docs say: agent and controller Ready, the controller holds its Lease',
    withLogs(async (t) => {
      const start = performance.now();
      await helmInstall(cp);
      await waitNamegateReady(api);
      t.diagnostic(
        `helm install -> every agent and controller Ready: ${Math.round(performance.now() - start)} ms`,
      );
      const agents = await listPods(api, RELEASE_NAMESPACE, 'app.kubernetes.io/component=agent');
      assert.equal(agents.length, 1);
      assert.equal(agents[0]!.ip, cp.nodeIP, 'the agent is on the host network');
      const controllers = await listPods(api, RELEASE_NAMESPACE, 'app.kubernetes.io/component=controller');
      const holder = await waitFor('Lease held', 60_000, async () => {
        const lease = await api.get<{ spec?: { holderIdentity?: string } }>(
          `/apis/coordination.k8s.io/v1/namespaces/${RELEASE_NAMESPACE}/leases/namegate-controller`,
        );
        return lease.spec?.holderIdentity || undefined;
      });
      assert.ok(
        controllers.some((c) => c.name === holder),
        `${holder} is a controller pod (${controllers.map((c) => c.name).join(', ')})`,
      );
      // The image runs the controller as the image's non-root user.
      const ctrl = await api.get<{ spec: { securityContext?: { runAsUser?: number } } }>(
        `/api/v1/namespaces/${RELEASE_NAMESPACE}/pods/${controllers[0]!.name}`,
      );
      assert.equal(ctrl.spec.securityContext?.runAsUser, 65532);
    }),
  );

  test(
    'real pods governed by their pod IPs: allowed HTTPS, denied REFUSED, unlearned IP dropped, unselected pod free',
    withLogs(async () => {
      await applyWorkloads(cp, api, testClient);
      await applyPolicies(api, [path.join(ROOT, 'examples')]);
      const pay = await pod('payments', 'payments-api');
      const web = await pod('web', 'web');
      const free = await pod('sandbox', 'unmanaged');
      const ci = await pod('ci', 'ci-runner');
      await waitFor('pod IPs in the governed sets', 30_000, async () => {
        const k = await governed(pay, web, free);
        return k.enforce.has(pay.ip!) && k.audit.has(web.ip!) && !k.enforce.has(free.ip!) ? true : undefined;
      });
      const ok = await curl(cp, pay, 'https://api.stripe.com/');
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(ok.body, helloBody('api.stripe.com'));
      assert.equal((await dig(cp, pay, 'evil.example.com')).status, 'REFUSED');
      // ci-runner's rules have no SNI check: a connection to an address it never learned is dropped.
      const raw = await curl(cp, ci, `https://${STRIPE_IP}/`, { connectTimeoutS: 2 });
      assert.equal(raw.code, 28, `a direct connection to an unlearned IP is dropped (curl ${raw.code})`);
      // payments-api's port 443 goes through the SNI check: refused there.
      const viaSni = await curl(cp, pay, `https://${GITHUB_IP}/`, { connectTimeoutS: 2 });
      assert.notEqual(viaSni.code, 0, 'an unlearned IP on a verify port is refused');
      const k = await governed(free);
      assert.ok(!k.enforce.has(free.ip!) && !k.audit.has(free.ip!), 'the unmanaged pod is not governed');
      const evil = await curl(cp, free, 'https://evil.example.com/');
      assert.equal(evil.code, 0, `a pod no policy selects reaches anything: ${evil.stderr}`);
    }),
  );

  test(
    'cluster-internal traffic keeps working for governed pods: CoreDNS, *.svc.cluster.local, a Service',
    withLogs(async () => {
      const pay = await pod('payments', 'payments-api');
      const svc = await dig(cp, pay, 'kube-dns.kube-system.svc.cluster.local');
      assert.deepEqual([svc.status, svc.answers], ['NOERROR', [cp.dnsServiceIP]]);
      const api443 = await dig(cp, pay, 'kubernetes.default.svc.cluster.local');
      assert.deepEqual(api443.answers, [cp.apiServiceIP]);
      // A Service to a pod (kube-proxy's DNAT), by name: CoreDNS's metrics port.
      const m = await podExec(
        cp,
        pay,
        ['curl', '-sS', '--max-time', '5', 'http://kube-dns.kube-system.svc.cluster.local:9153/metrics'],
        {
          timeoutMs: 10_000,
        },
      );
      assert.equal(m.code, 0, m.stderr);
      assert.match(m.stdout, /coredns_build_info/);
    }),
  );

  test(
    'a new pod is governed before its first DNS answer reaches it',
    withLogs(async (t) => {
      const name = 'fresh';
      await apply(
        api,
        // The probe is Node.js (src/lab/cluster/pod-probe.ts): the namegate image has it.
        testClientDeployment(cp, record.images['namegate']!.ref, {
          name,
          namespace: 'payments',
          labels: { app: 'payments-api' },
          replicas: 3,
          command: probeCommand('api.stripe.com', 'evil.example.com'),
        }),
        { fieldManager: FM },
      );
      await waitRolledOut(api, 'Deployment', 'payments', name);
      const pods = await runningPods(api, 'payments', `namegate.dev/lab-workload=${name}`);
      const ms: number[] = [];
      const tries: string[] = [];
      for (const p of pods) {
        const result = await waitFor(`probe of ${p.name}`, 60_000, async () => {
          const log = await api.text('GET', `/api/v1/namespaces/payments/pods/${p.name}/log`);
          return log.status === 200 ? (parseProbe(log.body) ?? undefined) : undefined;
        });
        assert.equal(result.leaks, 0, `${p.name}: a denied name was answered before the pod was governed`);
        assert.equal(result.answer, STRIPE_IP, `${p.name} got its allowed answer`);
        ms.push(governedMs(result));
        // 1 try: the agent held the first query until it knew the pod (dns.unknownHoldMs).
        tries.push(`${result.tries} (${result.last})`);
      }
      t.diagnostic(
        `container start -> first allowed answer: ${ms.join(', ')} ms; tries: ${tries.join(', ')}`,
      );
      await api.request('DELETE', `/apis/apps/v1/namespaces/payments/deployments/${name}`);
    }),
  );

  test(
    "a deleted pod's address reused by a pod of another namespace inherits none of its elements",
    withLogs(async () => {
      const ns = 'reuse';
      const ca = (await import('node:fs')).readFileSync(statePaths(cp.lab).caCert, 'utf8');
      await apply(api, namespaceObject(ns), { fieldManager: FM });
      await apply(api, labCaConfigMap(ns, ca), { fieldManager: FM });
      // Its policy allows github.com only.
      await apply(
        api,
        {
          apiVersion: 'namegate.dev/v1alpha1',
          kind: 'EgressPolicy',
          metadata: { name: 'github-only', namespace: ns },
          spec: {
            podSelector: { matchLabels: { app: 'ci' } },
            egress: [{ toFQDNs: [{ name: 'github.com' }], ports: [{ port: 443 }] }],
          },
        } as KubeObject,
        { fieldManager: FM },
      );
      const old = await pod('payments', 'payments-api');
      assert.equal((await curl(cp, old, 'https://api.stripe.com/')).code, 0);
      assert.ok(
        (await kernelState(cp.lab)).learned.some((e) => e.source === old.ip && e.destination === STRIPE_IP),
        'the old pod learned api.stripe.com',
      );
      // Scale it away; the host-local IPAM hands out the address after the last one it reserved.
      await scaleTo('payments', 'payments-api', 0);
      await waitFor('old pod gone', 60_000, async () => {
        const left = await listPods(api, 'payments', 'namegate.dev/lab-workload=payments-api');
        return left.some((p) => p.name === old.name) ? undefined : true;
      });
      const octets = old.ip!.split('.').map(Number);
      octets[3] = octets[3]! - 1;
      await writeFile(lastReservedIpFile(cp), octets.join('.'));
      await apply(
        api,
        testClientDeployment(cp, testClient, { name: 'ci', namespace: ns, labels: { app: 'ci' } }),
        {
          fieldManager: FM,
        },
      );
      await waitRolledOut(api, 'Deployment', ns, 'ci');
      const reused = await pod(ns, 'ci');
      assert.equal(reused.ip, old.ip, 'the new pod got the deleted pod address');
      const k = await kernelState(cp.lab);
      assert.ok(
        !k.learned.some((e) => e.source === reused.ip && e.destination === STRIPE_IP),
        'no element of the old pod survives for its address',
      );
      const direct = await curl(cp, reused, 'https://api.stripe.com/', {
        resolve: `api.stripe.com:443:${STRIPE_IP}`,
        connectTimeoutS: 2,
      });
      assert.notEqual(direct.code, 0, "the new pod cannot use the old pod's grant");
      assert.equal((await dig(cp, reused, 'api.stripe.com')).status, 'REFUSED');
      assert.equal((await curl(cp, reused, 'https://github.com/')).code, 0, 'its own policy works');
      // payments-api comes back (with another address) for the later steps.
      await scaleTo('payments', 'payments-api', 1);
      await waitRolledOut(api, 'Deployment', 'payments', 'payments-api');
    }),
  );

  test(
    'scaling a Deployment to 20 pods governs all of them',
    withLogs(async () => {
      const scale = (n: number) => scaleTo('ci', 'ci-runner', n);
      await scale(20);
      await waitRolledOut(api, 'Deployment', 'ci', 'ci-runner', 240_000);
      const pods = await runningPods(api, 'ci', 'namegate.dev/lab-workload=ci-runner');
      assert.equal(pods.length, 20);
      await waitFor('20 pods in the enforce set', 30_000, async () => {
        const k = await governed(...pods);
        return k.enforce.size === pods.length ? true : undefined;
      });
      const last = pods.at(-1)!;
      assert.equal((await dig(cp, last, 'api.stripe.com')).status, 'REFUSED');
      assert.equal((await curl(cp, last, 'https://github.com/')).code, 0);
      await scale(1);
      await waitRolledOut(api, 'Deployment', 'ci', 'ci-runner', 120_000);
    }),
  );

  test(
    'deleting the agent pod keeps established connections and never answers a denied name',
    withLogs(async (t) => {
      // ci-runner's github.com rule has no SNI check: its connection is the pod's own, through
      // the kernel (a connection through the SNI proxy ends with the agent that proxies it).
      const ci = await pod('ci', 'ci-runner');
      const pay = await pod('payments', 'payments-api');
      assert.equal((await curl(cp, ci, 'https://github.com/')).code, 0);
      const conn = await openPodConnection(cp, ci, 'github.com', GITHUB_IP);
      try {
        assert.ok(await conn.request(5000), 'the connection works before');
        const [agent] = await listPods(api, RELEASE_NAMESPACE, 'app.kubernetes.io/component=agent');
        await api.request('DELETE', `/api/v1/namespaces/${RELEASE_NAMESPACE}/pods/${agent!.name}`);
        let denied = 0;
        let allowedFailed = 0;
        let probes = 0;
        let connFailed = 0;
        const deadline = Date.now() + 120_000;
        for (;;) {
          // The lab's nginx closes connections idle for 5 s: keep this one busy.
          const [bad, good, flowing] = await Promise.all([
            dig(cp, pay, 'evil.example.com'),
            dig(cp, pay, 'api.stripe.com'),
            conn.request(3000),
          ]);
          probes++;
          if (!flowing) connFailed++;
          if (bad.status === 'NOERROR' && bad.answers.length > 0) denied++;
          if (good.status !== 'NOERROR') allowedFailed++;
          const agents = await listPods(api, RELEASE_NAMESPACE, 'app.kubernetes.io/component=agent');
          if (
            agents.length === 1 &&
            agents[0]!.name !== agent!.name &&
            agents[0]!.ready &&
            good.status === 'NOERROR'
          )
            break;
          assert.ok(Date.now() < deadline, 'a new agent pod became Ready');
        }
        t.diagnostic(
          `${probes} probes while the agent was replaced; allowed lookups not answered: ${allowedFailed}`,
        );
        assert.equal(denied, 0, 'a denied name was answered while the agent was away');
        assert.equal(connFailed, 0, 'the established connection carried every request');
        assert.ok(await conn.request(5000), 'the established connection still works');
      } finally {
        await conn.close();
      }
    }),
  );

  test(
    'helm upgrade changing the agent config rolls the DaemonSet with no failed request; a CiliumNetworkPolicy is enforced',
    withLogs(async (t) => {
      const cilium = readYamlDocs(path.join(ROOT, 'test/testdata/k8s/cilium-crds.yaml'));
      for (const crd of cilium) await apply(api, crd, { fieldManager: FM });
      forgetDiscovery(api);
      const pay = await pod('payments', 'payments-api');
      const [before] = await listPods(api, RELEASE_NAMESPACE, 'app.kubernetes.io/component=agent');
      let stop = false;
      let failures = 0;
      let requests = 0;
      const prober = (async () => {
        while (!stop) {
          const r = await curl(cp, pay, 'https://api.stripe.com/', { connectTimeoutS: 5 });
          requests++;
          if (r.code === 0) continue;
          failures++;
          t.diagnostic(`failed request during the rollout: curl ${r.code} ${r.stderr}`);
        }
      })();
      try {
        const sets = [...installSets(cp), 'dialects.cilium=true'].flatMap((s) => ['--set', s]);
        await helm(cp, ['upgrade', RELEASE, CHART, '--namespace', RELEASE_NAMESPACE, ...sets]);
        await waitFor('a new agent pod', 60_000, async () => {
          const agents = await listPods(api, RELEASE_NAMESPACE, 'app.kubernetes.io/component=agent');
          return agents.some((a) => a.name !== before!.name) ? true : undefined;
        });
        await waitNamegateReady(api);
        await waitFor('the old agent pod gone', 60_000, async () => {
          const agents = await listPods(api, RELEASE_NAMESPACE, 'app.kubernetes.io/component=agent');
          return agents.every((a) => a.name !== before!.name) ? true : undefined;
        });
        // A few more requests against the new agent alone.
        const after = requests + 5;
        await waitFor('requests after the rollout', 60_000, async () =>
          requests >= after ? true : undefined,
        );
      } finally {
        stop = true;
        await prober;
      }
      t.diagnostic(`${requests} requests for an allowed name during the upgrade, ${failures} failed`);
      assert.equal(failures, 0);
      // The Cilium dialect is on: a CiliumNetworkPolicy with toFQDNs governs the web pod.
      await apply(
        api,
        {
          apiVersion: 'cilium.io/v2',
          kind: 'CiliumNetworkPolicy',
          metadata: { name: 'web-pypi', namespace: 'web' },
          spec: {
            endpointSelector: { matchLabels: { app: 'web' } },
            egress: [
              {
                toFQDNs: [{ matchName: 'files.pythonhosted.org' }],
                toPorts: [{ ports: [{ port: '443', protocol: 'TCP' }] }],
              },
            ],
          },
        } as KubeObject,
        { fieldManager: FM },
      );
      await api.request('DELETE', '/apis/namegate.dev/v1alpha1/clusteregresspolicies/audit-package-mirrors');
      const web = await pod('web', 'web');
      await waitFor('the CiliumNetworkPolicy enforced', 30_000, async () =>
        (await dig(cp, web, 'evil.example.com')).status === 'REFUSED' ? true : undefined,
      );
      assert.equal((await curl(cp, web, 'https://files.pythonhosted.org/')).code, 0);
    }),
  );

  test(
    'helm uninstall removes the nftables table: no pod is left cut off',
    withLogs(async () => {
      const pay = await pod('payments', 'payments-api');
      assert.equal((await dig(cp, pay, 'evil.example.com')).status, 'REFUSED');
      await helm(cp, ['uninstall', RELEASE, '--namespace', RELEASE_NAMESPACE, '--wait', '--timeout', '5m']);
      await waitFor('the agent pods gone', 120_000, async () =>
        (await listPods(api, RELEASE_NAMESPACE, 'app.kubernetes.io/component=agent')).length === 0
          ? true
          : undefined,
      );
      const nft = await labExec(cp.lab, 'node', ['nft', 'list', 'table', 'inet', 'namegate'], {
        timeoutMs: 10_000,
      });
      assert.notEqual(nft.code, 0, 'table inet namegate is gone');
      const free = await dig(cp, pay, 'evil.example.com');
      assert.equal(free.status, 'NOERROR', 'the formerly governed pod resolves through CoreDNS again');
    }),
  );

  test(
    'the rendered manifests (kubectl apply --server-side) install the same thing',
    withLogs(async () => {
      for (const obj of readYamlDocs(path.join(ROOT, 'deploy/manifests/namegate.yaml'))) {
        await apply(api, obj, { fieldManager: FM });
      }
      await waitNamegateReady(api);
      const pay = await pod('payments', 'payments-api');
      await waitFor('payments-api governed again', 30_000, async () =>
        (await dig(cp, pay, 'evil.example.com')).status === 'REFUSED' ? true : undefined,
      );
      assert.equal((await curl(cp, pay, 'https://api.stripe.com/')).code, 0);
    }),
  );
});
