import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import { describe, it } from 'node:test';
import { isNamegateError } from '../../../src/core/errors.ts';
import { classifyAddress, ipToBytes, parseCidr } from '../../../src/core/ip.ts';
import { findPod, labPlan, MAX_IFNAME, siteFor, validateLabName } from '../../../src/lab/plan.ts';

function hostOf(cidr: string): string {
  return cidr.slice(0, cidr.indexOf('/'));
}

function samePrefix(a: string, b: string, prefix: number): boolean {
  if (isIP(a) !== isIP(b)) return false;
  const x = ipToBytes(a);
  const y = ipToBytes(b);
  for (let bit = 0; bit < prefix; bit++) {
    const mask = 0x80 >> (bit % 8);
    if (((x[bit >> 3] ?? 0) & mask) !== ((y[bit >> 3] ?? 0) & mask)) return false;
  }
  return true;
}

/** Is ip inside a prefix configured on a link (not loopback) of that namespace? */
function onLink(plan: ReturnType<typeof labPlan>, netns: string, ip: string): boolean {
  return plan.addresses.some((a) => {
    if (a.netns !== netns || a.dev === 'lo') return false;
    const [addr, len] = a.cidr.split('/');
    return samePrefix(addr!, ip, Number(len)) && addr !== ip;
  });
}

describe('lab plan', () => {
  const plan = labPlan('demo');

  it('is deterministic', () => {
    assert.deepEqual(labPlan('demo'), plan);
    assert.equal(JSON.stringify(labPlan('x1')), JSON.stringify(labPlan('x1')));
  });

  it('uses the lab name only in namespace names and the state dir', () => {
    const other = labPlan('other');
    assert.deepEqual(
      other.addresses.map((a) => a.cidr),
      plan.addresses.map((a) => a.cidr),
    );
    assert.deepEqual(plan.namespaces, [
      'ng-demo-node',
      'ng-demo-inet',
      'ng-demo-payments-api',
      'ng-demo-ci-runner',
      'ng-demo-web',
      'ng-demo-unmanaged',
    ]);
    for (const ns of other.namespaces) assert.ok(ns.startsWith('ng-other-'));
    assert.equal(plan.stateDir, '/run/namegate/lab/demo');
    assert.equal(labPlan('demo', { stateRoot: '/tmp/x' }).stateDir, '/tmp/x/demo');
  });

  it('keeps interface names within 15 bytes and unique per namespace', () => {
    const seen = new Set<string>();
    for (const v of plan.veths) {
      for (const end of [v.a, v.b]) {
        assert.ok(Buffer.byteLength(end.ifname) <= MAX_IFNAME, end.ifname);
        const key = `${end.netns}/${end.ifname}`;
        assert.ok(!seen.has(key), key);
        seen.add(key);
        assert.ok(plan.namespaces.includes(end.netns));
      }
      assert.notEqual(v.a.netns, v.b.netns);
    }
  });

  it('gives every address once, valid and canonical', () => {
    const hosts = plan.addresses.map((a) => hostOf(a.cidr));
    assert.equal(new Set(hosts).size, hosts.length);
    for (const a of plan.addresses) {
      const parsed = parseCidr(`${hostOf(a.cidr)}`);
      assert.notEqual(typeof parsed, 'string', a.cidr);
      assert.ok(plan.namespaces.includes(a.netns));
    }
  });

  it('puts pods on private and ULA addresses, one link each', () => {
    const v4 = plan.pods.map((p) => p.ipv4);
    const v6 = plan.pods.map((p) => p.ipv6);
    assert.equal(new Set(v4).size, plan.pods.length);
    assert.equal(new Set(v6).size, plan.pods.length);
    for (const p of plan.pods) {
      assert.equal(classifyAddress(p.ipv4), 'private');
      assert.equal(classifyAddress(p.ipv6), 'private');
      assert.ok(onLink(plan, p.netns, p.gateway4), p.gateway4);
      assert.ok(onLink(plan, p.netns, p.gateway6), p.gateway6);
    }
  });

  it('serves the internet from public-looking documentation ranges that namegate may learn', () => {
    for (const s of plan.sites) {
      for (const ip of [...s.ipv4, ...s.spare4]) {
        assert.ok(ip.startsWith('203.0.113.'), ip);
        assert.equal(classifyAddress(ip), 'public');
      }
      for (const ip of [...s.ipv6, ...s.spare6]) {
        assert.ok(ip.startsWith('2001:db8:'), ip);
        assert.equal(classifyAddress(ip), 'public');
      }
    }
    for (const ip of [plan.upstream.ipv4, plan.otherResolver.ipv4, plan.otherResolverAnswer.ipv4]) {
      assert.ok(ip.startsWith('198.51.100.'), ip);
    }
  });

  it('routes every gateway on-link', () => {
    for (const r of plan.routes) {
      assert.equal(isIP(r.via), r.family);
      assert.ok(onLink(plan, r.netns, r.via), `${r.netns} ${r.to} via ${r.via}`);
    }
  });

  it('turns forwarding on in the node namespace only', () => {
    const fwd = plan.sysctls.filter((s) => s.key.includes('forward'));
    assert.ok(fwd.length >= 2);
    for (const s of fwd) assert.equal(s.netns, plan.nodeNetns);
    for (const s of plan.sysctls) assert.ok(plan.namespaces.includes(s.netns));
  });

  it('has a DNS record for every site name, served on an internet address', () => {
    const served = new Set(
      plan.addresses.filter((a) => a.netns === plan.inetNetns).map((a) => hostOf(a.cidr)),
    );
    for (const s of plan.sites) {
      for (const name of s.names) {
        const a = plan.records.filter((r) => r.name === name && r.type === 'A').map((r) => r.data);
        const aaaa = plan.records.filter((r) => r.name === name && r.type === 'AAAA').map((r) => r.data);
        assert.deepEqual(a, s.ipv4);
        assert.deepEqual(aaaa, s.ipv6);
        for (const ip of [...a, ...aaaa, ...s.spare4, ...s.spare6]) assert.ok(served.has(ip), ip);
      }
    }
    assert.ok(served.has(plan.upstream.ipv4) && served.has(plan.upstream.ipv6));
    assert.ok(served.has(plan.otherResolver.ipv4) && served.has(plan.otherResolver.ipv6));
  });

  it('covers the names the example policies use, and the negative cases', () => {
    for (const n of [
      'api.stripe.com',
      'github.com',
      'objects.githubusercontent.com',
      'raw.githubusercontent.com',
      'registry.npmjs.org',
      'deb.debian.org',
      'pypi.org',
      'files.pythonhosted.org',
      'evil.example.com',
      'cdn-neighbour.example.net',
      'edge.example.net',
    ]) {
      assert.ok(siteFor(plan, n), n);
    }
    assert.deepEqual(siteFor(plan, 'api.stripe.com')?.ipv4, siteFor(plan, 'cdn-neighbour.example.net')?.ipv4);
    const cname = plan.records.find((r) => r.name === 'www.example.org');
    assert.deepEqual(cname && [cname.type, cname.data], ['CNAME', 'edge.example.net']);
    const internal = plan.records.find((r) => r.name === 'internal.example.com');
    assert.equal(internal?.data, '10.0.0.5');
    assert.equal(siteFor(plan, 'short.example.com')?.ttl, 5);
    assert.ok((siteFor(plan, 'moving.example.com')?.spare4.length ?? 0) > 0);
  });

  it('finds pods by id or namespace and names the choices otherwise', () => {
    assert.equal(findPod(plan, 'web').namespace, 'web');
    assert.equal(findPod(plan, 'ng-demo-ci-runner').id, 'ci-runner');
    assert.throws(
      () => findPod(plan, 'nope'),
      (e: unknown) => isNamegateError(e, 'NG_USAGE_INVALID') && /payments-api/.test((e as Error).message),
    );
  });

  it('rejects bad and reserved lab names', () => {
    for (const bad of ['', 'Demo', 'a-b', '1abc', 'abcdefghijklm', 'a b', '../x', 't']) {
      assert.notEqual(validateLabName(bad), null, bad);
      assert.throws(
        () => labPlan(bad),
        (e: unknown) => isNamegateError(e, 'NG_USAGE_INVALID'),
      );
    }
    for (const good of ['demo', 'x', 'lab1', 'tour', 'abcdefghijkl'])
      assert.equal(validateLabName(good), null, good);
  });
});
