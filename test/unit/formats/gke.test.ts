/**
 * GKE FQDNNetworkPolicy import: GKE's "*." is exactly one label, the same as namegate's, stated
 * with GKE's documented examples.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { canonicalName } from '../../../src/core/names.ts';
import { Conversion } from '../../../src/formats/foreign-common.ts';
import { gkeImporter, gkePatternToNative } from '../../../src/formats/gke.ts';
import { SOURCE_ANNOTATION } from '../../../src/formats/importer.ts';
import { parsePattern, patternMatches } from '../../../src/policy/pattern.ts';
import {
  type Case,
  compile,
  expectDecisions,
  expectProblem,
  load,
  loadYaml,
  pod,
  roundTrip,
} from './helpers.ts';

describe('GKE allow-external-api example', async () => {
  const report = await load('gke', 'allow-external-api.yaml');
  const set = compile(report);
  const service = pod('app', { app: 'my-service' });
  const cases: Case[] = [
    ['api.stripe.com', 'TCP', 443, 'allow'],
    ['api.stripe.com', 'TCP', 80, 'deny'],
    ['stripe.com', 'TCP', 443, 'deny'],
    ['storage.googleapis.com', 'TCP', 443, 'allow'],
    // Exactly one label in front.
    ['a.storage.googleapis.com', 'TCP', 443, 'deny'],
    ['googleapis.com', 'TCP', 443, 'deny'],
  ];

  test('an EgressPolicy in the same namespace with the same podSelector', () => {
    const doc = report.documents[0]?.document;
    assert.equal(doc?.kind, 'EgressPolicy');
    assert.equal(doc?.metadata.namespace, 'app');
    assert.equal(doc?.metadata.name, 'allow-external-api');
    assert.equal(
      doc?.metadata.annotations?.[SOURCE_ANNOTATION],
      'networking.gke.io/v1alpha1 FQDNNetworkPolicy app/allow-external-api',
    );
    assert.equal(report.warnings.length, 0, 'nothing is lost');
  });

  test('decisions', () => {
    expectDecisions(set, service, cases);
    assert.equal(set.selection(pod('app', { app: 'other' })).mode, null);
    assert.equal(set.selection(pod('web', { app: 'my-service' })).mode, null);
  });

  test('round trip through YAML keeps every decision', () => {
    expectDecisions(roundTrip(report), service, cases);
  });
});

describe('GKE documentation: *.company.com', async () => {
  const report = await load('gke', 'company.yaml');
  const set = compile(report);
  test('matches api.company.com and store.company.com, not eu.api.company.com or company.com', () => {
    expectDecisions(set, pod('corp', { any: 'pod' }), [
      ['api.company.com', 'TCP', 443, 'allow'],
      ['store.company.com', 'UDP', 53, 'allow'],
      ['eu.api.company.com', 'TCP', 443, 'deny'],
      ['company.com', 'TCP', 443, 'deny'],
    ]);
  });
});

describe('the archived controller’s v1alpha3 schema', async () => {
  const report = await load('gke', 'oss-v1alpha3.yaml');
  const set = compile(report);
  test('to[].fqdns and NetworkPolicy ports (protocol defaults to TCP, endPort)', () => {
    expectDecisions(set, pod('legacy', { role: 'example' }), [
      ['example.com', 'TCP', 443, 'allow'],
      ['www.example.com', 'TCP', 443, 'deny'],
      ['ntp.example.org', 'UDP', 123, 'allow'],
      ['ntp.example.org', 'TCP', 4005, 'allow'],
      ['ntp.example.org', 'UDP', 4005, 'deny'],
    ]);
    expectProblem(
      report.warnings,
      'example',
      'metadata.annotations.fqdnnetworkpolicies.networking.gke.io/aaaa-lookups',
      /not kept/,
    );
  });
});

describe('the archived controller’s v1alpha1 (to[].fqdns under GKE’s apiVersion)', async () => {
  const report = await load('gke', 'oss-v1alpha1.yaml');
  const set = compile(report);
  test('is imported as the controller reads it, never as a deny-all', () => {
    assert.equal(report.documents.length, 2);
    expectDecisions(set, pod('legacy', { app: 'any' }), [
      ['github.com', 'TCP', 443, 'allow'],
      ['gitlab.com', 'TCP', 443, 'allow'],
      ['github.com', 'UDP', 443, 'deny'],
      ['www.github.com', 'TCP', 443, 'deny'],
    ]);
    expectProblem(
      report.warnings,
      'fqdnnetworkpolicy-valid',
      'apiVersion',
      /archived open-source controller/,
    );
  });
  test('an empty protocol is TCP, as the controller’s webhook defaults it', () => {
    const noProtocol = compile({
      ...report,
      policies: report.policies.filter((p) => p.policy.ref.name === 'fqdnnetworkpolicy-valid-noprotocol'),
    });
    expectDecisions(noProtocol, pod('legacy', { app: 'noprotocol' }), [
      ['github.com', 'TCP', 443, 'allow'],
      ['github.com', 'UDP', 443, 'deny'],
    ]);
  });
  test('matches and to[].fqdns in one document: an error, not a guess', () => {
    const mixed = loadYaml(
      'apiVersion: networking.gke.io/v1alpha1\nkind: FQDNNetworkPolicy\nmetadata: {name: mixed, namespace: a}\n' +
        'spec:\n  podSelector: {}\n  egress:\n  - matches: [{name: a.example.com}]\n  - to: [{fqdns: [b.example.com]}]\n',
    );
    assert.equal(mixed.documents.length, 0);
    expectProblem(mixed.errors, 'mixed', 'spec.egress', /mixes/);
  });
  test('GKE’s managed schema with protocol "" is TCP too', () => {
    const managed = loadYaml(
      'apiVersion: networking.gke.io/v1alpha1\nkind: FQDNNetworkPolicy\nmetadata: {name: m, namespace: a}\n' +
        'spec:\n  podSelector: {}\n  egress:\n  - matches: [{name: a.example.com}]\n    ports: [{port: 443, protocol: ""}]\n',
    );
    assert.deepEqual(managed.errors, []);
    expectDecisions(compile(managed), pod('a'), [
      ['a.example.com', 'TCP', 443, 'allow'],
      ['a.example.com', 'UDP', 443, 'deny'],
    ]);
  });
});

describe('broken FQDNNetworkPolicies', async () => {
  const report = await load('gke', 'broken/malformed.yaml', true);
  test('give errors with field paths and no policies', () => {
    assert.equal(report.policies.length, 0);
    const expected: Array<[string, string, RegExp]> = [
      ['inner-star', 'matches[0].pattern', /one wildcard form/],
      ['star-in-name', 'matches[0].name', /use pattern/],
      ['bad-protocol', 'ports[0].protocol', /expected TCP/],
      ['matches-not-a-list', 'spec.egress[0].matches', /expected a list/],
      ['bad-selector', 'spec.podSelector.matchLabels', /invalid/],
      ['bad-version', 'apiVersion', /not supported/],
    ];
    for (const [object, path, message] of expected) expectProblem(report.errors, object, path, message);
  });

  test('arbitrary values anywhere never throw', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('spec', 'podSelector', 'egress', 'rule', 'matches', 'match', 'ports', 'port'),
        fc.jsonValue({ maxDepth: 3 }),
        (where, junk) => {
          const port: Record<string, unknown> = { port: 443, protocol: 'TCP' };
          const rule: Record<string, unknown> = { matches: [{ pattern: '*.example.com' }], ports: [port] };
          const spec: Record<string, unknown> = { podSelector: {}, egress: [rule] };
          const doc: Record<string, unknown> = {
            apiVersion: 'networking.gke.io/v1alpha1',
            kind: 'FQDNNetworkPolicy',
            metadata: { name: 'p', namespace: 'ns' },
            spec,
          };
          if (where === 'spec') doc['spec'] = junk;
          else if (where === 'podSelector' || where === 'egress') spec[where] = junk;
          else if (where === 'rule') spec['egress'] = [junk];
          else if (where === 'match') rule['matches'] = [junk];
          else if (where === 'port') port['port'] = junk;
          else rule[where] = junk;
          const result = gkeImporter.convert(doc, { defaultNamespace: 'default' });
          if (result.errors.length > 0) assert.equal(result.documents.length, 0);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('the archived controller’s schema under arbitrary values', () => {
  test('never throws; an error never comes with a policy; never a policy without its rules', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(
          'networking.gke.io/v1alpha1',
          'networking.gke.io/v1alpha2',
          'networking.gke.io/v1alpha3',
        ),
        fc.constantFrom('rule', 'to', 'peer', 'fqdns', 'ports', 'protocol', 'policyTypes', 'matches'),
        fc.jsonValue({ maxDepth: 3 }),
        (apiVersion, where, junk) => {
          const port: Record<string, unknown> = { port: 443, protocol: 'TCP' };
          const peer: Record<string, unknown> = { fqdns: ['example.com'] };
          const rule: Record<string, unknown> = { to: [peer], ports: [port] };
          const spec: Record<string, unknown> = { podSelector: {}, egress: [rule] };
          if (where === 'rule') spec['egress'] = [junk];
          else if (where === 'to') rule['to'] = junk;
          else if (where === 'peer') rule['to'] = [junk];
          else if (where === 'fqdns') peer['fqdns'] = junk;
          else if (where === 'ports') rule['ports'] = junk;
          else if (where === 'protocol') port['protocol'] = junk;
          else if (where === 'policyTypes') spec['policyTypes'] = junk;
          else rule['matches'] = junk;
          const doc = {
            apiVersion,
            kind: 'FQDNNetworkPolicy',
            metadata: { name: 'p', namespace: 'ns' },
            spec,
          };
          const result = gkeImporter.convert(doc, { defaultNamespace: 'default' });
          if (result.errors.length > 0) assert.equal(result.documents.length, 0);
          // Untouched (matches: null is absent): the rule is kept, whatever the version.
          if (where === 'matches' && junk === null) {
            assert.deepEqual(result.errors, []);
            assert.equal(result.documents[0]?.spec?.egress?.length, 1);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('pattern conversion agrees with GKE’s one-label meaning', () => {
  test('on random names', () => {
    const labels = ['a', 'b', 'api', 'eu', 'company', 'com'];
    const name = fc.array(fc.constantFrom(...labels), { minLength: 1, maxLength: 5 }).map((l) => l.join('.'));
    const suffix = fc
      .array(fc.constantFrom(...labels), { minLength: 2, maxLength: 3 })
      .map((l) => l.join('.'));
    fc.assert(
      fc.property(suffix, fc.array(name, { minLength: 1, maxLength: 20 }), (s, names) => {
        const native = gkePatternToNative(new Conversion(), `*.${s}`, 'p');
        assert.ok(native);
        const p = parsePattern(native, { allowPublicSuffixWildcards: true });
        assert.ok(!(p instanceof Error));
        for (const n of names) {
          const expected = n.endsWith(`.${s}`) && n.split('.').length === s.split('.').length + 1;
          assert.equal(patternMatches(p, canonicalName(n)), expected, `*.${s} vs ${n}`);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe('v1alpha3 follows NetworkPolicy’s rule for when egress is restricted', () => {
  const doc = (spec: string) =>
    `apiVersion: networking.gke.io/v1alpha3\nkind: FQDNNetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n${spec}`;
  test('no egress section and no policyTypes: nothing restricted, nothing converted', () => {
    const report = loadYaml(doc('  podSelector: {}\n  ingress: []\n'));
    assert.equal(report.documents.length, 0);
    expectProblem(report.warnings, 'p', 'spec', /does not restrict egress/);
  });
  test('policyTypes [Egress] without rules: the pods are governed and reach nothing', () => {
    const report = loadYaml(doc('  podSelector: {}\n  policyTypes: [Egress]\n'));
    assert.equal(report.documents.length, 1);
    expectDecisions(compile(report), pod('a'), [['example.com', 'TCP', 443, 'deny']]);
  });
});
