/**
 * network-policy-api import (AdminNetworkPolicy v1alpha1, ClusterNetworkPolicy v1alpha2 and
 * v1beta1): NPEP-133's "*." (one or more labels) survives conversion; rule order is kept where
 * it matters or refused.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { canonicalName } from '../../../src/core/names.ts';
import { Conversion } from '../../../src/formats/foreign-common.ts';
import { SOURCE_ANNOTATION } from '../../../src/formats/importer.ts';
import { convertDomainName, npepImporter } from '../../../src/formats/npep.ts';
import { decideAddress } from '../../../src/policy/decide.ts';
import { parsePattern, patternMatches } from '../../../src/policy/pattern.ts';
import {
  type Case,
  compile,
  expectDecisions,
  expectProblem,
  expectSameDecisions,
  findProblem,
  load,
  pod,
  roundTrip,
} from './helpers.ts';

describe('the NPEP-133 example (allow-my-service-egress)', async () => {
  const report = await load('npep', 'npep-example.yaml');
  const set = compile(report);
  const monitoring = pod('monitoring', { app: 'prometheus' });
  const cases: Case[] = [
    ['my-service.com', 'TCP', 443, 'allow'],
    ['my-service.com', 'TCP', 80, 'deny'],
    ['my-service.com', 'UDP', 443, 'deny'],
    ['www.my-service.com', 'TCP', 443, 'deny'],
    // "*." is one or more labels in NPEP.
    ['api.cloud-provider.io', 'TCP', 443, 'allow'],
    ['eu.api.cloud-provider.io', 'TCP', 443, 'allow'],
    ['cloud-provider.io', 'TCP', 443, 'deny'],
    ['cloud-provider.com', 'TCP', 443, 'deny'],
  ];

  test('converts to a ClusterEgressPolicy whose namespaceSelector is the subject', () => {
    const doc = report.documents[0]?.document;
    assert.equal(doc?.kind, 'ClusterEgressPolicy');
    assert.equal(doc?.metadata.name, 'allow-my-service-egress');
    assert.equal(
      doc?.metadata.annotations?.[SOURCE_ANNOTATION],
      'policy.networking.k8s.io/v1alpha2 ClusterNetworkPolicy allow-my-service-egress',
    );
  });

  test('decisions', () => {
    expectDecisions(set, monitoring, cases);
    assert.equal(set.selection(pod('default')).mode, null);
  });

  test('the wildcard meaning and the dropped default-deny are stated', () => {
    expectProblem(report.warnings, 'allow-my-service-egress', 'domainNames[1]', /one or more labels/);
    expectProblem(report.warnings, 'allow-my-service-egress', 'spec.egress[1]', /already denies/);
    expectProblem(report.warnings, 'allow-my-service-egress', 'spec.priority', /kept by checking/);
    // A closing Deny of everything: no fall-through warning.
    assert.equal(
      findProblem(report.warnings, 'allow-my-service-egress', 'spec.egress', /falls through/),
      undefined,
    );
  });

  test('round trip through YAML keeps every decision', () => {
    expectDecisions(roundTrip(report), monitoring, cases);
  });
});

describe('AdminNetworkPolicy v1alpha1 with the DomainName examples of the API docs', async () => {
  const report = await load('npep', 'anp-kubernetes-io.yaml');
  const set = compile(report);
  const crawler = pod('docs', { app: 'crawler' }, { team: 'docs' });
  const cases: Case[] = [
    // "kubernetes.io" matches only kubernetes.io.
    ['kubernetes.io', 'TCP', 443, 'allow'],
    ['kubernetes.io', 'TCP', 8080, 'allow'],
    ['kubernetes.io', 'TCP', 8081, 'deny'],
    // "*.kubernetes.io": www., blog. and latest.blog., not kubernetes.io (here only on 443).
    ['www.kubernetes.io', 'TCP', 443, 'allow'],
    ['blog.kubernetes.io', 'TCP', 443, 'allow'],
    ['latest.blog.kubernetes.io', 'TCP', 443, 'allow'],
    ['www.kubernetes.io', 'TCP', 8080, 'deny'],
    ['my-kubernetes.io', 'TCP', 443, 'deny'],
    ['wikipedia.org', 'TCP', 443, 'deny'],
    // After the Deny of everything, later Allow rules never apply.
    ['never.example.com', 'TCP', 443, 'deny'],
  ];

  test('subject pods: namespaceSelector and podSelector', () => {
    expectDecisions(set, crawler, cases);
    assert.equal(set.selection(pod('docs', { app: 'web' }, { team: 'docs' })).mode, null);
    assert.equal(set.selection(pod('blog', { app: 'crawler' }, { team: 'blog' })).mode, null);
  });

  test('networks become toCIDRs', () => {
    assert.equal(decideAddress(set, crawler, '192.0.2.9', 'UDP', 53).verdict, 'allow');
    assert.equal(decideAddress(set, crawler, '198.51.100.9', 'TCP', 443).verdict, 'deny');
  });

  test('namedPort, in-cluster peers and shadowed rules are reported', () => {
    expectProblem(report.warnings, 'docs-crawler', 'ports[2].namedPort', /named port/);
    expectProblem(report.warnings, 'docs-crawler', 'spec.egress[3]', /in-cluster/);
    expectProblem(report.warnings, 'docs-crawler', 'spec.egress[5]', /earlier rule spec.egress\[4\]/);
  });

  test('round trip through YAML keeps every decision', () => {
    expectDecisions(roundTrip(report), crawler, cases);
  });
});

describe('rules without a closing Deny (v1beta1)', async () => {
  const report = await load('npep', 'fall-through.yaml');
  const set = compile(report);
  const builder = pod('ci', { role: 'builder' });

  test('Pass to in-cluster peers and a Deny of never-learned addresses do not block conversion', () => {
    expectProblem(report.warnings, 'builds', 'spec.egress[0]', /in-cluster/);
    expectProblem(report.warnings, 'builds', 'spec.egress[1]', /never learns/);
    expectProblem(report.warnings, 'builds', 'spec.egress', /falls through/);
  });

  test('protocols: tcp range and udp number; "*.co.uk" needs the public-suffix option', () => {
    expectDecisions(set, builder, [
      ['registry.npmjs.org', 'TCP', 443, 'allow'],
      ['registry.npmjs.org', 'TCP', 444, 'allow'],
      ['registry.npmjs.org', 'TCP', 445, 'deny'],
      ['registry.npmjs.org', 'UDP', 443, 'allow'],
      ['registry.npmjs.org', 'UDP', 444, 'deny'],
      ['www.bbc.co.uk', 'TCP', 443, 'allow'],
      ['co.uk', 'TCP', 443, 'deny'],
    ]);
    assert.equal(report.documents[0]?.document.spec.allowPublicSuffixWildcards, true);
    expectProblem(report.warnings, 'builds', 'domainNames[0]', /allowPublicSuffixWildcards/);
  });

  test('round trip through YAML keeps every decision', () => {
    expectSameDecisions(
      set,
      roundTrip(report),
      [builder],
      ['registry.npmjs.org', 'www.bbc.co.uk', 'co.uk'],
      [
        ['TCP', 443],
        ['TCP', 445],
        ['UDP', 443],
      ],
    );
  });
});

describe('broken network-policy-api documents', async () => {
  test('a Deny before an Accept cannot be kept: error, no policy', async () => {
    const report = await load('npep', 'broken/deny-first.yaml', true);
    assert.equal(report.policies.length, 0);
    expectProblem(report.errors, 'deny-first', 'spec.egress[0]', /allow-only/);
  });

  test('malformed documents give errors with field paths', async () => {
    const report = await load('npep', 'broken/malformed.yaml', true);
    assert.equal(report.policies.length, 0);
    const expected: Array<[string, string, RegExp]> = [
      ['allow-is-v1alpha1', 'spec.egress[0].action', /expected Accept/],
      ['partial-wildcard', 'domainNames[0]', /not a valid domainName/],
      ['domains-in-deny', 'spec.egress[0].to[0].domainNames', /only in Accept/],
      ['two-subjects', 'spec.subject', /exactly one/],
      ['bad-range', 'range.end', /below start/],
    ];
    for (const [object, path, message] of expected) expectProblem(report.errors, object, path, message);
    // BaselineAdminNetworkPolicy cannot carry domainNames: not read at all.
    expectProblem(report.warnings, 'BaselineAdminNetworkPolicy', '', /not a policy namegate reads/);
  });

  test('arbitrary values anywhere never throw', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(
          'spec',
          'subject',
          'egress',
          'rule',
          'to',
          'peer',
          'protocols',
          'ports',
          'action',
          'tier',
          'priority',
        ),
        fc.jsonValue({ maxDepth: 3 }),
        (where, junk) => {
          const peer: Record<string, unknown> = { domainNames: ['*.example.com'] };
          const rule: Record<string, unknown> = {
            action: 'Accept',
            to: [peer],
            protocols: [{ tcp: { destinationPort: { number: 443 } } }],
          };
          const spec: Record<string, unknown> = {
            tier: 'Admin',
            priority: 1,
            subject: { namespaces: {} },
            egress: [rule],
          };
          const doc: Record<string, unknown> = {
            apiVersion: 'policy.networking.k8s.io/v1alpha2',
            kind: 'ClusterNetworkPolicy',
            metadata: { name: 'cnp' },
            spec,
          };
          if (where === 'spec') doc['spec'] = junk;
          else if (where === 'subject' || where === 'egress' || where === 'tier' || where === 'priority')
            spec[where] = junk;
          else if (where === 'rule') spec['egress'] = [junk];
          else if (where === 'peer') rule['to'] = [junk];
          else rule[where] = junk;
          const result = npepImporter.convert(doc, { defaultNamespace: 'default' });
          if (result.errors.length > 0) assert.equal(result.documents.length, 0);
          // The set check reads the same junk: problems, never a throw.
          const [problems] = npepImporter.checkSet([doc, doc]);
          assert.ok(Array.isArray(problems));
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('domainNames conversion agrees with NPEP’s meaning', () => {
  test('"*.x" matches one or more labels in front of x, never x', () => {
    const labels = ['a', 'b', 'kubernetes', 'io', 'blog', 'www'];
    const name = fc.array(fc.constantFrom(...labels), { minLength: 1, maxLength: 5 }).map((l) => l.join('.'));
    const domain = fc
      .tuple(fc.boolean(), fc.array(fc.constantFrom(...labels), { minLength: 2, maxLength: 3 }))
      .map(([star, rest]) => `${star ? '*.' : ''}${rest.join('.')}`);
    fc.assert(
      fc.property(domain, fc.array(name, { minLength: 1, maxLength: 20 }), (d, names) => {
        const entry = convertDomainName(new Conversion(), d, 'd');
        assert.ok(entry);
        const text = 'name' in entry ? entry.name : entry.pattern;
        const p = parsePattern(text, { allowPublicSuffixWildcards: true });
        assert.ok(!(p instanceof Error));
        for (const n of names) {
          const expected = d.startsWith('*.') ? n.endsWith(d.slice(1)) : n === d;
          assert.equal(patternMatches(p, canonicalName(n)), expected, `${d} vs ${n}`);
        }
      }),
      { numRuns: 1000 },
    );
  });
});
