import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { groupProblems, type SourceGroup, StaticGroups } from '../../../src/identity/static-groups.ts';

const g = (name: string, cidrs: string[], labels: Record<string, string> = {}): SourceGroup => ({
  name,
  namespace: 'gw',
  labels,
  cidrs,
});

describe('StaticGroups (gateway identity)', () => {
  const groups = new StaticGroups([
    g('vpc', ['10.0.0.0/8'], { zone: 'any' }),
    g('ci', ['10.0.1.0/24', '2001:db8:1::/48'], { role: 'runner' }),
    g('one', ['10.0.1.7/32']),
    g('v6host', ['2001:db8:1:2::5/128']),
  ]);

  test('longest prefix wins', () => {
    assert.equal(groups.lookup('10.0.1.7')?.key, 'group:one');
    assert.equal(groups.lookup('10.0.1.8')?.key, 'group:ci');
    assert.equal(groups.lookup('10.9.9.9')?.key, 'group:vpc');
    assert.equal(groups.lookup('2001:db8:1::9')?.key, 'group:ci');
    assert.equal(groups.lookup('2001:db8:1:2::5')?.key, 'group:v6host');
  });

  test('unknown and non-addresses are undefined', () => {
    assert.equal(groups.lookup('192.0.2.1'), undefined);
    assert.equal(groups.lookup('2001:db9::1'), undefined);
    assert.equal(groups.lookup('not-an-ip'), undefined);
    assert.equal(groups.lookup('192.0.2.1'), undefined, 'cached miss');
  });

  test('identities carry namespace, labels and the namespace name label', () => {
    const id = groups.lookup('10.0.1.8')!;
    assert.equal(id.namespace, 'gw');
    assert.deepEqual(id.labels, { role: 'runner' });
    assert.equal(id.namespaceLabels['kubernetes.io/metadata.name'], 'gw');
    assert.equal(
      groups.lookup('10.0.1.9'),
      id,
      'one identity object per group (policy selections are cached by it)',
    );
  });

  test('entries are CIDRs', () => {
    assert.deepEqual(
      [...groups.entries()].map(([cidr, id]) => `${cidr}=${id.key}`),
      [
        '10.0.0.0/8=group:vpc',
        '10.0.1.0/24=group:ci',
        '2001:db8:1::/48=group:ci',
        '10.0.1.7/32=group:one',
        '2001:db8:1:2::5/128=group:v6host',
      ],
    );
  });

  test('equal prefixes in two groups are rejected; nested ones are fine', () => {
    assert.deepEqual(
      groupProblems([g('a', ['10.0.0.0/16']), g('b', ['10.0.0.0/16'])]).map((p) => p.path),
      ['[1].cidrs[0]'],
    );
    assert.throws(() => new StaticGroups([g('a', ['10.0.0.0/16']), g('b', ['10.0.0.0/16'])]), {
      code: 'NG_CONFIG_INVALID',
    });
    assert.deepEqual(groupProblems([g('a', ['10.0.0.0/16']), g('b', ['10.0.0.0/17'])]), []);
  });

  test('bad CIDRs and duplicate names are reported with their path', () => {
    const problems = groupProblems([g('a', ['10.0.0.1/16', 'nonsense']), g('a', ['10.1.0.0/16'])]);
    assert.deepEqual(
      problems.map((p) => p.path),
      ['[0].cidrs[0]', '[0].cidrs[1]', '[1].name'],
    );
    assert.match(problems[0]!.message, /host bits/);
  });

  test('replace swaps groups and tells listeners', () => {
    const s = new StaticGroups([g('a', ['10.0.0.0/16'])]);
    let told = 0;
    const off = s.onChange(() => told++);
    assert.equal(s.lookup('10.0.0.1')?.key, 'group:a');
    s.replace([g('b', ['10.0.0.0/16'])]);
    assert.equal(s.lookup('10.0.0.1')?.key, 'group:b');
    off();
    s.replace([]);
    assert.equal(told, 1);
    assert.equal(s.lookup('10.0.0.1'), undefined);
  });
});
