/**
 * The NFLOG reader against the real kernel: an nft `log group` rule in a namespace of the test's
 * own copies packets to user space, read through the addon and through tcpdump, both giving the
 * same prefix and 5-tuple. A second reader of a bound group fails (the kernel says EPERM) instead
 * of reading nothing.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openNflog } from '../../../src/datapath/nflog-reader.ts';
import { type NflogPacket, packetTuple } from '../../../src/datapath/nflog-wire.ts';
import { Netns, waitFor } from '../netns.ts';

const GROUP = 7;

async function loggingNamespace(t: Parameters<typeof Netns.create>[0]): Promise<Netns> {
  const ns = await Netns.create(t);
  await ns.run(['ip', 'addr', 'add', 'fd00:77::1/128', 'dev', 'lo', 'nodad']);
  await ns.run(['nft', '-f', '-'], {
    input: `table inet ngtest {
  chain out {
    type filter hook output priority 0; policy accept;
    udp dport 9 log group ${GROUP} snaplen 96 prefix "namegate-drop "
    tcp dport 9 log group ${GROUP} snaplen 96 prefix "namegate-audit "
  }
}
`,
  });
  return ns;
}

async function sendUdp(ns: Netns, host: string, sport: number): Promise<void> {
  await ns.exec(['nc', '-u', '-w0', '-p', String(sport), host, '9'], { input: 'x', timeoutMs: 5000 });
}

for (const method of ['addon', 'tcpdump'] as const) {
  test(`NFLOG through the ${method}: prefix and 5-tuple of IPv4, IPv6, UDP and TCP`, async (t) => {
    const ns = await loggingNamespace(t);
    const got: NflogPacket[] = [];
    const reader = await openNflog({
      group: GROUP,
      netns: ns.name,
      method,
      flushMs: 20,
      onPackets: (p) => got.push(...p),
    });
    t.after(() => reader.close());
    assert.equal(reader.method, method);
    await sendUdp(ns, '127.0.0.1', 40001);
    await sendUdp(ns, 'fd00:77::1', 40002);
    await ns.exec(['nc', '-z', '-w1', '127.0.0.1', '9'], { timeoutMs: 5000 });
    await waitFor('three logged packets', () => got.length >= 3, 10_000);
    const tuples = got.map((p) => ({ prefix: p.prefix, ...packetTuple(p.payload) }));
    const udp4 = tuples.find((x) => x.family === 4 && x.proto === 'udp');
    assert.deepEqual(udp4, {
      prefix: 'namegate-drop ',
      family: 4,
      src: '127.0.0.1',
      dst: '127.0.0.1',
      proto: 'udp',
      sport: 40001,
      dport: 9,
    });
    const udp6 = tuples.find((x) => x.family === 6);
    assert.equal(udp6?.src, 'fd00:77::1');
    assert.equal(udp6?.dst, 'fd00:77::1');
    assert.equal(udp6?.sport, 40002);
    const tcp = tuples.find((x) => x.proto === 'tcp');
    assert.equal(tcp?.prefix, 'namegate-audit ');
    assert.equal(tcp?.dport, 9);
    assert.equal(got[0]?.group, GROUP);
    assert.equal(reader.stats.malformed, 0);
  });
}

test('a second reader of a bound group fails (EPERM: bound by another socket); closing frees the group', async (t) => {
  const ns = await loggingNamespace(t);
  const first = await openNflog({ group: GROUP, netns: ns.name, method: 'addon', onPackets: () => {} });
  t.after(() => first.close());
  await assert.rejects(
    openNflog({ group: GROUP, netns: ns.name, method: 'addon', onPackets: () => {} }),
    (err: Error & { errno?: number }) => err.errno === 1 && /bind group/.test(err.message),
  );
  await first.close();
  const got: NflogPacket[] = [];
  const again = await openNflog({
    group: GROUP,
    netns: ns.name,
    method: 'addon',
    flushMs: 20,
    onPackets: (p) => got.push(...p),
  });
  t.after(() => again.close());
  await sendUdp(ns, '127.0.0.1', 40003);
  await waitFor('the packet after reopening', () => got.length >= 1, 10_000);
});
