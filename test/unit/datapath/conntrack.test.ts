/** conntrack command lines, against a fake `conntrack` that logs its arguments. */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { Conntrack } from '../../../src/datapath/conntrack.ts';

const LISTING = [
  'udp      17 20 src=10.0.1.5 dst=10.96.0.10 sport=40000 dport=53 src=10.96.0.10 dst=10.0.1.5 sport=53 dport=40000 mark=0 use=1',
  'udp      17 20 src=10.0.3.5 dst=10.96.0.10 sport=40001 dport=53 src=10.96.0.10 dst=10.0.3.5 sport=53 dport=40001 mark=0 use=1',
  'udp      17 20 src=10.0.1.200 dst=10.96.0.11 sport=40002 dport=53 [UNREPLIED] src=10.96.0.11 dst=10.0.1.200 sport=53 dport=40002 mark=0 use=1',
].join('\n');

/**
 * A fake conntrack; `masks` says whether it takes ADDR/LEN, `batch` whether it takes `-R FILE`
 * (each line read is logged as a call; one entry is "deleted" per line). Returns it and its
 * call log.
 */
function fake(t: TestContext, masks: boolean, batch = true): { ct: Conntrack; calls: () => string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'ng-ct-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const log = join(dir, 'log');
  const list = join(dir, 'list');
  writeFileSync(list, `${LISTING}\n`);
  writeFileSync(log, '');
  const bin = join(dir, 'conntrack');
  writeFileSync(
    bin,
    `#!/bin/sh
case "$1" in -R) echo "-R FILE" >> '${log}';; *) echo "$*" >> '${log}';; esac
case "$*" in
  "-R "*)
    if [ ${batch ? 1 : 0} = 0 ]; then echo "conntrack v1.4.5 (conntrack-tools): invalid option -- 'R'" >&2; exit 2; fi
    while read -r line; do echo "$line" >> '${log}'; echo "udp 17 20 src=10.0.1.5 dst=10.96.0.10 sport=1 dport=53"; done < "$2"; exit 0;;
  *192.0.2.0/24*)
    if [ ${masks ? 1 : 0} = 1 ]; then echo "conntrack v1.4.7 (conntrack-tools): 0 flow entries have been shown." >&2; exit 0; fi
    echo "conntrack v1.4.4 (conntrack-tools): Bad parameter" >&2; exit 2;;
  "-L -f ipv4 -p udp --dport 53") cat '${list}'; echo "conntrack: 3 flow entries have been shown." >&2; exit 0;;
  -L*) echo "conntrack: 0 flow entries have been shown." >&2; exit 0;;
  -D*) echo "conntrack v1.4.7 (conntrack-tools): 1 flow entries have been deleted." >&2; exit 0;;
esac
exit 1
`,
  );
  chmodSync(bin, 0o755);
  return {
    ct: new Conntrack({ binary: bin }),
    calls: () => readFileSync(log, 'utf8').trim().split('\n').filter(Boolean),
  };
}

test('flushDns: a few sources go to one conntrack process, a CIDR as a mask when it takes one', async (t) => {
  const { ct, calls } = fake(t, true);
  const r = await ct.flushDns(['10.0.1.0/24', 'fd00::/64', '10.0.2.7']);
  assert.deepEqual(r.errors, []);
  assert.equal(r.deleted, 6);
  assert.deepEqual(calls().slice(1), [
    '-R FILE',
    '-D -f ipv4 -s 10.0.1.0/24 -p udp --dport 53',
    '-D -f ipv4 -s 10.0.1.0/24 -p tcp --dport 53',
    '-D -f ipv6 -s fd00::/64 -p udp --dport 53',
    '-D -f ipv6 -s fd00::/64 -p tcp --dport 53',
    '-D -f ipv4 -s 10.0.2.7 -p udp --dport 53',
    '-D -f ipv4 -s 10.0.2.7 -p tcp --dport 53',
  ]);
});

test('flushDns: without mask support, the DNS entries are listed and their sources deleted address by address', async (t) => {
  const { ct, calls } = fake(t, false);
  const r = await ct.flushDns(['10.0.1.0/24', '10.0.2.7']);
  assert.deepEqual(r.errors, []);
  const c = calls();
  assert.match(c[0] ?? '', /192\.0\.2\.0\/24/);
  assert.deepEqual(c.slice(1), [
    '-L -f ipv4 -p udp --dport 53',
    '-L -f ipv4 -p tcp --dport 53',
    '-R FILE',
    '-D -f ipv4 -s 10.0.1.5 -p udp --dport 53',
    '-D -f ipv4 -s 10.0.1.200 -p udp --dport 53',
  ]);
  // The probe runs once per Conntrack.
  await ct.flushDns(['10.0.9.0/24']);
  assert.equal(calls().filter((x) => x.includes('192.0.2.0/24')).length, 1);
});

test('flushDns: many sources (a first start) cost one listing per family and protocol and one merged-prefix deletion (K8S-05)', async (t) => {
  const { ct, calls } = fake(t, true);
  // Hundreds of prefixes, as the source CIDRs minus the known ungoverned addresses come to.
  const sources = [
    '10.0.1.0/25',
    '10.0.1.192/26',
    ...Array.from({ length: 200 }, (_, i) => `10.0.${4 + (i >> 6)}.${(i & 63) * 4}/30`),
  ];
  const r = await ct.flushDns(sources);
  assert.deepEqual(r.errors, []);
  assert.deepEqual(calls().slice(1), [
    '-L -f ipv4 -p udp --dport 53',
    '-L -f ipv4 -p tcp --dport 53',
    '-R FILE',
    // 10.0.1.5 and 10.0.1.200 in one prefix: 10.0.3.5 (not newly governed) is outside it.
    '-D -f ipv4 -s 10.0.1.0/24 -p udp --dport 53',
  ]);
  assert.equal(r.deleted, 1);
});

test('flushDns: 1,000 newly governed pods are not 2,000 conntrack commands', async (t) => {
  const { ct, calls } = fake(t, true);
  const sources = Array.from({ length: 1000 }, (_, i) => `10.0.${i >> 8}.${i & 255}`);
  await ct.flushDns(sources);
  assert.ok(calls().length <= 8, calls().join('\n'));
});

test('flushDns: a conntrack without -R gets the same deletions one process each', async (t) => {
  const { ct, calls } = fake(t, true, false);
  const r = await ct.flushDns(['10.0.2.7']);
  assert.deepEqual(r.errors, []);
  assert.equal(r.deleted, 2);
  assert.deepEqual(calls(), [
    '-R FILE',
    '-D -f ipv4 -s 10.0.2.7 -p udp --dport 53',
    '-D -f ipv4 -s 10.0.2.7 -p tcp --dport 53',
  ]);
});

test('deleteFlows: UDP also ends flows the peer opened towards the source', async (t) => {
  const { ct, calls } = fake(t, true);
  await ct.deleteFlows([
    { source: '10.0.1.5', destination: '203.0.113.10', protocol: 'UDP', from: 443, to: 444 },
    { source: '10.0.1.5', destination: '203.0.113.10', protocol: 'TCP', from: 0, to: 65535 },
  ]);
  assert.deepEqual(calls(), [
    '-D -f ipv4 -s 10.0.1.5 -d 203.0.113.10 -p udp --dport 443',
    '-D -f ipv4 -s 10.0.1.5 -d 203.0.113.10 -p udp --dport 444',
    '-D -f ipv4 -s 203.0.113.10 -d 10.0.1.5 -p udp --sport 443',
    '-D -f ipv4 -s 203.0.113.10 -d 10.0.1.5 -p udp --sport 444',
    '-D -f ipv4 -s 10.0.1.5 -d 203.0.113.10 -p tcp',
  ]);
});
