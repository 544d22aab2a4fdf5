/**
 * namegate on a real Kubernetes node (root): the lab's one-node cluster (`lab up --kubernetes`:
 * kubelet, containerd, kube-proxy, CoreDNS), namegate installed with `helm install` as
 * docs/kubernetes.md says. Three figures:
 *
 * 1. install_s: `helm install` until every agent and controller pod is Ready (the image is
 *    already in containerd, as after a pull).
 * 2. pod_governed: 50 replicas of a Deployment (scaled up 10 at a time) whose pods ask for an
 *    allowed name from their first moment (src/lab/cluster/pod-probe.ts `first`: one Node.js
 *    process per pod, retrying 10 ms apart): milliseconds from the container's start until its
 *    first allowed answer. The peer, in the same run and with the same probe: the same 50 pods
 *    in a namespace no policy selects (answered by CoreDNS once the agent knows them). Every pod
 *    also asks a denied name between tries; an answer would be a pod not yet governed.
 * 3. policy_to_pod: an EgressPolicy write (add a name, then remove it) until a real pod's
 *    connections follow it (pod-probe.ts `follow`: resolve and TLS-connect in a loop, 10 ms
 *    apart, in one process; the times are the probe's own, read from its log).
 *
 * Not a test. The last line is exactly
 *   RESULT cluster install_s=<s> pod_governed_p99_ms=<ms> policy_to_pod_p99_ms=<ms>
 * BENCH_PODS (50), BENCH_BATCH (10 pods started at once), BENCH_ROUNDS (20) change the sizes.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { KubeApi, KubeObject } from '../../src/k8s/api.ts';
import { apply } from '../../src/lab/cluster/apply.ts';
import { workloadPod } from '../../src/lab/cluster/exec.ts';
import { helmInstall, waitNamegateReady } from '../../src/lab/cluster/install.ts';
import { adminApi, listPods, type PodInfo, waitFor, waitRolledOut } from '../../src/lab/cluster/kube.ts';
import { labCaConfigMap, namespaceObject, testClientDeployment } from '../../src/lab/cluster/manifests.ts';
import { type ClusterPlan, clusterPlan } from '../../src/lab/cluster/plan.ts';
import {
  followCommand,
  governedMs,
  parseFollow,
  parseProbe,
  probeCommand,
  probeStartMs,
} from '../../src/lab/cluster/probe.ts';
import { criLogLine } from '../../src/lab/cluster/tour.ts';
import { readClusterRecord } from '../../src/lab/cluster/up.ts';
import { labDown, labUp } from '../../src/lab/lab.ts';
import { statePaths } from '../../src/lab/plan.ts';

const PODS = Number(process.env['BENCH_PODS'] ?? 50);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 20);
/** Pods started at once (the Deployment grows by this many per step). */
const BATCH = Number(process.env['BENCH_BATCH'] ?? 10);
const LAB = `bc${(process.pid % 1296).toString(36)}`;
const FM = 'namegate-bench';

function pct(values: readonly number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? Number.NaN;
}

function summary(values: readonly number[]): string {
  return `p50 ${pct(values, 50)} ms, p99 ${pct(values, 99)} ms, max ${Math.max(...values)} ms (n=${values.length})`;
}

function policy(namespace: string, names: readonly string[]): KubeObject {
  return {
    apiVersion: 'namegate.dev/v1alpha1',
    kind: 'EgressPolicy',
    metadata: { name: 'bench', namespace },
    spec: {
      podSelector: { matchLabels: { app: 'bench' } },
      egress: [{ toFQDNs: names.map((name) => ({ name })), ports: [{ port: 443 }] }],
    },
  } as KubeObject;
}

/** A pod's container log on the node (the kubelet's CRI format), without the CRI prefixes. */
async function containerLog(cp: ClusterPlan, namespace: string, p: PodInfo): Promise<string> {
  const file = path.join(cp.paths.varLog, 'pods', `${namespace}_${p.name}_${p.uid}`, 'client', '0.log');
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.split('\n').map(criLogLine).join('\n');
}

interface Probed {
  /** Container start -> first allowed answer, per pod. */
  readonly governed: number[];
  /** Container start -> the probe's first query (the probe's own start). */
  readonly probeStart: number[];
  /** Pods whose first try was already answered (held until known, not refused). */
  readonly firstTry: number;
}

/**
 * PODS pods in batches of BATCH (one Deployment scaled up step by step), each probing from its
 * first moment.
 */
async function probePods(
  cp: ClusterPlan,
  api: KubeApi,
  namespace: string,
  image: string,
  governed: boolean,
): Promise<Probed> {
  const name = 'probe';
  const seen = new Set<string>();
  const out: Probed = { governed: [], probeStart: [], firstTry: 0 };
  let firstTry = 0;
  try {
    for (let replicas = BATCH; replicas <= PODS; replicas += BATCH) {
      await apply(
        api,
        testClientDeployment(cp, image, {
          name,
          namespace,
          labels: { app: 'bench' },
          replicas,
          command: probeCommand('api.stripe.com', 'evil.example.com'),
        }),
        { fieldManager: FM },
      );
      await waitRolledOut(api, 'Deployment', namespace, name, 600_000);
      for (const p of await listPods(api, namespace, `namegate.dev/lab-workload=${name}`)) {
        if (seen.has(p.name)) continue;
        seen.add(p.name);
        const r = await waitFor(
          `probe of ${p.name}`,
          120_000,
          async () => parseProbe(await containerLog(cp, namespace, p)) ?? undefined,
        );
        if (governed)
          assert.equal(r.leaks, 0, `${p.name}: a denied name was answered before the pod was governed`);
        assert.ok(r.answer.includes('203.0.113.10'), `${p.name} got no allowed answer (${r.tries} tries)`);
        out.governed.push(governedMs(r));
        out.probeStart.push(probeStartMs(r));
        if (r.tries === 1) firstTry++;
      }
    }
  } finally {
    await api.request('DELETE', `/apis/apps/v1/namespaces/${namespace}/deployments/${name}`).catch(() => {});
  }
  return { ...out, firstTry };
}

async function main(): Promise<void> {
  const loadBefore = os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  console.log(`lab ${LAB}: bringing up the Kubernetes node...`);
  await labUp({ name: LAB, kubernetes: true });
  try {
    const cp = clusterPlan(LAB);
    const api = adminApi(cp);
    const record = readClusterRecord(cp);
    if (!record) throw new Error('no cluster record');
    // The probes run in the namegate image: it has Node.js, and pod-probe.ts is in its /app.
    const image = record.images['namegate']!.ref;
    console.log(`node up: ${JSON.stringify(record.timings)}`);

    // 1. install
    const t0 = performance.now();
    await helmInstall(cp);
    await waitNamegateReady(api, 300_000);
    const installS = (performance.now() - t0) / 1000;
    console.log(`install: helm install -> every agent and controller Ready: ${installS.toFixed(1)} s`);

    const ca = await readFile(statePaths(cp.lab).caCert, 'utf8');
    for (const ns of ['bench', 'benchfree']) {
      await apply(api, namespaceObject(ns), { fieldManager: FM });
      await apply(api, labCaConfigMap(ns, ca), { fieldManager: FM });
    }
    await apply(api, policy('bench', ['api.stripe.com']), { fieldManager: FM });

    // 2. pod Running -> first allowed answer, governed and (peer) not governed
    const governed = await probePods(cp, api, 'bench', image, true);
    console.log(
      `pod governed (${BATCH} started at once): container start -> first allowed answer: ${summary(governed.governed)}`,
    );
    console.log(
      `  container start -> the probe's first query: ${summary(governed.probeStart)}; answered at the first try: ${governed.firstTry}/${governed.governed.length}`,
    );
    const free = await probePods(cp, api, 'benchfree', image, false);
    console.log(`peer, no policy: ${summary(free.governed)}`);
    console.log(
      `  container start -> the probe's first query: ${summary(free.probeStart)}; answered at the first try: ${free.firstTry}/${free.governed.length}`,
    );
    console.log(
      `ratio p50 governed/ungoverned: ${(pct(governed.governed, 50) / Math.max(1, pct(free.governed, 50))).toFixed(2)}`,
    );

    // 3. policy write -> the pod's connections follow it
    await apply(
      api,
      testClientDeployment(cp, image, {
        name: 'client',
        namespace: 'bench',
        labels: { app: 'bench' },
        command: followCommand('github.com', 443, statePaths(cp.lab).caCert),
      }),
      { fieldManager: FM },
    );
    await waitRolledOut(api, 'Deployment', 'bench', 'client');
    const pod = await workloadPod(api, 'bench', 'client');
    // The probe's first line: github.com is not allowed yet.
    await waitFor('the follow probe starts', 60_000, async () =>
      parseFollow(await containerLog(cp, 'bench', pod)).some((c) => !c.ok) ? true : undefined,
    );
    const follow: number[] = [];
    const flaps: string[] = [];
    let consumed = parseFollow(await containerLog(cp, 'bench', pod)).length;
    for (let i = 0; i < ROUNDS; i++) {
      const allow = i % 2 === 0;
      const written = Date.now();
      await apply(api, policy('bench', allow ? ['api.stripe.com', 'github.com'] : ['api.stripe.com']), {
        fieldManager: FM,
      });
      // The first outcome change after the write to the expected one: its try's end, from the
      // write (wall clock, the probe's own times; the bench's polling adds nothing).
      const change = await waitFor('the pod follows the policy', 30_000, async () => {
        const changes = parseFollow(await containerLog(cp, 'bench', pod)).slice(consumed);
        const k = changes.findIndex((c) => c.ok === allow && c.done >= written);
        if (k < 0) return undefined;
        for (const c of changes.slice(0, k)) flaps.push(`round ${i}: ok=${c.ok} why=${c.why}`);
        consumed += k + 1;
        return changes[k]!;
      });
      follow.push(change.done - written);
    }
    console.log(`policy write -> the pod's connections follow it: ${summary(follow)}`);
    if (flaps.length > 0)
      console.log(`outcome changes against the direction of a write: ${flaps.join('; ')}`);
    const cpus = os.cpus();
    console.log(
      `machine: ${cpus.length} x ${cpus[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GB, Linux ${os.release()}, Node ${process.version}, load before ${loadBefore}, after ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
    console.log(
      `RESULT cluster install_s=${installS.toFixed(1)} pod_governed_p99_ms=${pct(governed.governed, 99)} policy_to_pod_p99_ms=${pct(follow, 99)}`,
    );
  } catch (err) {
    // Printed before the lab goes down: what the teardown cuts must not hide it.
    console.error(err);
    throw err;
  } finally {
    await labDown({ name: LAB });
  }
}

await main();
