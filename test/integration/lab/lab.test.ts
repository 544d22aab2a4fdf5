/**
 * The lab for real (root): namespaces, knotd, nginx and the escape listeners come up; with no
 * agent everything routes, so pods reach knot and the web servers directly; dynamic updates
 * change answers; `lab down` leaves nothing behind, also after crashes, and twice in a row.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { after, describe, it, type TestContext } from 'node:test';
import { setAddresses } from '../../../src/lab/dns-update.ts';
import { labExec } from '../../../src/lab/exec.ts';
import { labDown, labStatus, labUp } from '../../../src/lab/lab.ts';
import { netnsExists } from '../../../src/lab/netns.ts';
import { helloBody } from '../../../src/lab/nginx-config.ts';
import { type LabPlan, labPlan, netnsEtcDir, siteFor, statePaths } from '../../../src/lab/plan.ts';
import { isAlive, pidFiles } from '../../../src/lab/processes.ts';
import { run } from '../../../src/lab/run.ts';
import { runChecks, type TourCheck } from '../../../src/lab/tour.ts';
import { LAB_COMMANDS, skipUnless } from '../../support/requirements.ts';

const NODE = process.execPath;
const CLI = new URL('../../../src/cli/main.ts', import.meta.url).pathname;

const skip = skipUnless({ tools: LAB_COMMANDS });

let counter = 0;
/** A lab name unique to this run and test: letters and digits, at most 12. */
function uniqueName(): string {
  counter += 1;
  return `it${(process.pid % 46656).toString(36)}${counter}`;
}

function cli(args: readonly string[], timeoutMs = 60_000) {
  return run([NODE, CLI, ...args], { timeoutMs });
}

/** Every process whose command line or namespace ties it to the lab. */
function leftoverProcesses(plan: LabPlan): string[] {
  const out: string[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmd.includes(plan.stateDir)) out.push(`${d} ${cmd}`);
    } catch {
      // gone
    }
  }
  return out;
}

async function assertGone(plan: LabPlan): Promise<void> {
  const list = await run(['ip', 'netns', 'list']);
  const ours = list.stdout.split('\n').filter((l) => l.startsWith(`ng-${plan.name}-`));
  assert.deepEqual(ours, [], 'no namespace left');
  for (const ns of plan.namespaces) {
    assert.equal(netnsExists(ns), false, ns);
    assert.equal(existsSync(netnsEtcDir(ns)), false, `${netnsEtcDir(ns)} removed`);
  }
  assert.equal(existsSync(plan.stateDir), false, 'state dir removed');
  assert.deepEqual(leftoverProcesses(plan), [], 'no process left');
}

async function upFor(t: TestContext, options: { policies?: string[] } = {}): Promise<LabPlan> {
  const name = uniqueName();
  t.after(() => labDown({ name }));
  const { plan } = await labUp({ name, ...options });
  return plan;
}

async function rootSnapshot(): Promise<string> {
  const parts = await Promise.all([
    run(['ip', '-4', 'route', 'show', 'table', 'main']),
    run(['ip', '-6', 'route', 'show', 'table', 'main']),
  ]);
  const sysctls = ['net/ipv4/ip_forward', 'net/ipv6/conf/all/forwarding'].map((k) =>
    readFileSync(`/proc/sys/${k}`, 'utf8').trim(),
  );
  return [...parts.map((p) => p.stdout), ...sysctls].join('\n');
}

describe('namegate lab', { skip, concurrency: false }, () => {
  after(async () => {
    // Belt and braces: whatever a failed test left of its labs.
    for (let i = 1; i <= counter; i++) await labDown({ name: `it${(process.pid % 46656).toString(36)}${i}` });
  });

  it('comes up with knot and nginx reachable from the pods, IPv4 and IPv6, and leaves the root namespace alone', async (t) => {
    const before = await rootSnapshot();
    const plan = await upFor(t);
    assert.equal(await rootSnapshot(), before, 'root routes and forwarding sysctls unchanged');

    const pod = 'payments-api';
    const dig = await labExec(plan, pod, ['dig', '+short', `@${plan.upstream.ipv4}`, 'api.stripe.com', 'A']);
    assert.equal(dig.stdout.trim(), '203.0.113.10');
    const dig6 = await labExec(plan, pod, [
      'dig',
      '+short',
      `@${plan.upstream.ipv6}`,
      'api.stripe.com',
      'AAAA',
    ]);
    assert.equal(dig6.stdout.trim(), '2001:db8:113::10');
    const chain = await labExec(plan, pod, [
      'dig',
      '+short',
      `@${plan.upstream.ipv4}`,
      'www.example.org',
      'A',
    ]);
    assert.deepEqual(chain.stdout.trim().split('\n'), ['edge.example.net.', '203.0.113.90']);
    const tcp = await labExec(plan, pod, [
      'dig',
      '+tcp',
      '+short',
      `@${plan.upstream.ipv4}`,
      'internal.example.com',
    ]);
    assert.equal(tcp.stdout.trim(), '10.0.0.5');

    const ca = statePaths(plan).caCert;
    const get = (name: string, ip: string, family: '-4' | '-6' = '-4') =>
      labExec(plan, pod, [
        'curl',
        '-sS',
        family,
        '--max-time',
        '5',
        '--cacert',
        ca,
        '--resolve',
        `${name}:443:${ip.includes(':') ? `[${ip}]` : ip}`,
        `https://${name}/`,
      ]);
    assert.equal((await get('api.stripe.com', '203.0.113.10')).stdout.trim(), helloBody('api.stripe.com'));
    // The CDN case: another name on the same address gets its own vhost and certificate.
    assert.equal(
      (await get('cdn-neighbour.example.net', '203.0.113.10')).stdout.trim(),
      helloBody('cdn-neighbour.example.net'),
    );
    assert.equal(
      (await get('api.stripe.com', '2001:db8:113::10', '-6')).stdout.trim(),
      helloBody('api.stripe.com'),
    );
    const http = await labExec(plan, 'web', [
      'curl',
      '-sS',
      '--max-time',
      '5',
      'http://203.0.113.50/',
      '-H',
      'Host: pypi.org',
    ]);
    assert.equal(http.stdout.trim(), helloBody('pypi.org'));

    // The pods' resolver is the node (nothing answers there until the agent runs).
    const resolv = await labExec(plan, pod, ['cat', '/etc/resolv.conf']);
    assert.match(resolv.stdout, /^nameserver 10\.10\.0\.53$/m);

    // Escape targets.
    const quic = await labExec(plan, pod, ['nc', '-u', '-w', '2', '203.0.113.10', '443'], {
      input: 'ping\n',
    });
    assert.match(quic.stdout, /quic-like reply from 203\.0\.113\.10/);
    const other = await labExec(plan, pod, [
      'dig',
      '+short',
      `@${plan.otherResolver.ipv4}`,
      'api.stripe.com',
    ]);
    assert.equal(other.stdout.trim(), plan.otherResolverAnswer.ipv4);
    const otherTcp = await labExec(plan, pod, [
      'dig',
      '+tcp',
      '+short',
      `@${plan.otherResolver.ipv6}`,
      'x.test',
      'AAAA',
    ]);
    assert.equal(otherTcp.stdout.trim(), plan.otherResolverAnswer.ipv6);
    const dot = await labExec(plan, pod, ['nc', '-w', '2', plan.otherResolver.ipv4, '853']);
    assert.match(dot.stdout, /dot-like listener/);

    // Forwarding is on inside the node namespace.
    const fwd = await labExec(plan, 'node', [
      'sysctl',
      '-n',
      'net.ipv4.ip_forward',
      'net.ipv6.conf.all.forwarding',
    ]);
    assert.deepEqual(fwd.stdout.trim().split('\n'), ['1', '1']);

    const config = await readFile(statePaths(plan).agentConfig, 'utf8');
    assert.match(config, /10\.10\.0\.53:53/);
  });

  it('follows dynamic updates', async (t) => {
    const plan = await upFor(t);
    const moving = siteFor(plan, 'moving.example.com')!;
    const ask = async (type: string) =>
      (
        await labExec(plan, 'ci-runner', [
          'dig',
          '+short',
          `@${plan.upstream.ipv4}`,
          'moving.example.com',
          type,
        ])
      ).stdout.trim();
    assert.equal(await ask('A'), moving.ipv4[0]);
    await setAddresses(plan, 'moving.example.com', { ipv4: moving.spare4, ipv6: moving.spare6, ttl: 30 });
    assert.equal(await ask('A'), moving.spare4[0]);
    assert.equal(await ask('AAAA'), moving.spare6[0]);
    const body = await labExec(plan, 'ci-runner', [
      'curl',
      '-sS',
      '--max-time',
      '5',
      '--cacert',
      statePaths(plan).caCert,
      '--resolve',
      `moving.example.com:443:${moving.spare4[0]}`,
      'https://moving.example.com/',
    ]);
    assert.equal(body.stdout.trim(), helloBody('moving.example.com'));
    await assert.rejects(
      setAddresses(plan, 'moving.example.com', { ipv4: ['not-an-ip'] }),
      /not valid A data/,
    );
  });

  it('bounds labExec in time and names unknown pods', async (t) => {
    const plan = await upFor(t);
    const r = await labExec(plan, 'web', ['sleep', '10'], { timeoutMs: 200 });
    assert.equal(r.timedOut, true);
    await assert.rejects(labExec(plan, 'nope', ['true']), /no pod "nope"/);
    await assert.rejects(labExec(labPlan('neverup'), 'web', ['true']), /not up/);
  });

  it('status, up again (recreate) and down twice through the CLI', async (t) => {
    const name = uniqueName();
    t.after(() => labDown({ name }));
    const plan = labPlan(name);
    const up = await cli(['lab', 'up', '--name', name]);
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stdout, new RegExp(`lab ${name} is up`));
    assert.match(up.stderr, /creating namespaces/);

    const status = await labStatus({ name });
    assert.equal(status.exists, true);
    assert.ok(status.namespaces.every((n) => n.exists));
    assert.deepEqual(status.daemons.map((d) => [d.name, d.running]).sort(), [
      ['knotd', true],
      ['listeners', true],
      ['nginx', true],
    ]);
    const firstPids = await pidFiles(plan);

    const again = await cli(['lab', 'up', '--name', name]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /removed and recreated/);
    const secondPids = await pidFiles(plan);
    assert.notEqual(secondPids.get('knotd'), firstPids.get('knotd'));
    for (const pid of firstPids.values()) assert.equal(isAlive(pid), false, 'old daemons ended');

    const text = await cli(['lab', 'status', '--name', name]);
    assert.equal(text.code, 0);
    assert.match(text.stdout, /knotd +pid \d+ +running/);

    const down = await cli(['lab', 'down', '--name', name]);
    assert.equal(down.code, 0, down.stderr);
    assert.match(down.stdout, /is down/);
    await assertGone(plan);
    const twice = await cli(['lab', 'down', '--name', name]);
    assert.equal(twice.code, 0, twice.stderr);
    assert.match(twice.stdout, /nothing to remove/);
    const gone = await cli(['lab', 'status', '--name', name]);
    assert.equal(gone.code, 1);
    assert.match(gone.stdout, /does not exist/);
  });

  it('cleans up after the daemons were SIGKILLed', async (t) => {
    const plan = await upFor(t);
    for (const pid of (await pidFiles(plan)).values()) process.kill(pid, 'SIGKILL');
    await labDown({ name: plan.name });
    await assertGone(plan);
  });

  it('cleans up after the CLI was SIGKILLed in the middle of lab up', async () => {
    const name = uniqueName();
    const plan = labPlan(name);
    const child = spawn(NODE, [CLI, 'lab', 'up', '--name', name], { stdio: ['ignore', 'ignore', 'pipe'] });
    // Kill it once it has started daemons but (very likely) before it verified them.
    await new Promise<void>((resolve, reject) => {
      let seen = '';
      child.stderr.on('data', (b: Buffer) => {
        seen += b.toString();
        if (seen.includes('starting knotd')) resolve();
      });
      child.once('exit', () => reject(new Error(`lab up ended before it started daemons:\n${seen}`)));
    });
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    assert.ok(plan.namespaces.some(netnsExists), 'something was left to clean');
    const down = await cli(['lab', 'down', '--name', name]);
    assert.equal(down.code, 0, down.stderr);
    await assertGone(plan);
  });

  it('runs the tour without an agent and says why it mismatches', async (t) => {
    const plan = await upFor(t);
    const r = await cli(['lab', 'tour', '--name', plan.name]);
    assert.equal(r.code, 1, 'mismatches without an agent');
    assert.match(r.stdout, /pod +\| target +\| expected \| observed \| reason/);
    assert.match(r.stdout, /nothing answers DNS at 10\.10\.0\.53/);
    // Without enforcement, escape targets are reachable: the table says so.
    assert.match(r.stdout, /udp 203\.0\.113\.10:443 \(QUIC\) +\| deny +\| allow +\| UDP reply/);
    assert.match(r.stdout, /checks as expected/);
  });

  it('takes namegate dropped into the node namespace: pods resolve through it with the generated config', async (t) => {
    const name = uniqueName();
    t.after(() => labDown({ name }));
    // The DNS proxy alone (recording datapath): the DNS verdicts are real, nothing is enforced.
    const { plan } = await labUp({ name, agent: 'dns' });
    const checks: TourCheck[] = [
      { kind: 'http', pod: 'payments-api', url: 'https://api.stripe.com/', expect: 'allow', why: '' },
      { kind: 'dns', pod: 'payments-api', name: 'evil.example.com', expect: 'deny', why: '' },
      { kind: 'http', pod: 'ci-runner', url: 'https://api.stripe.com/', expect: 'deny', why: '' },
      { kind: 'http', pod: 'unmanaged', url: 'https://evil.example.com/', expect: 'allow', why: '' },
    ];
    const results = await runChecks(plan, checks);
    assert.deepEqual(
      results.map((r) => r.observed),
      [
        { verdict: 'allow', reason: 'HTTP 200 from api.stripe.com' },
        { verdict: 'deny', reason: 'REFUSED' },
        { verdict: 'deny', reason: 'DNS REFUSED' },
        { verdict: 'allow', reason: 'HTTP 200 from evil.example.com' },
      ],
    );
    const agentPid = (await pidFiles(plan)).get('agent');
    assert.ok(agentPid !== undefined && isAlive(agentPid));
    await labDown({ name });
    assert.equal(isAlive(agentPid), false, 'lab down ends the agent too');
    await assertGone(plan);
  });

  it('explains what is wrong with bad input', async () => {
    const bad = await cli(['lab', 'up', '--name', 'Bad-Name']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /lowercase letters or digits/);
    const policies = await cli(['lab', 'up', '--name', uniqueName(), '--policies', '/nonexistent/x']);
    assert.equal(policies.code, 2);
    assert.match(policies.stderr, /does not exist/);
  });
});
