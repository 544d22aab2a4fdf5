import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../../src/core/clock.ts';
import type { AllowElement } from '../../../src/datapath/datapath.ts';
import { DatapathMetrics } from '../../../src/datapath/metrics.ts';
import { NftDatapath, RANGE_REMOVALS_PER_TXN } from '../../../src/datapath/nft-driver.ts';
import type { NftExecutor, NftOutputOptions, NftResult } from '../../../src/datapath/nft-executor.ts';
import { createRegistry } from '../../../src/observe/metrics.ts';

/** Records commands; listings answer "no such table" unless told otherwise. */
class FakeExecutor implements NftExecutor {
  readonly kind = 'addon' as const;
  readonly runs: { commands: string; options: NftOutputOptions }[] = [];
  fail: string | null = null;

  async run(commands: string, options: NftOutputOptions = {}): Promise<NftResult> {
    this.runs.push({ commands, options });
    if (commands.startsWith('list ')) return { ok: false, out: '', err: 'Error: No such file or directory' };
    if (this.fail) return { ok: false, out: '', err: this.fail };
    return { ok: true, out: '', err: '' };
  }

  async close(): Promise<void> {}

  get writes(): string[] {
    return this.runs.filter((r) => !r.commands.startsWith('list ')).map((r) => r.commands);
  }
}

const el = (port: number, timeoutMs = 30_000): AllowElement => ({
  source: '10.0.0.1',
  destination: '203.0.113.10',
  protocol: 'TCP',
  portFrom: port,
  portTo: port,
  timeoutMs,
});

async function driver(exec = new FakeExecutor()) {
  const registry = createRegistry();
  const metrics = new DatapathMetrics(registry);
  const dp = await NftDatapath.open({ executor: exec, clock: new ManualClock(), metrics, conntrack: null });
  return { dp, exec, registry };
}

test('REL-04: reconcile is one transaction', async () => {
  const { dp, exec } = await driver();
  await dp.reconcile({ sources: [{ ip: '10.0.0.1', mode: 'Enforce' }], cidrs: [], verify: [] });
  assert.equal(exec.writes.length, 1);
  assert.match(exec.writes[0] ?? '', /^add table inet namegate\n/);
  await dp.close();
});

test("a repeated answer with the same timeout restarts the element's life (explicit expires)", async () => {
  const exec = new FakeExecutor();
  const clock = new ManualClock();
  const dp = await NftDatapath.open({ executor: exec, clock, conntrack: null });
  await dp.learn([el(443, 30_000)]);
  clock.advance(10_000);
  await dp.learn([el(443, 30_000)]);
  const adds = exec.writes.filter((w) => w.includes('tcp . 443'));
  // The kernel keeps the old expiry when only an equal `timeout` is sent: both must carry it.
  assert.equal(adds.length, 2, adds.join('\n'));
  for (const w of adds) assert.match(w, /tcp \. 443 timeout 30000ms expires 30000ms \}/);
  await dp.close();
});

test('timeout 0 is clamped to the minimum and counted', async () => {
  const { dp, exec, registry } = await driver();
  await dp.learn([el(443, 0), el(444, Number.NaN), el(445, 10 * 24 * 3600 * 1000)]);
  const w = exec.writes.join('\n');
  assert.match(w, /203\.0\.113\.10 \. tcp \. 443 timeout 1000ms/);
  assert.match(w, /tcp \. 444 timeout 1000ms/);
  assert.match(w, /tcp \. 445 timeout 604800000ms/);
  assert.doesNotMatch(w, /timeout 0/);
  assert.doesNotMatch(w, /expires 0/);
  const text = await registry.metrics();
  assert.match(text, /namegate_datapath_timeouts_clamped_total\{reason="below_min"\} 2/);
  assert.match(text, /namegate_datapath_timeouts_clamped_total\{reason="above_max"\} 1/);
  await dp.close();
});

test('a failed commit rejects with NG_DATAPATH_COMMIT and nft text; nothing is believed committed', async () => {
  const { dp, exec, registry } = await driver();
  exec.fail = 'Error: Could not process rule: Too many open files in system';
  await assert.rejects(dp.learn([el(443)]), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'NG_DATAPATH_COMMIT');
    assert.match(e.message, /Too many open files/);
    return true;
  });
  exec.fail = null;
  await dp.learn([el(443)]);
  assert.match(exec.writes.at(-1) ?? '', /tcp \. 443 timeout/, 'the element is sent again after the failure');
  assert.match(await registry.metrics(), /namegate_datapath_commit_errors_total\{op="learn"\} 1/);
  await dp.close();
});

test('malformed elements are rejected before the kernel', async () => {
  const { dp, exec } = await driver();
  const bad: AllowElement[] = [
    { ...el(1), destination: '2001:db8::1' },
    { ...el(1), source: 'x' },
    { ...el(1), portFrom: 9, portTo: 3 },
    { ...el(1), protocol: 'ICMP' as never },
  ];
  for (const b of bad)
    await assert.rejects(dp.learn([b]), (e: Error & { code?: string }) => e.code === 'NG_DATAPATH_COMMIT');
  assert.equal(exec.writes.length, 0);
  await dp.close();
});

test('an element already committed with a longer life is not re-sent; forget sends add+delete', async () => {
  const { dp, exec } = await driver();
  await dp.learn([el(443, 60_000)]);
  const n = exec.writes.length;
  await dp.learn([el(443, 1_000)]);
  assert.equal(exec.writes.length, n);
  await dp.forget([
    { source: '10.0.0.1', destination: '203.0.113.10', protocol: 'TCP', portFrom: 443, portTo: 443 },
  ]);
  assert.match(
    exec.writes.at(-1) ?? '',
    /^add element .* timeout 1s }\ndelete element inet namegate allow4 \{ 10\.0\.0\.1 \. 203\.0\.113\.10 \. tcp \. 443 }$/,
  );
  await dp.close();
});

test('drop counters: one row per owned range, owner and mode from the comment (or the audit set)', async () => {
  const set = (name: string, elem: unknown[]) =>
    JSON.stringify({
      nftables: [
        { set: { family: 'inet', name, table: 'namegate', type: 'ipv4_addr', flags: ['interval'], elem } },
      ],
    });
  const listings: Record<string, string> = {
    drops4: set('drops4', [
      {
        elem: {
          val: { prefix: { addr: '10.0.1.0', len: 31 } },
          comment: 'Enforce 10.0.1.0/24',
          counter: { packets: 3, bytes: 1 },
        },
      },
      { elem: { val: '10.0.1.2', comment: 'Audit 10.0.1.2', counter: { packets: 5, bytes: 1 } } },
      {
        elem: {
          val: { range: ['10.0.1.3', '10.0.1.255'] },
          comment: 'Enforce 10.0.1.0/24',
          counter: { packets: 4, bytes: 1 },
        },
      },
      // Written by an older driver: no comment.
      { elem: { val: { prefix: { addr: '10.0.9.0', len: 24 } }, counter: { packets: 1, bytes: 1 } } },
      { elem: { val: '10.0.8.1', counter: { packets: 2, bytes: 1 } } },
    ]),
    audit4: set('audit4', ['10.0.1.2', { prefix: { addr: '10.0.9.0', len: 24 } }]),
  };
  const exec: NftExecutor = {
    kind: 'addon',
    run: async (commands: string) => {
      const name = /^list set inet namegate (\w+)$/.exec(commands)?.[1] ?? '';
      const out = listings[name];
      return out
        ? { ok: true, out, err: '' }
        : { ok: false, out: '', err: 'Error: No such file or directory' };
    },
    close: async () => {},
  };
  const registry = createRegistry();
  const metrics = new DatapathMetrics(registry);
  const dp = await NftDatapath.open({ executor: exec, clock: new ManualClock(), metrics, conntrack: null });
  assert.deepEqual(await dp.readDropCounters(), [
    { source: '10.0.1.0/24', range: '10.0.1.0-10.0.1.1', mode: 'Enforce', packets: 3 },
    { source: '10.0.1.2', range: '10.0.1.2', mode: 'Audit', packets: 5 },
    { source: '10.0.1.0/24', range: '10.0.1.3-10.0.1.255', mode: 'Enforce', packets: 4 },
    { source: '10.0.8.1', range: '10.0.8.1', mode: 'Enforce', packets: 2 },
    { source: '10.0.9.0/24', range: '10.0.9.0-10.0.9.255', mode: 'Audit', packets: 1 },
  ]);
  // The metric sums a source's ranges.
  const text = await registry.metrics();
  assert.match(text, /namegate_datapath_dropped_packets_total\{source="10\.0\.1\.0\/24",mode="Enforce"\} 7/);
  assert.match(text, /namegate_datapath_dropped_packets_total\{source="10\.0\.1\.2",mode="Audit"\} 5/);
  await dp.close();
});

test('many range removals are spread over transactions of at most RANGE_REMOVALS_PER_TXN', async () => {
  const { dp, exec } = await driver();
  const n = RANGE_REMOVALS_PER_TXN * 2 + 10;
  const ranges = Array.from({ length: n }, (_, i) => ({
    source: '10.0.0.1',
    destination: `203.0.113.${i % 250}`,
    protocol: 'TCP' as const,
    portFrom: 1000 + Math.floor(i / 250) * 10,
    portTo: 1005 + Math.floor(i / 250) * 10,
  }));
  await dp.learn(ranges.map((r) => ({ ...r, timeoutMs: 60_000 })));
  const before = exec.writes.length;
  await dp.forget(ranges);
  const writes = exec.writes.slice(before);
  assert.equal(writes.length, 3);
  const deletes = (w: string) => (w.match(/^delete element/gm) ?? []).length;
  const elements = (w: string) =>
    w
      .split('\n')
      .filter((l) => l.startsWith('delete element'))
      .reduce((k, l) => k + l.split(',').length, 0);
  assert.ok(writes.every((w) => deletes(w) >= 1));
  assert.deepEqual(writes.map(elements), [RANGE_REMOVALS_PER_TXN, 10, RANGE_REMOVALS_PER_TXN]);
  await dp.close();
});
