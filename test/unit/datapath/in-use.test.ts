/**
 * TIME-06, "in use" from conntrack: the listing of a source's live flows (a fake `conntrack` prints real
 * lines), read at most once per maxAgeMs, and fail safe (everything in use) when it cannot be
 * read.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { ManualClock } from '../../../src/core/clock.ts';
import { Conntrack } from '../../../src/datapath/conntrack.ts';
import { ConntrackInUse } from '../../../src/datapath/in-use.ts';
import { silentLogger } from '../../../src/observe/log.ts';
import { capturedLog } from '../sync/helpers.ts';

const LISTING = [
  'tcp      6 431999 ESTABLISHED src=10.0.1.5 dst=203.0.113.10 sport=40000 dport=443 src=203.0.113.10 dst=10.0.1.5 sport=443 dport=40000 [ASSURED] mark=0 use=1',
  'tcp      6 100 TIME_WAIT src=10.0.1.5 dst=203.0.113.11 sport=40001 dport=443 src=203.0.113.11 dst=10.0.1.5 sport=443 dport=40001 [ASSURED] mark=0 use=1',
  'tcp      6 10 CLOSE src=10.0.1.5 dst=203.0.113.12 sport=40002 dport=443 src=203.0.113.12 dst=10.0.1.5 sport=443 dport=40002 mark=0 use=1',
  'udp      17 28 src=10.0.1.5 dst=203.0.113.13 sport=40003 dport=443 src=203.0.113.13 dst=10.0.1.5 sport=443 dport=40003 mark=0 use=1',
  'tcp      6 60 SYN_SENT src=fd00:1::5 dst=2001:db8::14 sport=40004 dport=443 [UNREPLIED] src=2001:db8::14 dst=fd00:1::5 sport=443 dport=40004 mark=0 use=1',
].join('\n');

/** A fake conntrack printing LISTING for `-L`; `fail` makes it exit 1 with an error. */
function fake(t: TestContext, fail = false): { ct: Conntrack; calls: () => string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'ng-inuse-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const log = join(dir, 'log');
  writeFileSync(log, '');
  const list = join(dir, 'list');
  writeFileSync(list, `${LISTING}\n`);
  const bin = join(dir, 'conntrack');
  writeFileSync(
    bin,
    `#!/bin/sh
echo "$*" >> '${log}'
if [ ${fail ? 1 : 0} = 1 ]; then echo "conntrack v1.4.7 (conntrack-tools): Operation not permitted" >&2; exit 1; fi
case "$*" in
  *"-s 10.0.1.5"*) grep 'src=10.0.1.5 ' '${list}';;
  *"-s fd00:1::5"*) grep 'src=fd00:1::5 ' '${list}';;
esac
echo "conntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown." >&2
exit 0
`,
  );
  chmodSync(bin, 0o755);
  return { ct: new Conntrack({ binary: bin }), calls: () => readFileSync(log, 'utf8').trim().split('\n') };
}

describe('Conntrack.liveDestinations', () => {
  test('live TCP and UDP flows count; TIME_WAIT and CLOSE do not', async (t) => {
    const { ct, calls } = fake(t);
    const r = await ct.liveDestinations(['10.0.1.5', 'fd00:1::5']);
    assert.ok(r.ok);
    assert.deepEqual([...r.destinations].sort(), ['2001:db8::14', '203.0.113.10', '203.0.113.13']);
    assert.deepEqual(calls(), ['-L -f ipv4 -s 10.0.1.5', '-L -f ipv6 -s fd00:1::5']);
  });

  test('a failing conntrack is reported, never taken for "no flows"', async (t) => {
    const { ct } = fake(t, true);
    const r = await ct.liveDestinations(['10.0.1.5']);
    assert.equal(r.ok, false);
    assert.match(r.ok ? '' : r.error, /Operation not permitted/);
  });
});

describe('ConntrackInUse', () => {
  test('answers from one listing per source and maxAgeMs, with the siblings flows', async (t) => {
    const { ct, calls } = fake(t);
    const clock = new ManualClock();
    const u = new ConntrackInUse({
      conntrack: ct,
      clock,
      log: silentLogger(),
      sourcesOf: (ip) => (ip === '10.0.1.5' ? ['10.0.1.5', 'fd00:1::5'] : [ip]),
      maxAgeMs: 1000,
    });
    await Promise.all([u.prepare('10.0.1.5'), u.prepare('10.0.1.5')]);
    assert.equal(u.inUse('10.0.1.5', '203.0.113.10'), true);
    assert.equal(u.inUse('10.0.1.5', '2001:db8::14'), true, 'a sibling address flow counts');
    assert.equal(u.inUse('10.0.1.5', '203.0.113.11'), false, 'TIME_WAIT is over');
    assert.equal(u.inUse('10.0.1.5', '198.51.100.1'), false);
    clock.advance(500);
    await u.prepare('10.0.1.5');
    assert.equal(calls().length, 2, 'one listing (two addresses) while it is fresh');
    clock.advance(600);
    assert.equal(u.inUse('10.0.1.5', '198.51.100.1'), true, 'stale: fail safe');
    await u.prepare('10.0.1.5');
    assert.equal(calls().length, 4);
    assert.equal(u.inUse('10.0.1.5', '198.51.100.1'), false);
  });

  test('without a listing, or when conntrack fails, everything counts as in use (logged)', async (t) => {
    const { ct } = fake(t, true);
    const { log, lines } = capturedLog();
    const reads: string[] = [];
    const u = new ConntrackInUse({
      conntrack: ct,
      clock: new ManualClock(),
      log,
      reads: { inc: (l) => reads.push(l.result) },
    });
    assert.equal(u.inUse('10.0.1.5', '198.51.100.1'), true, 'never read: in use');
    await u.prepare('10.0.1.5');
    assert.equal(u.inUse('10.0.1.5', '198.51.100.1'), true);
    assert.deepEqual(reads, ['error']);
    const line = lines().find((l) => l['reason'] === 'in_use_unknown');
    assert.equal(line?.['src'], '10.0.1.5');
  });
});
