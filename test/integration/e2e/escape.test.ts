/**
 * End to end, escape attempts from inside a pod (root, one lab, the SNI proxy on and the CONNECT
 * proxy on the node's resolver address). A pod is a network namespace whose root may do what a
 * container with NET_ADMIN and NET_RAW may do; enforcement lives in the node namespace, so:
 * - CON-11: an app that ignores HTTPS_PROXY and connects directly meets the L3 sets (dropped),
 *   while the same app through the CONNECT proxy reaches the allowed name;
 * - L3-05: flushing the pod's own nftables ruleset and rewriting its routes changes nothing;
 * - L3-07: a TCP SYN crafted on a raw socket, or a whole Ethernet frame on AF_PACKET, still
 *   crosses the node's forward hook and is dropped (the unmanaged pod gets the SYN-ACK);
 * - K8S-06: glibc's parallel A + AAAA on one UDP socket (sendmmsg) through the DNS redirect are
 *   each answered once, so no query waits for a resolver retry (the conntrack insert race);
 * - SNI-10: domain fronting inside TLS passes the SNI proxy (a documented residual risk);
 * - L3-05 (class), K8S-04: the lab governs the pods' networks (datapath.sourceCIDRs): an address a
 *   pod adds from its subnet is unknown and gets nothing (dropped and counted, its DNS held for an
 *   identity that never comes, then refused),
 *   and a pod that sends with another pod's address is dropped at the node's reverse-path check;
 *   the unmanaged pod (known, no policy) still reaches everything.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { labExec } from '../../../src/lab/exec.ts';
import { findPod, type LabPlan, siteFor, statePaths } from '../../../src/lab/plan.ts';
import { findTool, run } from '../../../src/lab/run.ts';
import { skipUnless } from '../../support/requirements.ts';
import {
  assertDropped,
  assertServed,
  conntrackCount,
  DROP,
  dig,
  downLab,
  flowLog,
  http,
  kernelDrops,
  type LogLine,
  learnedKeys,
  skip,
  uniqueLabName,
  upLab,
  waitFor,
} from './helpers.ts';

/** Unique per run: two runs of this file at once (two engineers) must not share a lab. */
const NAME = uniqueLabName('esc');
const PAY = 'payments-api';
const CI = 'ci-runner';
const UNM = 'unmanaged';
const CONNECT_PORT = 3128;
const PYTHON = findTool('python3');

/**
 * Send one TCP SYN built by hand, from a raw IP socket ("raw") or as an Ethernet frame on an
 * AF_PACKET socket ("packet"), and report whether a SYN-ACK for it came back within 2 s.
 * argv: mode src dst dport [ifname gateway-mac]
 */
const RAW_SYN = String.raw`
import os, random, select, socket, struct, sys, time
mode, src, dst, dport = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sport = random.randint(20000, 60000)
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
S, D = socket.inet_aton(src), socket.inet_aton(dst)
tcp = struct.pack('!HHIIBBHHH', sport, dport, random.getrandbits(32), 0, 5 << 4, 0x02, 64240, 0, 0)
tcp = tcp[:16] + struct.pack('!H', csum(S + D + struct.pack('!BBH', 0, 6, len(tcp)) + tcp)) + tcp[18:]
ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(tcp), random.getrandbits(16), 0, 64, 6, 0, S, D)
ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
if mode == 'raw':
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).sendto(ip + tcp, (dst, 0))
else:
    ifname, gw = sys.argv[5], bytes.fromhex(sys.argv[6].replace(':', ''))
    me = bytes.fromhex(open('/sys/class/net/%s/address' % ifname).read().strip().replace(':', ''))
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    tx.bind((ifname, 0))
    tx.send(gw + me + b'\x08\x00' + ip + tcp)
deadline = time.time() + 2
while True:
    left = deadline - time.time()
    if left <= 0 or not select.select([rx], [], [], left)[0]: break
    pkt = rx.recv(65535)
    ihl = (pkt[0] & 15) * 4
    if pkt[12:16] != D: continue
    sp, dp = struct.unpack('!HH', pkt[ihl:ihl + 4])
    if sp == dport and dp == sport and pkt[ihl + 13] & 0x12 == 0x12:
        print('synack'); sys.exit(0)
print('none')
`;

describe('end to end: escapes from inside a pod', { skip, concurrency: false }, () => {
  let plan: LabPlan;
  let proxyUrl = '';
  const ip4 = (name: string) => {
    const a = siteFor(plan, name)?.ipv4[0];
    assert.ok(a, name);
    return a;
  };
  const ca = () => statePaths(plan).caCert;
  /** curl from a pod; `args` after the common ones. */
  const curl = (pod: string, args: readonly string[], timeoutS = 5) =>
    labExec(
      plan,
      pod,
      [
        'curl',
        '-sS',
        '--connect-timeout',
        String(timeoutS),
        '--max-time',
        String(timeoutS + 4),
        '--cacert',
        ca(),
        ...args,
      ],
      { timeoutMs: (timeoutS + 8) * 1000 },
    );
  const proxyLines = (from: number, component: string): LogLine[] =>
    flowLog(plan)
      .slice(from)
      .filter((l) => l['component'] === component && l['event'] === 'proxy');

  before(async () => {
    plan = await upLab(NAME, {
      config: (c) => ({
        ...c,
        proxy: {
          sni: { enabled: true },
          connect: { enabled: true, listen: [`${c.dns.listen[0]!.split(':')[0]}:${CONNECT_PORT}`] },
        },
      }),
    });
    proxyUrl = `http://${plan.resolver.ipv4}:${CONNECT_PORT}`;
  });
  after(async () => {
    await downLab(NAME);
  });

  it('CON-11: an app that ignores HTTPS_PROXY is dropped at L3; through the CONNECT proxy the allowed name works', async () => {
    const from = flowLog(plan).length;
    // Through the proxy: the allowed name (ci-runner may reach github.com on 443).
    const via = await curl(CI, ['--proxy', proxyUrl, 'https://github.com/']);
    assert.equal(via.code, 0, `through the CONNECT proxy: ${via.stderr}`);
    assert.equal(via.stdout.trim(), 'hello from github.com');
    // Through the proxy: a name the policy does not allow is refused by the proxy.
    const refused = await curl(CI, ['--proxy', proxyUrl, 'https://example.org/']);
    assert.notEqual(refused.code, 0, 'example.org through the proxy is refused');
    const lines = await waitFor('two CONNECT decisions', () => {
      const l = proxyLines(from, 'connect-proxy');
      return l.length >= 2 ? l : null;
    });
    assert.deepEqual(
      lines.map((l) => [l['authority'], l['dport'], l['verdict'], l['reason']]).slice(0, 2),
      [
        ['github.com', 443, 'allow', 'fqdn_rule'],
        ['example.org', 443, 'deny', 'name_not_allowed'],
      ],
      JSON.stringify(lines),
    );
    // The same app with HTTPS_PROXY set but ignoring it: straight to an address it never learned.
    const drops = await kernelDrops(plan, findPod(plan, CI).ipv4);
    const direct = await labExec(
      plan,
      CI,
      [
        'env',
        `HTTPS_PROXY=${proxyUrl}`,
        `https_proxy=${proxyUrl}`,
        'curl',
        '-sS',
        '--noproxy',
        '*',
        '--connect-timeout',
        '2',
        '--max-time',
        '6',
        '--cacert',
        ca(),
        '--resolve',
        `example.org:443:${ip4('example.org')}`,
        '-w',
        '\n%{http_code} %{remote_ip}',
        'https://example.org/',
      ],
      { timeoutMs: 12_000 },
    );
    assert.equal(
      direct.code,
      28,
      `direct egress must be dropped (connect timeout): ${direct.code} ${direct.stderr}`,
    );
    assert.ok((await kernelDrops(plan, findPod(plan, CI).ipv4)) > drops, 'counted as drops in the node');
    // Control: the unmanaged pod reaches it directly.
    assertServed(
      await http(plan, UNM, 'example.org', { via: ip4('example.org') }),
      'example.org',
      'unmanaged -> example.org',
    );
  });

  it("L3-05: a pod with NET_ADMIN flushing its own namespace's ruleset and routes changes nothing", async () => {
    const ci = findPod(plan, CI);
    const nodeTable = async () =>
      (
        await run(
          ['ip', 'netns', 'exec', plan.nodeNetns, 'nft', '-s', '-t', 'list', 'table', 'inet', 'namegate'],
          { timeoutMs: 10_000 },
        )
      ).stdout;
    const tableBefore = await nodeTable();
    // What a sidecar-style filter would put in the pod, and what the app then does to it.
    for (const argv of [
      ['nft', 'add table inet sidecar'],
      ['nft', 'add chain inet sidecar out { type filter hook output priority 0; policy drop; }'],
      ['nft', 'flush ruleset'],
      ['ip', 'route', 'replace', 'default', 'via', ci.gateway4, 'dev', 'eth0'],
      ['sysctl', '-qw', 'net.ipv4.ip_forward=1'],
    ]) {
      const r = await labExec(plan, CI, argv, { timeoutMs: 10_000 });
      assert.equal(r.code, 0, `${argv.join(' ')} inside the pod: ${r.stderr}`);
    }
    const left = await labExec(plan, CI, ['nft', 'list', 'ruleset'], { timeoutMs: 10_000 });
    assert.equal(left.stdout.trim(), '', "the pod's own ruleset is empty");
    // An on-link route to the internet range: the node is not a neighbour for those addresses,
    // so there is no path around it.
    const onLink = ['ip', '-n', ci.netns, 'route', '%s', '203.0.113.0/24', 'dev', 'eth0'];
    await run(
      onLink.map((a) => (a === '%s' ? 'add' : a)),
      { timeoutMs: 10_000 },
    );
    try {
      const r = await http(plan, CI, 'example.org', { via: ip4('example.org'), ...DROP });
      assert.notEqual(r.code, 0, `no path around the node: ${r.body}`);
    } finally {
      await run(
        onLink.map((a) => (a === '%s' ? 'del' : a)),
        { timeoutMs: 10_000 },
      );
    }
    const drops = await kernelDrops(plan, ci.ipv4);
    assertDropped(
      await http(plan, CI, 'example.org', { via: ip4('example.org'), ...DROP }),
      'ci-runner -> example.org after flushing its own rules',
    );
    assert.ok((await kernelDrops(plan, ci.ipv4)) > drops, 'dropped and counted in the node namespace');
    assertServed(await http(plan, CI, 'github.com'), 'github.com', 'the allowed name still works');
    assert.equal(await nodeTable(), tableBefore, "the node's table did not change");
  });

  /** The node table's named counters (datapath.sourceCIDRs): unknown and spoofed sources. */
  const sourceDrops = async (name: 'unknown' | 'spoofed'): Promise<number> => {
    const r = await run(
      ['ip', 'netns', 'exec', plan.nodeNetns, 'nft', '-j', 'list', 'counter', 'inet', 'namegate', name],
      { timeoutMs: 10_000 },
    );
    const doc = JSON.parse(r.stdout) as { nftables: Array<{ counter?: { packets?: number } }> };
    const c = doc.nftables.find((x) => x.counter)?.counter;
    assert.ok(c, `counter ${name} exists`);
    return c.packets ?? 0;
  };
  /** curl from `pod` with `--interface source` (an address the pod added to eth0). */
  const curlFrom = (pod: string, source: string, name: string) =>
    labExec(
      plan,
      pod,
      [
        'curl',
        '-sS',
        '--connect-timeout',
        '2',
        '--max-time',
        '6',
        '--interface',
        source,
        '--cacert',
        ca(),
        '--resolve',
        `${name}:443:${ip4(name)}`,
        `https://${name}/`,
      ],
      { timeoutMs: 12_000 },
    );
  /** Plain HTTP to the name's IPv6 address, sent from `source` (an address of the pod). */
  const http6From = (pod: string, source: string, name: string) =>
    labExec(
      plan,
      pod,
      [
        'curl',
        '-sS',
        '--connect-timeout',
        '2',
        '--max-time',
        '6',
        '--interface',
        source,
        `http://[${siteFor(plan, name)?.ipv6[0]}]/`,
      ],
      { timeoutMs: 12_000 },
    );
  /** Add addresses (CIDR text) to a pod's eth0; the returned function removes them again. */
  const claim = async (netns: string, cidrs: readonly string[]): Promise<() => Promise<void>> => {
    const ip = (verb: 'add' | 'del', cidr: string) =>
      run(
        ['ip', '-n', netns, ...(cidr.includes(':') ? ['-6'] : []), 'addr', verb, cidr, 'dev', 'eth0'].concat(
          verb === 'add' && cidr.includes(':') ? ['nodad'] : [],
        ),
        { timeoutMs: 10_000 },
      );
    for (const c of cidrs) await ip('add', c);
    return async () => {
      for (const c of cidrs) await ip('del', c);
    };
  };

  it('L3-05 (class), K8S-04: an address of its subnet that no identity knows gets nothing', async () => {
    const ci = findPod(plan, CI);
    const claimed = ci.ipv4.replace(/\.\d+$/, '.99');
    const claimed6 = ci.ipv6.replace(/::\d+$/, '::99');
    const release = await claim(ci.netns, [`${claimed}/24`, `${claimed6}/64`]);
    try {
      const before = await sourceDrops('unknown');
      // Before the fix this reached example.org with full TCP: no policy selects the address.
      const r = await curlFrom(CI, claimed, 'example.org');
      assert.equal(r.code, 28, `a connection from ${claimed} must be dropped: got ${r.code} ${r.stdout}`);
      // Not even what the pod's own address may reach (github.com on 443).
      const gh = await curlFrom(CI, claimed, 'github.com');
      assert.equal(gh.code, 28, `github.com from ${claimed}: got ${gh.code} ${gh.stdout}`);
      const v6 = await http6From(CI, claimed6, 'example.org');
      assert.equal(v6.code, 28, `IPv6 from ${claimed6}: got ${v6.code} ${v6.stdout}`);
      assert.ok((await sourceDrops('unknown')) > before, 'dropped and counted as unknown in the node');
      // Its DNS, to the node's resolver or to another one, is refused (never answered): held
      // for an identity that never comes (dns.unknownHoldMs, 2 s), then refused.
      const from = flowLog(plan).length;
      for (const server of [plan.resolver.ipv4, plan.otherResolver.ipv4]) {
        const d = await dig(plan, CI, 'github.com', 'A', { server, source: claimed, timeoutS: 6 });
        assert.match(d.raw, /status: REFUSED/, `DNS via ${server} from ${claimed}: ${d.raw}`);
      }
      const refused = await waitFor('the refusals in the flow log', () => {
        const l = flowLog(plan)
          .slice(from)
          .filter((x) => x['src'] === claimed);
        return l.length >= 2 ? l : null;
      });
      for (const l of refused) {
        assert.equal(l['verdict'], 'deny');
        assert.equal(l['reason'], 'unknown_source_timeout');
      }
      // The pod's own address is governed as before.
      assertServed(await http(plan, CI, 'github.com'), 'github.com', 'ci-runner -> github.com');
    } finally {
      await release();
    }
  });

  it("L3-05 (class): a pod sending with another pod's address is dropped at the node", async () => {
    const ci = findPod(plan, CI);
    const unm = findPod(plan, UNM);
    // The unmanaged pod may reach anything: its address is the prize.
    const release = await claim(ci.netns, [`${unm.ipv4}/32`, `${unm.ipv6}/128`]);
    try {
      const before = await sourceDrops('spoofed');
      const unknown = await sourceDrops('unknown');
      const r = await curlFrom(CI, unm.ipv4, 'example.org');
      assert.notEqual(r.code, 0, `spoofed ${unm.ipv4}: ${r.stdout}`);
      const d = await dig(plan, CI, 'example.org', 'A', {
        server: plan.otherResolver.ipv4,
        source: unm.ipv4,
      });
      assert.doesNotMatch(d.raw, /status: NOERROR/, 'no DNS answer for a spoofed source');
      const v6 = await http6From(CI, unm.ipv6, 'example.org');
      assert.notEqual(v6.code, 0, `spoofed ${unm.ipv6}: ${v6.stdout}`);
      assert.ok((await sourceDrops('spoofed')) >= before + 3, 'every spoofed packet was dropped and counted');
      assert.equal(await sourceDrops('unknown'), unknown, 'dropped at prerouting, before anything else');
      // No trace of the spoofed flows in the node's conntrack table: dropped before it.
      assert.equal(await conntrackCount(plan, ['-s', unm.ipv4, '-d', plan.otherResolver.ipv4]), 0);
    } finally {
      await release();
    }
    // The unmanaged pod itself (known, no policy selects it) still reaches everything.
    assertServed(
      await http(plan, UNM, 'example.org', { via: ip4('example.org') }),
      'example.org',
      'unmanaged -> example.org',
    );
    const free = await dig(plan, UNM, 'evil.example.com');
    assert.equal(free.status, 'NOERROR', 'the unmanaged pod resolves any name');
  });

  it('L3-07: a SYN crafted on a raw socket or sent as an AF_PACKET frame is dropped at the node', {
    skip: skip || skipUnless({ tools: ['python3'] }),
  }, async () => {
    const target = ip4('example.org');
    const gatewayMac = async (gateway: string): Promise<string> => {
      const r = await run(['ip', '-n', plan.nodeNetns, '-j', 'addr', 'show'], { timeoutMs: 10_000 });
      const links = JSON.parse(r.stdout) as Array<{ address: string; addr_info: Array<{ local: string }> }>;
      const link = links.find((l) => l.addr_info.some((a) => a.local === gateway));
      assert.ok(link, `the node's link with ${gateway}`);
      return link.address;
    };
    const syn = async (pod: string, mode: 'raw' | 'packet'): Promise<string> => {
      const p = findPod(plan, pod);
      const argv = [PYTHON!, '-c', RAW_SYN, mode, p.ipv4, target, '443'];
      if (mode === 'packet') argv.push('eth0', await gatewayMac(p.gateway4));
      const r = await labExec(plan, pod, argv, { timeoutMs: 10_000 });
      assert.equal(r.code, 0, `${mode} SYN from ${pod}: ${r.stderr}`);
      return r.stdout.trim();
    };
    const ci = findPod(plan, CI);
    for (const mode of ['raw', 'packet'] as const) {
      const drops = await kernelDrops(plan, ci.ipv4);
      assert.equal(await syn(UNM, mode), 'synack', `${mode}: the unmanaged pod gets the SYN-ACK (control)`);
      assert.equal(await syn(CI, mode), 'none', `${mode}: no SYN-ACK for ci-runner`);
      assert.ok(
        (await kernelDrops(plan, ci.ipv4)) > drops,
        `${mode}: the SYN was dropped and counted by the node`,
      );
    }
  });

  it('K8S-06: parallel A and AAAA on one UDP socket (glibc getaddrinfo) are each answered once, no retry', async () => {
    const pay = findPod(plan, PAY);
    const stripe = siteFor(plan, 'api.stripe.com');
    assert.ok(stripe);
    const conntrackTrouble = async (): Promise<number> => {
      const r = await run(['ip', 'netns', 'exec', plan.nodeNetns, 'conntrack', '-S'], { timeoutMs: 10_000 });
      let n = 0;
      for (const m of r.stdout.matchAll(/\b(insert_failed|drop)=(\d+)/g)) n += Number(m[2]);
      return n;
    };
    const trouble = await conntrackTrouble();
    const from = flowLog(plan).length;
    const N = 20;
    for (let i = 0; i < N; i++) {
      // getent ahosts: getaddrinfo(AF_UNSPEC), which sends A and AAAA together on one socket.
      const r = await labExec(plan, PAY, ['getent', 'ahosts', 'api.stripe.com'], { timeoutMs: 10_000 });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^${stripe.ipv4[0]!.replaceAll('.', '\\.')}\\s`, 'm'), r.stdout);
      assert.match(r.stdout, new RegExp(`^${stripe.ipv6[0]}\\s`, 'm'), r.stdout);
    }
    const count = (qtype: string) =>
      flowLog(plan)
        .slice(from)
        .filter((l) => l['src'] === pay.ipv4 && l['qname'] === 'api.stripe.com' && l['qtype'] === qtype);
    await waitFor('every answer in the flow log', () => count('A').length >= N && count('AAAA').length >= N);
    // Exactly one line per query: a dropped or stalled packet would show as a second query (the
    // resolver's retry), whatever the timing.
    assert.equal(count('A').length, N, 'one A query per lookup');
    assert.equal(count('AAAA').length, N, 'one AAAA query per lookup');
    for (const l of [...count('A'), ...count('AAAA')]) {
      assert.equal(l['verdict'], 'allow');
      assert.equal(l['transport'], 'udp');
    }
    assert.equal(await conntrackTrouble(), trouble, 'no conntrack insert failures or drops in the node');
  });

  it('SNI-10: domain fronting inside TLS passes the SNI proxy (documented residual risk)', async () => {
    const pay = findPod(plan, PAY);
    const from = flowLog(plan).length;
    const accessLog = path.join(statePaths(plan).logs, 'nginx-access.log');
    const logged = readFileSync(accessLog, 'utf8').split('\n').length;
    // SNI says api.stripe.com (allowed, learned); the encrypted Host names the CDN neighbour.
    const r = await curl(PAY, ['-H', 'Host: cdn-neighbour.example.net', 'https://api.stripe.com/']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'hello from cdn-neighbour.example.net', 'the neighbour answered');
    const line = await waitFor('the SNI proxy decision', () => proxyLines(from, 'sni-proxy')[0]);
    assert.equal(line['sni'], 'api.stripe.com', 'the proxy saw only the SNI');
    assert.equal(line['verdict'], 'allow');
    const served = readFileSync(accessLog, 'utf8')
      .split('\n')
      .slice(logged - 1);
    assert.ok(
      served.some((l) => l.includes('sni=api.stripe.com host=cdn-neighbour.example.net 200')),
      `nginx saw SNI and Host differ: ${served.join('\n')}`,
    );
    // The boundary: naming the neighbour in the SNI is refused (SNI-02), and the address stays
    // learned for api.stripe.com only.
    const named = await curl(PAY, [
      '--resolve',
      `cdn-neighbour.example.net:443:${ip4('api.stripe.com')}`,
      'https://cdn-neighbour.example.net/',
    ]);
    assert.notEqual(named.code, 0, 'SNI cdn-neighbour.example.net is refused');
    const d = await dig(plan, PAY, 'cdn-neighbour.example.net');
    assert.equal(d.status, 'REFUSED', 'and its name is not answered');
    assert.ok((await learnedKeys(plan, 4)).has(`${pay.ipv4} . ${ip4('api.stripe.com')} . tcp . 443`));
  });
});
