/**
 * Agent start -> DNS listening with many governed sources (root, network namespaces only).
 *
 *   pods (N source addresses + M ungoverned ones) -- router (the agent, a fresh table) -- inet
 *
 * Before the agent starts, every source sends DNS to an "old resolver" in inet through the
 * router, leaving two UDP/53 conntrack entries per source there: a first start must delete the
 * governed sources' entries (K8S-05) before its DNS proxy opens. The run times `namegate agent`
 * from its spawn to its DNS socket listening (polled with `ss`) and to "namegate agent
 * running", and checks the flush: governed entries left (want 0), ungoverned entries kept.
 * No peer: this is a startup path, measured before and after a change (docs/benchmarks.md).
 *
 * Usage: node bench/datapath/startup.ts [sources=1000] [rounds=3]
 * Last line: RESULT startup dns_listening_ms=<median> sources=<N> ...
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, hostname, loadavg, release, tmpdir } from 'node:os';
import path from 'node:path';
import { Netns, NODE, veth } from '../../test/integration/netns.ts';

const SOURCES = Number(process.argv[2] ?? 1000);
const ROUNDS = Number(process.argv[3] ?? 3);
const UNGOVERNED = 100;
const PORT = 5353;
const ROUTER_POD_SIDE = '10.44.7.254';
const OLD_RESOLVER = '198.51.100.53';

/** Governed addresses 10.44.0.1..., then ungoverned ones in 10.44.6.x. */
function addresses(): { governed: string[]; ungoverned: string[] } {
  const governed = Array.from({ length: SOURCES }, (_, i) => `10.44.${(i + 1) >> 8}.${(i + 1) & 255}`);
  const ungoverned = Array.from({ length: UNGOVERNED }, (_, i) => `10.44.6.${i + 1}`);
  return { governed, ungoverned };
}

async function topology(): Promise<{ pods: Netns; router: Netns; inet: Netns }> {
  const [pods, router, inet] = [
    await Netns.create(undefined, 'ng-s'),
    await Netns.create(undefined, 'ng-s'),
    await Netns.create(undefined, 'ng-s'),
  ];
  await veth(pods, 'eth0', router, 'pods');
  await veth(inet, 'eth0', router, 'up0');
  await router.sysctl('net.ipv4.ip_forward', '1');
  // Entries must outlive the agent's start on a loaded machine (this namespace only).
  await router.sysctl('net.netfilter.nf_conntrack_udp_timeout', '600');
  // Conntrack tracks a namespace's packets only once a ruleset uses it (a node's kube-proxy
  // rules do): a table of the bench's own, which the agent leaves alone.
  await router.run([
    'nft',
    'add table inet bench; add chain inet bench f { type filter hook forward priority 10; ct state established counter; }',
  ]);
  await router.addAddress('pods', `${ROUTER_POD_SIDE}/21`);
  await router.addAddress('up0', '198.51.100.254/24');
  await inet.addAddress('eth0', `${OLD_RESOLVER}/24`);
  await inet.route('default', '198.51.100.254');
  const { governed, ungoverned } = addresses();
  const batch = [...governed, ...ungoverned].map((a) => `addr add ${a}/21 dev eth0`).join('\n');
  const file = path.join(tmpdir(), `ng-startup-${process.pid}.ip`);
  await writeFile(file, `${batch}\n`);
  await pods.run(['ip', '-batch', file]);
  await rm(file);
  await pods.route('default', ROUTER_POD_SIDE);
  return { pods, router, inet };
}

/** Two DNS packets (two source ports) from every address, to the old resolver. */
async function dnsTraffic(pods: Netns): Promise<void> {
  const { governed, ungoverned } = addresses();
  const script = `
const dgram = require('node:dgram');
const list = ${JSON.stringify([...governed, ...ungoverned])};
(async () => {
  for (const a of list) for (let k = 0; k < 2; k++) await new Promise((ok) => {
    const s = dgram.createSocket('udp4');
    s.bind({ address: a }, () => s.send(Buffer.alloc(12), 53, '${OLD_RESOLVER}', () => { s.close(); ok(); }));
  });
})();`;
  await pods.run([NODE, '-e', script], { timeoutMs: 120_000 });
}

async function dnsEntries(router: Netns): Promise<string[]> {
  const out = await router.run(['conntrack', '-L', '-f', 'ipv4', '-p', 'udp', '--dport', '53']);
  return out
    .split('\n')
    .map((l) => /\bsrc=(\S+)/.exec(l)?.[1])
    .filter((s): s is string => s !== undefined);
}

async function writeConfig(dir: string): Promise<string> {
  const { governed } = addresses();
  const policy = `apiVersion: namegate.dev/v1alpha1
kind: ClusterEgressPolicy
metadata: { name: bench }
spec:
  podSelector: { matchLabels: { tier: web } }
  egress:
    - toFQDNs: [{ name: api.example.com }, { pattern: "*.example.org" }]
      ports: [{ port: 443 }]
`;
  await writeFile(path.join(dir, 'policy.yaml'), policy);
  const config = {
    dns: {
      listen: [`${ROUTER_POD_SIDE}:${PORT}`],
      upstreams: [`${OLD_RESOLVER}:53`],
      flowLog: { mode: 'none' },
    },
    sources: governed.map((a, i) => ({
      name: `pod-${i}`,
      namespace: 'bench',
      labels: { tier: 'web' },
      cidrs: [`${a}/32`],
    })),
    policies: [path.join(dir, 'policy.yaml')],
    datapath: { dnsRedirect: { ipv4: ROUTER_POD_SIDE, port: PORT } },
    http: { listen: '127.0.0.1:0' },
  };
  const file = path.join(dir, 'agent.yaml');
  await writeFile(file, JSON.stringify(config));
  return file;
}

interface Round {
  steps: Record<string, number>;
  listeningMs: number;
  runningMs: number;
  governedLeft: number;
  ungovernedKept: number;
  entriesBefore: number;
}

async function round(config: string): Promise<Round> {
  const { pods, router, inet } = await topology();
  try {
    await dnsTraffic(pods);
    const before = await dnsEntries(router);
    const started = performance.now();
    const agent = router.spawn(['bin/namegate', 'agent', '--config', config]);
    let runningMs = Number.NaN;
    let log = '';
    // When each startup step logged (ms after the spawn): where the time goes.
    const steps: Record<string, number> = {};
    const mark = (step: string, needle: string) => {
      if (steps[step] === undefined && log.includes(needle))
        steps[step] = Math.round(performance.now() - started);
    };
    agent.stdout?.on('data', (d: Buffer) => {
      log += d.toString();
      mark('first_log', '"msg"');
      mark('reconciled', 'datapath reconciled');
      mark('static_sync', 'kernel in step');
      if (Number.isNaN(runningMs) && log.includes('namegate agent running'))
        runningMs = performance.now() - started;
    });
    agent.stderr?.on('data', (d: Buffer) => {
      log += d.toString();
    });
    let listeningMs = Number.NaN;
    while (Number.isNaN(listeningMs)) {
      const ss = await router.run(['ss', '-Hlun', `sport = :${PORT}`]);
      if (ss.trim() !== '') listeningMs = performance.now() - started;
      else if (agent.exitCode !== null)
        throw new Error(`agent exited ${agent.exitCode}: ${log.slice(-2000)}`);
      if (performance.now() - started > 300_000) throw new Error('no DNS listener after 300 s');
    }
    while (Number.isNaN(runningMs) && agent.exitCode === null && performance.now() - started < 300_000)
      await new Promise((r) => setTimeout(r, 20));
    const after = await dnsEntries(router);
    const governed = new Set(addresses().governed);
    agent.kill('SIGTERM');
    await new Promise((r) => agent.once('exit', r));
    return {
      steps,
      listeningMs,
      runningMs,
      entriesBefore: before.length,
      governedLeft: after.filter((s) => governed.has(s)).length,
      ungovernedKept: after.filter((s) => !governed.has(s)).length,
    };
  } finally {
    for (const n of [pods, router, inet]) await n.delete();
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'ng-startup-'));
  try {
    const config = await writeConfig(dir);
    const rounds: Round[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const r = await round(config);
      rounds.push(r);
      console.log(
        `round ${i + 1}: dns listening ${r.listeningMs.toFixed(0)} ms, agent running ${r.runningMs.toFixed(0)} ms, ` +
          `DNS entries before ${r.entriesBefore}, governed left ${r.governedLeft}, ungoverned kept ${r.ungovernedKept}, ` +
          `steps ${JSON.stringify(r.steps)}, load ${loadavg()[0]?.toFixed(2)}`,
      );
    }
    const cpu = cpus()[0]?.model ?? 'unknown';
    console.log(
      `machine: ${hostname()} ${cpus().length} x ${cpu}, Linux ${release()}, Node ${process.version}, load ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
    console.log(
      `RESULT startup dns_listening_ms=${median(rounds.map((r) => r.listeningMs)).toFixed(0)} agent_running_ms=${median(
        rounds.map((r) => r.runningMs),
      ).toFixed(
        0,
      )} sources=${SOURCES} governed_dns_entries_left=${Math.max(...rounds.map((r) => r.governedLeft))}`,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
