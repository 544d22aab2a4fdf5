/**
 * `namegate observe --kubernetes` against a real kube-apiserver: flows of two agents come through
 * the API server's pod proxy (/api/v1/namespaces/<ns>/pods/<agent>:<port>/proxy/flows), merged by
 * time and tagged with the node; a follower sees new events; and the chart's flow-reader Role is
 * exactly what it takes: a user bound to it reads flows, one without it is refused (403).
 *
 * No kubelet runs, so the agent pods are API objects with a podIP set through pods/status, and the
 * API server reaches "them" through its egress selector: an HTTP CONNECT proxy on a Unix socket of
 * this test (the way konnectivity plugs in) that connects each pod address to the flow API the
 * test serves for that agent on loopback. The API server's own proxying, authentication and RBAC
 * are the real ones.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { type AddressInfo, connect, createServer as createNetServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { FlowLog } from '../../src/dns/flow-log.ts';
import { FlowApi } from '../../src/flows/api.ts';
import { clusterOrigins, collectFlows } from '../../src/flows/client.ts';
import type { FlowEvent } from '../../src/flows/event.ts';
import { FlowHub } from '../../src/flows/hub.ts';
import { SourceBook, sourceLine } from '../../src/flows/sources.ts';
import { FlowStats } from '../../src/flows/stats.ts';
import { KubeApi, KubeApiError } from '../../src/k8s/api.ts';
import { eventually, TestApiServer } from './apiserver.ts';
import { apply } from './helpers.ts';
import { chartRbac, RELEASE_NAMESPACE } from './lab-cluster.ts';

const PORT = 9393;
const GROUP = 'namegate-flow-readers';

interface FakeAgent {
  readonly node: string;
  readonly podIp: string;
  readonly hub: FlowHub;
  readonly log: FlowLog;
  server: Server;
  port: number;
}

let dir: string;
let apiserver: TestApiServer;
let connectProxy: ReturnType<typeof createNetServer>;
const agents: FakeAgent[] = [];

function dnsLine(a: FakeAgent, at: number, name: string, verdict: 'allow' | 'deny'): void {
  const clock = () => at;
  new FlowLog({ write: (l) => a.hub.write(l) }, 'all', clock).record({
    src: '10.244.1.5',
    identity: 'pod:shop/checkout',
    qname: name,
    qtype: 1,
    verdict,
    reason: verdict === 'allow' ? 'fqdn_rule' : 'no_matching_rule',
    policy: verdict === 'allow' ? 'shop/egress' : null,
    rule: verdict === 'allow' ? 0 : null,
    ips: [],
    ttl: 60,
    rcode: 0,
    ms: 0.2,
    transport: 'udp',
  });
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'ng-observe-'));
  const t0 = Date.now() - 60_000;
  for (const [i, node] of ['node-a', 'node-b'].entries()) {
    const hub = new FlowHub(new SourceBook(), { flushMs: 20 });
    const api = new FlowApi({ hub, stats: new FlowStats(), governed: () => 1 });
    const server = createServer((req, res) => {
      if (!api.handle(req, res)) {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const a: FakeAgent = {
      node,
      podIp: `10.244.0.${11 + i}`,
      hub,
      log: new FlowLog(hub, 'all'),
      server,
      port: (server.address() as AddressInfo).port,
    };
    hub.write(
      sourceLine(new Date(t0).toISOString(), '10.244.1.5', {
        identity: 'pod:shop/checkout',
        namespace: 'shop',
        pod: 'checkout',
        labels: { app: 'checkout' },
        workload: null,
      }),
    );
    // Interleaved in time across the two agents: the merge must order them.
    for (let k = 0; k < 3; k++)
      dnsLine(a, t0 + (2 * k + i) * 1000, `n${2 * k + i}.example.com`, k === 2 ? 'deny' : 'allow');
    agents.push(a);
  }
  // The API server's egress: CONNECT <podIP>:<port> -> the fake agent of that pod address.
  const sock = path.join(dir, 'egress.sock');
  connectProxy = createNetServer((client) => {
    let head = '';
    const onData = (chunk: Buffer) => {
      head += chunk.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > 8192) client.destroy();
        return;
      }
      client.off('data', onData);
      const m = /^CONNECT ([0-9.]+):(\d+) HTTP\/1\.[01]\r\n/.exec(head);
      const agent = agents.find((a) => a.podIp === m?.[1] && Number(m?.[2]) === PORT);
      if (!agent) {
        client.end('HTTP/1.1 502 Bad Gateway\r\n\r\n');
        return;
      }
      const upstream = connect(agent.port, '127.0.0.1', () => {
        client.write('HTTP/1.1 200 Connection established\r\n\r\n');
        const rest = Buffer.from(head.slice(end + 4), 'latin1');
        if (rest.length > 0) upstream.write(rest);
        client.pipe(upstream).pipe(client);
      });
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
    };
    client.on('data', onData);
  });
  await new Promise<void>((r) => connectProxy.listen(sock, r));
  const egress = path.join(dir, 'egress.yaml');
  writeFileSync(
    egress,
    [
      'apiVersion: apiserver.k8s.io/v1beta1',
      'kind: EgressSelectorConfiguration',
      'egressSelections:',
      '- name: cluster',
      '  connection:',
      '    proxyProtocol: HTTPConnect',
      '    transport:',
      '      uds:',
      `        udsName: ${sock}`,
      '',
    ].join('\n'),
  );
  apiserver = await TestApiServer.start({ extraArgs: [`--egress-selector-config-file=${egress}`] });
  const admin = apiserver.adminApi();
  await admin.request('POST', '/api/v1/namespaces', { body: { metadata: { name: RELEASE_NAMESPACE } } });
  for (const obj of chartRbac([`flowReaders.groups={${GROUP}}`]))
    await apply(admin, obj, { namespace: RELEASE_NAMESPACE });
  for (const a of agents) {
    const name = `namegate-agent-${a.node}`;
    await admin.request('POST', `/api/v1/namespaces/${RELEASE_NAMESPACE}/pods`, {
      body: {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: {
          name,
          labels: { 'app.kubernetes.io/name': 'namegate', 'app.kubernetes.io/component': 'agent' },
        },
        spec: {
          nodeName: a.node,
          hostNetwork: true,
          containers: [
            {
              name: 'agent',
              image: 'registry.invalid/namegate:1',
              ports: [{ name: 'health', containerPort: PORT }],
            },
          ],
        },
      },
    });
    await admin.request('PATCH', `/api/v1/namespaces/${RELEASE_NAMESPACE}/pods/${name}/status`, {
      body: { status: { phase: 'Running', podIP: a.podIp, podIPs: [{ ip: a.podIp }] } },
      contentType: 'application/merge-patch+json',
    });
  }
});

after(async () => {
  await apiserver?.stop();
  for (const a of agents) {
    a.server.closeAllConnections();
    a.server.close();
  }
  connectProxy?.close();
  rmSync(dir, { recursive: true, force: true });
});

function userApi(user: string, groups: string[]): KubeApi {
  return new KubeApi(apiserver.userConfig(user, groups).config);
}

test("a flow reader sees every agent's flows through the pod proxy, merged by time", async () => {
  const api = userApi('alice', [GROUP]);
  const origins = await clusterOrigins(api, {
    namespace: RELEASE_NAMESPACE,
    selector: 'app.kubernetes.io/name=namegate,app.kubernetes.io/component=agent',
  });
  assert.deepEqual(origins.map((o) => o.node).sort(), ['node-a', 'node-b']);
  const got: FlowEvent[] = [];
  await collectFlows(
    origins,
    { params: new URLSearchParams('last=100'), follow: false },
    { follow: false, tagNodes: true },
    (e) => got.push(e),
    new AbortController().signal,
  );
  assert.deepEqual(
    got.map((e) => e.name),
    [
      'n0.example.com',
      'n1.example.com',
      'n2.example.com',
      'n3.example.com',
      'n4.example.com',
      'n5.example.com',
    ],
  );
  assert.deepEqual(
    got.map((e) => e.node),
    ['node-a', 'node-b', 'node-a', 'node-b', 'node-a', 'node-b'],
  );
  assert.deepEqual(got[0]?.labels, { app: 'checkout' });

  // Filters travel to the agents: only the denials.
  const denied: FlowEvent[] = [];
  await collectFlows(
    origins,
    { params: new URLSearchParams('verdict=deny&last=100'), follow: false },
    { follow: false, tagNodes: true },
    (e) => denied.push(e),
    new AbortController().signal,
  );
  assert.deepEqual(denied.map((e) => e.name).sort(), ['n4.example.com', 'n5.example.com']);

  // Following: a new decision on node-b arrives through the API server.
  const abort = new AbortController();
  const live: FlowEvent[] = [];
  const following = collectFlows(
    origins,
    { params: new URLSearchParams('last=0'), follow: true },
    { follow: true, tagNodes: true },
    (e) => live.push(e),
    abort.signal,
  ).catch((err: unknown) => {
    if (!abort.signal.aborted) throw err;
  });
  await eventually('followers on both agents', async () =>
    agents.every((a) => a.hub.followers > 0) ? true : undefined,
  );
  dnsLine(agents[1] as FakeAgent, Date.now(), 'live.example.com', 'deny');
  await eventually('the live event', async () =>
    live.some((e) => e.name === 'live.example.com') ? true : undefined,
  );
  assert.equal(live.find((e) => e.name === 'live.example.com')?.node, 'node-b');
  abort.abort();
  await following;
});

test('without the flow-reader Role the API server refuses (403)', async () => {
  const api = userApi('bob', ['someone-else']);
  await assert.rejects(
    clusterOrigins(api, { namespace: RELEASE_NAMESPACE, selector: 'app.kubernetes.io/component=agent' }),
    (err: unknown) => err instanceof KubeApiError && err.status === 403,
  );
  // Listing alone is not enough: pods/proxy is its own permission.
  const admin = apiserver.adminApi();
  await admin.request('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${RELEASE_NAMESPACE}/roles`, {
    body: {
      metadata: { name: 'list-only' },
      rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['list'] }],
    },
  });
  await admin.request(
    'POST',
    `/apis/rbac.authorization.k8s.io/v1/namespaces/${RELEASE_NAMESPACE}/rolebindings`,
    {
      body: {
        metadata: { name: 'list-only' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'list-only' },
        subjects: [{ kind: 'User', apiGroup: 'rbac.authorization.k8s.io', name: 'carol' }],
      },
    },
  );
  const carol = userApi('carol', []);
  const origins = await clusterOrigins(carol, {
    namespace: RELEASE_NAMESPACE,
    selector: 'app.kubernetes.io/component=agent',
  });
  await assert.rejects(
    collectFlows(
      origins,
      { params: new URLSearchParams('last=10'), follow: false },
      { follow: false, tagNodes: true },
      () => {},
      new AbortController().signal,
    ),
    (err: unknown) => err instanceof KubeApiError && err.status === 403,
  );
});
