import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { validateConfig } from '../../../src/config/load.ts';
import { isNamegateError } from '../../../src/core/errors.ts';
import { CidrSet, parseCidr } from '../../../src/core/ip.ts';
import { agentConfigYaml, dnsRedirectTarget, labAgentConfig } from '../../../src/lab/agent-config.ts';
import { knotConfig, updateScript, zoneFile } from '../../../src/lab/knot-config.ts';
import { internetSockets, listenersConfig } from '../../../src/lab/lab.ts';
import { ipBatch, resolvConfs } from '../../../src/lab/netns.ts';
import { helloBody, nginxConfig, nginxSockets } from '../../../src/lab/nginx-config.ts';
import { labPlan, statePaths } from '../../../src/lab/plan.ts';
import { parseSs } from '../../../src/lab/sockets.ts';

const plan = labPlan('unit');
const SECRET = 'c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0cw==';

describe('knot configuration', () => {
  it('listens on the upstream addresses and accepts TSIG-signed updates only', () => {
    const conf = knotConfig(plan, SECRET);
    assert.match(conf, /listen: \[ 198\.51\.100\.53@53, 2001:db8:100::53@53 \]/);
    assert.match(conf, new RegExp(`secret: ${SECRET.replace(/[+/=]/g, '\\$&')}`));
    assert.match(conf, /action: update/);
    assert.match(conf, /key: lab-update/);
    assert.ok(conf.includes(plan.stateDir), 'every path lives in the state dir');
    assert.ok(!/\/etc\/|\/var\//.test(conf), 'no system paths');
  });

  it('writes one root zone with every record', () => {
    const z = zoneFile(plan);
    assert.match(z, /^\. 3600 IN SOA /m);
    assert.match(z, /^api\.stripe\.com\. 300 IN A 203\.0\.113\.10$/m);
    assert.match(z, /^api\.stripe\.com\. 300 IN AAAA 2001:db8:113::10$/m);
    assert.match(z, /^www\.example\.org\. 300 IN CNAME edge\.example\.net\.$/m);
    assert.match(z, /^short\.example\.com\. 5 IN A /m);
    assert.match(z, /^internal\.example\.com\. 300 IN A 10\.0\.0\.5$/m);
    assert.equal(z.trimEnd().split('\n').length, 4 + plan.records.length);
  });

  it('makes update scripts that replace records', () => {
    const s = updateScript(plan, SECRET, [
      { name: 'moving.example.com', type: 'A', data: ['203.0.113.111'], ttl: 30 },
    ]);
    assert.match(s, /^server 198\.51\.100\.53 53$/m);
    assert.match(s, /^key hmac-sha256:lab-update /m);
    assert.match(s, /^update delete moving\.example\.com\. A$/m);
    assert.match(s, /^update add moving\.example\.com\. 30 A 203\.0\.113\.111$/m);
    assert.match(s, /^send$/m);
    const cname = updateScript(plan, SECRET, [
      { name: 'www.example.org', type: 'CNAME', data: ['example.org'] },
    ]);
    assert.match(cname, /CNAME example\.org\.$/m);
  });

  it('refuses update data that could smuggle a command or is not of its type', () => {
    const bad = [
      { name: 'moving.example.com', type: 'A' as const, data: ['203.0.113.1\nupdate delete . SOA'] },
      { name: 'moving.example.com', type: 'A' as const, data: ['2001:db8::1'] },
      { name: 'moving.example.com', type: 'AAAA' as const, data: ['203.0.113.1'] },
      { name: 'Moving.example.com', type: 'A' as const, data: [] },
      { name: 'x y.example.com', type: 'A' as const, data: [] },
      { name: 'moving.example.com', type: 'TXT' as const, data: ['a\nb'] },
      { name: 'moving.example.com', type: 'A' as const, data: [], ttl: -1 },
    ];
    for (const c of bad) {
      assert.throws(
        () => updateScript(plan, SECRET, [c]),
        (e: unknown) => isNamegateError(e, 'NG_USAGE_INVALID'),
      );
    }
  });
});

describe('nginx configuration', () => {
  const conf = nginxConfig(plan);

  it('has one server per name with its certificate and a body naming it', () => {
    for (const site of plan.sites) {
      for (const name of site.names) {
        assert.ok(conf.includes(`server_name ${name};`), name);
        assert.ok(conf.includes(`${statePaths(plan).ca}/${name}.crt`), name);
        assert.ok(conf.includes(`return 200 "${helloBody(name)}\\n"`), name);
      }
    }
    assert.match(conf, /listen 203\.0\.113\.10:443 ssl;/);
    assert.match(conf, /listen \[2001:db8:113::10\]:443 ssl;/);
    assert.match(conf, /listen 203\.0\.113\.111:80;/, 'spare addresses serve too');
    assert.match(conf, /daemon off;/);
    assert.ok(!/\/var\/|\/etc\//.test(conf), 'no system paths');
  });

  it('lists the sockets it will listen on', () => {
    const s = nginxSockets(plan);
    assert.ok(s.includes('203.0.113.10:443') && s.includes('[2001:db8:113::10]:80'));
    assert.equal(new Set(s).size, s.length);
  });
});

describe('internet daemons', () => {
  it('puts the escape listeners where the tests expect them', () => {
    const l = listenersConfig(plan);
    assert.ok(l.quic.addresses.includes('203.0.113.10') && l.quic.addresses.includes('2001:db8:113::10'));
    assert.equal(l.quic.port, 443);
    assert.deepEqual(l.dot.addresses, [plan.otherResolver.ipv4, plan.otherResolver.ipv6]);
    assert.equal(l.dot.port, 853);
    assert.equal(l.dns.answer4, plan.otherResolverAnswer.ipv4);
    const socks = internetSockets(plan);
    assert.ok(socks.includes('udp 198.51.100.53:53') && socks.includes('tcp [2001:db8:100::53]:53'));
    assert.ok(socks.includes('udp 198.51.100.54:53') && socks.includes('tcp 198.51.100.54:853'));
    assert.ok(socks.includes('udp [2001:db8:113::10]:443'));
  });

  it('reads ss output', () => {
    const text = [
      'udp   UNCONN 0      0           198.51.100.53:53        0.0.0.0:*',
      'tcp   LISTEN 0      511      [2001:db8:113::10]:443        [::]:*',
      'garbage',
      '',
    ].join('\n');
    assert.deepEqual([...parseSs(text)], ['udp 198.51.100.53:53', 'tcp [2001:db8:113::10]:443']);
  });
});

describe('namespace configuration', () => {
  it('configures each namespace in one batch: addresses, links up, then routes', () => {
    const node = ipBatch(plan, plan.nodeNetns);
    assert.ok(node.includes('address add 10.10.0.53/32 dev lo'));
    assert.ok(node.includes('address add fd00:10::53/128 dev lo nodad'));
    assert.ok(node.includes('link set to-inet up') && node.includes('link set lo up'));
    assert.ok(node.includes('route add default via 10.254.0.2'));
    assert.ok(node.includes('route add ::/0 via fd00:254::2'));
    const firstRoute = node.findIndex((l) => l.startsWith('route'));
    const lastAddr = node.findLastIndex((l) => l.startsWith('address'));
    assert.ok(lastAddr < firstRoute);
    const pod = ipBatch(plan, plan.pods[0]!.netns);
    assert.ok(pod.includes(`address add ${plan.pods[0]!.ipv4}/24 dev eth0`));
  });

  it('points pods at the node resolver and the node and internet at knot', () => {
    const r = resolvConfs(plan);
    for (const p of plan.pods) assert.match(r.get(p.netns) ?? '', /^nameserver 10\.10\.0\.53$/m);
    assert.match(r.get(plan.nodeNetns) ?? '', /^nameserver 198\.51\.100\.53$/m);
    assert.equal(r.size, plan.namespaces.length);
  });
});

describe('agent configuration', () => {
  it('has one static source group per pod, the resolver, the upstream and the policies', () => {
    const c = labAgentConfig(plan, ['/x/examples']);
    assert.deepEqual(c.dns.listen, ['10.10.0.53:53', '[fd00:10::53]:53']);
    assert.deepEqual(c.dns.upstreams, ['198.51.100.53:53']);
    assert.ok(c.dns.flowLog.path.startsWith(plan.stateDir));
    assert.equal(c.sources.length, plan.pods.length);
    const web = c.sources.find((s) => s.name === 'web');
    assert.deepEqual(web, {
      name: 'web',
      namespace: 'web',
      labels: { app: 'web' },
      namespaceLabels: { 'egress-audit': 'on' },
      cidrs: ['10.10.3.2/32', 'fd00:10:3::2/128'],
    });
    assert.deepEqual(c.policies, ['/x/examples']);
    assert.deepEqual(dnsRedirectTarget(plan), { ipv4: '10.10.0.53', ipv6: 'fd00:10::53', port: 53 });
    assert.deepEqual(parse(agentConfigYaml(plan, c)), c);
  });

  it("governs the pods' networks by default: every pod address is inside sourceCIDRs (L3-05)", () => {
    const c = labAgentConfig(plan, ['/x/examples']);
    assert.deepEqual(c.datapath?.sourceCIDRs, ['10.10.0.0/16', 'fd00:10::/32']);
    const scope = new CidrSet(
      (c.datapath?.sourceCIDRs ?? []).map((t) => {
        const p = parseCidr(t);
        assert.ok(typeof p !== 'string', t);
        return p;
      }),
    );
    for (const p of plan.pods) {
      assert.ok(scope.has(p.ipv4) && scope.has(p.ipv6), p.id);
      // Unassigned addresses of a pod's subnet are inside too: they are the bypass this closes.
      assert.ok(scope.has(p.ipv4.replace(/\.\d+$/, '.99')), p.id);
    }
    assert.ok(!scope.has(plan.upstream.ipv4) && !scope.has(plan.upstream.ipv6));
    const loaded = validateConfig(JSON.parse(JSON.stringify(c)), '/', 'lab agent config');
    assert.deepEqual(loaded.datapath.sourceCIDRs, ['10.10.0.0/16', 'fd00:10::/32']);
    assert.equal(loaded.datapath.antiSpoof, true);
  });

  it('loads with the agent config schema', () => {
    const c = labAgentConfig(plan, ['/x/examples']);
    const loaded = validateConfig(JSON.parse(JSON.stringify(c)), '/', 'lab agent config');
    assert.deepEqual(loaded.policies, ['/x/examples']);
    assert.equal(loaded.sources.length, plan.pods.length);
    assert.deepEqual(loaded.dns.listen, c.dns.listen);
  });
});
