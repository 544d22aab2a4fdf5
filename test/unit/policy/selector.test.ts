/**
 * Label selectors with the Kubernetes API server's semantics
 * (k8s.io/apimachinery/pkg/labels: LabelSelectorAsSelector).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  compileSelector,
  type LabelSelector,
  type Labels,
  labelKeyProblem,
  parseLabelList,
  selectAll,
  validateSelector,
} from '../../../src/policy/selector.ts';

const pods: Record<string, Labels> = {
  web: { app: 'web', tier: 'front' },
  api: { app: 'api', tier: 'back', team: 'payments' },
  batch: { app: 'batch' },
  bare: {},
  emptyValue: { app: '' },
};

/** The names of the pods the selector selects. */
function selected(selector: LabelSelector | null | undefined): string[] {
  const s = compileSelector(selector);
  return Object.entries(pods)
    .filter(([, labels]) => s(labels))
    .map(([name]) => name)
    .sort();
}

describe('selector semantics', () => {
  const all = Object.keys(pods).sort();
  const table: Array<[string, LabelSelector | null | undefined, string[]]> = [
    ['absent selector selects everything', undefined, all],
    ['null selector selects everything', null, all],
    ['empty selector selects everything', {}, all],
    [
      'empty matchLabels and matchExpressions select everything',
      { matchLabels: {}, matchExpressions: [] },
      all,
    ],
    ['matchLabels: one pair', { matchLabels: { app: 'web' } }, ['web']],
    ['matchLabels: every pair must match', { matchLabels: { app: 'api', tier: 'back' } }, ['api']],
    ['matchLabels: a pair no pod has', { matchLabels: { app: 'api', tier: 'front' } }, []],
    ['matchLabels: an empty value matches only an empty value', { matchLabels: { app: '' } }, ['emptyValue']],
    [
      'In: key present with a listed value',
      { matchExpressions: [{ key: 'app', operator: 'In', values: ['web', 'batch'] }] },
      ['batch', 'web'],
    ],
    [
      'In: an absent key never matches',
      { matchExpressions: [{ key: 'team', operator: 'In', values: ['payments', 'x'] }] },
      ['api'],
    ],
    [
      'NotIn: absent key matches, listed value does not',
      { matchExpressions: [{ key: 'app', operator: 'NotIn', values: ['web', 'api'] }] },
      ['bare', 'batch', 'emptyValue'],
    ],
    [
      'NotIn on a key nobody has selects everyone',
      { matchExpressions: [{ key: 'zone', operator: 'NotIn', values: ['a'] }] },
      all,
    ],
    [
      'Exists: the key is present (any value, even empty)',
      { matchExpressions: [{ key: 'app', operator: 'Exists' }] },
      ['api', 'batch', 'emptyValue', 'web'],
    ],
    [
      'DoesNotExist: the key is absent',
      { matchExpressions: [{ key: 'tier', operator: 'DoesNotExist' }] },
      ['bare', 'batch', 'emptyValue'],
    ],
    [
      'requirements are ANDed',
      {
        matchExpressions: [
          { key: 'app', operator: 'Exists' },
          { key: 'tier', operator: 'NotIn', values: ['front'] },
        ],
      },
      ['api', 'batch', 'emptyValue'],
    ],
    [
      'matchLabels and matchExpressions together',
      {
        matchLabels: { tier: 'back' },
        matchExpressions: [{ key: 'team', operator: 'In', values: ['payments'] }],
      },
      ['api'],
    ],
    [
      'contradictory requirements select nothing',
      {
        matchExpressions: [
          { key: 'app', operator: 'Exists' },
          { key: 'app', operator: 'DoesNotExist' },
        ],
      },
      [],
    ],
  ];
  for (const [what, selector, want] of table) {
    test(what, () => assert.deepEqual(selected(selector), want));
  }

  test('inherited object properties are not labels', () => {
    const s = compileSelector({ matchExpressions: [{ key: 'constructor', operator: 'Exists' }] });
    assert.equal(s({}), false);
    const t = compileSelector({ matchExpressions: [{ key: 'toString', operator: 'DoesNotExist' }] });
    assert.equal(t({}), true);
    const u = compileSelector({
      matchExpressions: [{ key: 'hasOwnProperty', operator: 'NotIn', values: ['x'] }],
    });
    assert.equal(u({}), true);
  });

  test('selectAll selects anything', () => {
    assert.equal(selectAll({}), true);
    assert.equal(compileSelector({}), selectAll);
  });
});

describe('selector validation', () => {
  test('a valid selector has no problems', () => {
    assert.deepEqual(
      validateSelector(
        {
          matchLabels: { app: 'web', 'app.kubernetes.io/name': 'x', 'example.com/team': '' },
          matchExpressions: [
            { key: 'tier', operator: 'In', values: ['a', 'b-c', 'D.e_f'] },
            { key: 'k8s.io/zone', operator: 'Exists' },
          ],
        },
        'spec.podSelector',
      ),
      [],
    );
  });

  test('problems carry the field path', () => {
    const problems = validateSelector(
      {
        matchLabels: { 'bad key!': 'x', app: 'not valid!' },
        matchExpressions: [
          { key: 'tier', operator: 'In', values: [] },
          { key: 'tier', operator: 'NotIn' },
          { key: 'x', operator: 'Exists', values: ['a'] },
          { key: 'x', operator: 'DoesNotExist', values: ['a'] },
          { key: '-x', operator: 'Exists' },
          { key: 'Bad_Prefix/x', operator: 'Exists' },
          { key: 'tier', operator: 'In', values: ['ok', '-bad', 'a'.repeat(64)] },
        ],
      },
      'spec.podSelector',
    );
    assert.deepEqual(problems, [
      [
        'spec.podSelector.matchLabels',
        'label key "bad key!" is invalid (1..63 letters, digits, "-", "_", ".", alphanumeric at both ends)',
      ],
      ['spec.podSelector.matchLabels.app', '"not valid!" is not a valid label value'],
      ['spec.podSelector.matchExpressions[0].values', 'operator In needs at least one value'],
      ['spec.podSelector.matchExpressions[1].values', 'operator NotIn needs at least one value'],
      ['spec.podSelector.matchExpressions[2].values', 'operator Exists takes no values'],
      ['spec.podSelector.matchExpressions[3].values', 'operator DoesNotExist takes no values'],
      [
        'spec.podSelector.matchExpressions[4].key',
        'label key "-x" is invalid (1..63 letters, digits, "-", "_", ".", alphanumeric at both ends)',
      ],
      [
        'spec.podSelector.matchExpressions[5].key',
        'label key "Bad_Prefix/x" has an invalid prefix (a DNS subdomain is expected)',
      ],
      ['spec.podSelector.matchExpressions[6].values[1]', '"-bad" is not a valid label value'],
      ['spec.podSelector.matchExpressions[6].values[2]', `"${'a'.repeat(64)}" is not a valid label value`],
    ]);
  });

  test('label keys: name part 1..63, prefix a DNS subdomain', () => {
    assert.equal(labelKeyProblem('a'), null);
    assert.equal(labelKeyProblem('a'.repeat(63)), null);
    assert.match(labelKeyProblem('a'.repeat(64)) ?? '', /is invalid/);
    assert.equal(labelKeyProblem('kubernetes.io/metadata.name'), null);
    assert.match(labelKeyProblem('/x') ?? '', /invalid prefix/);
    assert.match(labelKeyProblem('a/') ?? '', /is invalid/);
    assert.match(labelKeyProblem('') ?? '', /is invalid/);
  });
});

describe('parseLabelList (the CLI --labels form)', () => {
  test('k=v pairs, spaces and empty items ignored', () => {
    assert.deepEqual(parseLabelList('app=web, tier=front,,'), { app: 'web', tier: 'front' });
    assert.deepEqual(parseLabelList(''), {});
    assert.deepEqual(parseLabelList('app='), { app: '' });
    assert.deepEqual(parseLabelList('app.kubernetes.io/name=x'), { 'app.kubernetes.io/name': 'x' });
  });

  test('bad items say what to fix', () => {
    assert.throws(() => parseLabelList('app'), /label "app" must be written key=value/);
    assert.throws(() => parseLabelList('=web'), /must be written key=value/);
    assert.throws(() => parseLabelList('app=a=b'), /"a=b" is not a valid label value/);
    assert.throws(() => parseLabelList('bad key=x'), /label key "bad key" is invalid/);
  });
});
