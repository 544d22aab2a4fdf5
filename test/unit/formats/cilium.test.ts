/**
 * CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy import: the meaning of every Cilium
 * wildcard survives conversion, stated with Cilium's own examples and checked by decisions.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { canonicalName } from '../../../src/core/names.ts';
import { ciliumImporter, ciliumPatternToNative } from '../../../src/formats/cilium.ts';
import { Conversion } from '../../../src/formats/foreign-common.ts';
import { SOURCE_ANNOTATION } from '../../../src/formats/importer.ts';
import { decideAddress, grantsFor } from '../../../src/policy/decide.ts';
import { parsePattern, patternMatches } from '../../../src/policy/pattern.ts';
import {
  type Case,
  compile,
  expectDecisions,
  expectProblem,
  expectQueries,
  expectSameDecisions,
  load,
  loadYaml,
  pod,
  roundTrip,
} from './helpers.ts';

describe("Cilium's dns.yaml example (examples/policies/l7/dns/dns.yaml)", async () => {
  const report = await load('cilium', 'dns-example.yaml');
  const set = compile(report);
  const alliance = pod('default', { org: 'alliance' });

  test('converts to one EgressPolicy named after the CiliumNetworkPolicy, with provenance', () => {
    assert.equal(report.documents.length, 1);
    const doc = report.documents[0]?.document;
    assert.equal(doc?.kind, 'EgressPolicy');
    assert.equal(doc?.metadata.name, 'tofqdn-dns-visibility');
    assert.equal(doc?.metadata.namespace, 'default');
    assert.equal(
      doc?.metadata.annotations?.[SOURCE_ANNOTATION],
      'cilium.io/v2 CiliumNetworkPolicy default/tofqdn-dns-visibility',
    );
  });

  const cases: Case[] = [
    ['cilium.io', 'TCP', 80, 'allow'],
    ['cilium.io', 'TCP', 443, 'deny'],
    ['cilium.io', 'UDP', 80, 'deny'],
    ['sub.cilium.io', 'TCP', 80, 'allow'],
    ['other.cilium.io', 'TCP', 80, 'deny'],
    ['x.sub.cilium.io', 'TCP', 80, 'deny'],
    ['service1.api.cilium.io', 'TCP', 80, 'allow'],
    // special*service: "*" is zero or more characters inside that one label.
    ['specialservice.api.cilium.io', 'TCP', 80, 'allow'],
    ['special-foo_1-service.api.cilium.io', 'TCP', 80, 'allow'],
    ['special.service.api.cilium.io', 'TCP', 80, 'deny'],
    ['a.specialservice.api.cilium.io', 'TCP', 80, 'deny'],
    ['specialservice.cilium.io', 'TCP', 80, 'deny'],
    ['specialservicex.api.cilium.io', 'TCP', 80, 'deny'],
    ['xspecialservice.api.cilium.io', 'TCP', 80, 'deny'],
  ];

  test('decisions keep the meaning of matchName and matchPattern', () => {
    expectDecisions(set, alliance, cases);
  });

  test('the endpointSelector (any:org) selects pods by label; others stay ungoverned', () => {
    assert.equal(set.selection(pod('default', { org: 'empire' })).mode, null);
    assert.equal(set.selection(pod('other', { org: 'alliance' })).mode, null);
  });

  test('the DNS rule is reported, not converted', () => {
    expectProblem(
      report.warnings,
      'tofqdn-dns-visibility',
      'spec.egress[0].toPorts[0].rules.dns',
      /namegate answers DNS/,
    );
    expectProblem(report.warnings, 'tofqdn-dns-visibility', 'spec.egress[0].toEndpoints', /in-cluster/);
    expectProblem(
      report.warnings,
      'tofqdn-dns-visibility',
      'spec.egress[0]',
      /nothing for namegate to allow/,
    );
  });

  test('the in-label glob is flagged with its Cilium meaning', () => {
    expectProblem(
      report.warnings,
      'tofqdn-dns-visibility',
      'toFQDNs[3].matchPattern',
      /zero or more .* within that one label/,
    );
  });

  test('round trip through YAML keeps every decision', () => {
    expectDecisions(roundTrip(report), alliance, cases);
  });
});

describe('Cilium matchPattern meanings, one policy per pattern', async () => {
  const report = await load('cilium', 'wildcards.yaml');
  const set = compile(report);
  const table: Record<string, ReadonlyArray<readonly [string, 'allow' | 'deny']>> = {
    // "*" alone in a label: exactly one label, not the apex, not two labels.
    'one-label': [
      ['sub.cilium.io', 'allow'],
      ['cilium.io', 'deny'],
      ['sub.sub.cilium.io', 'deny'],
    ],
    // "**." prefix: one or more whole labels.
    'any-depth': [
      ['a.cilium.io', 'allow'],
      ['a.b.cilium.io', 'allow'],
      ['a.b.c.d.cilium.io', 'allow'],
      ['cilium.io', 'deny'],
      ['xcilium.io', 'deny'],
    ],
    // Two or more stars then a dot: still the "**." prefix.
    'three-stars': [
      ['a.deep.example.com', 'allow'],
      ['a.b.deep.example.com', 'allow'],
      ['deep.example.com', 'deny'],
    ],
    // "*" inside a label: zero or more characters of that label (Cilium's docs: part*ial.com).
    'in-label': [
      ['partial.com', 'allow'],
      ['part-extra-ial.com', 'allow'],
      ['partxial.com', 'allow'],
      ['x.partial.com', 'deny'],
      ['partial.org', 'deny'],
      ['parti.com', 'deny'],
    ],
    // The ladder users wrote before "**.": each "*" is exactly one label.
    ladder: [
      ['web.shop.svc.cluster.local', 'allow'],
      ['shop.svc.cluster.local', 'deny'],
      ['a.web.shop.svc.cluster.local', 'deny'],
    ],
    // "**" not at the start behaves like "*": one label.
    'mid-stars': [
      ['a.x.b.com', 'allow'],
      ['a.x.y.b.com', 'deny'],
      ['a.b.com', 'deny'],
      ['z.a.x.b.com', 'deny'],
    ],
    // "**." prefix followed by an in-label glob.
    'deep-glob': [
      ['x.api-eu.example.net', 'allow'],
      ['x.y.api-.example.net', 'allow'],
      ['api-eu.example.net', 'deny'],
      ['x.api.example.net', 'deny'],
    ],
    // A pattern of stars only: every name.
    everything: [
      ['example.org', 'allow'],
      ['a.b.c.example.org', 'allow'],
      ['com', 'allow'],
    ],
    // No public-suffix guard in Cilium: "*.com" is one label under com.
    'public-suffix': [
      ['example.com', 'allow'],
      ['a.example.com', 'deny'],
      ['com', 'deny'],
    ],
    // matchName: case and the trailing dot do not matter; no wildcard.
    exact: [
      ['api.example.com', 'allow'],
      ['x.api.example.com', 'deny'],
      ['example.com', 'deny'],
    ],
  };

  for (const [label, cases] of Object.entries(table)) {
    test(`${label}`, () => {
      const who = pod('shop', { case: label });
      expectQueries(set, who, cases);
      for (const [name, verdict] of cases) {
        expectDecisions(set, who, [
          [name, 'TCP', 443, verdict],
          [name, 'TCP', 80, 'deny'],
        ]);
      }
    });
  }

  test('the options a pattern needs are set only where it needs them', () => {
    const spec = (name: string) =>
      report.documents.find((d) => d.document.metadata.name === name)?.document.spec;
    assert.equal(spec('one-label')?.allowPartialLabelWildcards, undefined);
    assert.equal(spec('one-label')?.allowPublicSuffixWildcards, undefined);
    assert.equal(spec('in-label')?.allowPartialLabelWildcards, true);
    assert.equal(spec('everything')?.allowPublicSuffixWildcards, true);
    assert.equal(spec('public-suffix')?.allowPublicSuffixWildcards, true);
    expectProblem(report.warnings, 'everything', 'matchPattern', /every name/);
    expectProblem(report.warnings, 'public-suffix', 'matchPattern', /allowPublicSuffixWildcards/);
  });

  test('round trip through YAML keeps every decision', () => {
    const names = Object.values(table).flatMap((cases) => cases.map(([n]) => n));
    const who = Object.keys(table).map((label) => pod('shop', { case: label }));
    expectSameDecisions(set, roundTrip(report), who, names, [
      ['TCP', 443],
      ['TCP', 80],
    ]);
  });
});

describe('CiliumClusterwideNetworkPolicy: namespace in the endpointSelector', async () => {
  const report = await load('cilium', 'clusterwide.yaml');
  const set = compile(report);

  test('k8s:io.kubernetes.pod.namespace becomes a namespaceSelector on kubernetes.io/metadata.name', () => {
    const doc = report.documents.find((d) => d.document.metadata.name === 'payments-stripe')?.document;
    assert.equal(doc?.kind, 'ClusterEgressPolicy');
    assert.deepEqual(doc?.spec.podSelector, { matchLabels: { app: 'api' } });
    assert.deepEqual((doc?.spec as { namespaceSelector?: unknown } | undefined)?.namespaceSelector, {
      matchLabels: { 'kubernetes.io/metadata.name': 'payments' },
    });
    expectDecisions(set, pod('payments', { app: 'api' }), [
      ['api.stripe.com', 'TCP', 443, 'allow'],
      ['api.stripe.com', 'TCP', 80, 'deny'],
      ['stripe.com', 'TCP', 443, 'deny'],
    ]);
    assert.equal(set.selection(pod('shop', { app: 'api' })).mode, null);
  });

  test('namespace labels and expressions select namespaces; any: selects pod labels', () => {
    const data = { team: 'data' };
    expectDecisions(set, pod('analytics', { tier: 'etl' }, data), [
      ['eu.storage.example.com', 'TCP', 443, 'allow'],
      ['a.b.storage.example.com', 'UDP', 53, 'allow'],
      ['storage.example.com', 'TCP', 443, 'deny'],
    ]);
    assert.equal(set.selection(pod('kube-system', { tier: 'etl' }, data)).mode, null);
    assert.equal(set.selection(pod('analytics', { tier: 'web' }, data)).mode, null);
    assert.equal(set.selection(pod('analytics', { tier: 'etl' }, { team: 'web' })).mode, null);
  });
});

describe('issue 13: serverNames are enforced exactly (SNI in serverNames AND allowed by toFQDNs)', async () => {
  const report = await load('cilium', 'server-names.yaml');
  const set = compile(report);
  const agent = pod('ops', { app: 'agent' });
  const probe = pod('ops', { app: 'probe' });
  const lone = pod('ops', { app: 'lone' });
  const verifyOn = (p: ReturnType<typeof pod>, name: string, port: number) =>
    grantsFor(set, p, canonicalName(name))
      .filter((g) => g.ports.some((r) => r.from <= port && port <= r.to))
      .map((g) => g.verify);

  test('no errors; one native SNI rule per serverNames entry', () => {
    assert.equal(report.errors.length, 0, JSON.stringify(report.errors));
  });

  test('serverNames narrower than toFQDNs: only the listed name is allowed on the port, SNI-checked', () => {
    expectDecisions(set, agent, [
      ['api.example.net', 'TCP', 443, 'allow'],
      ['www.example.net', 'TCP', 443, 'deny'],
      ['other.example.org', 'TCP', 443, 'deny'],
    ]);
    assert.deepEqual(verifyOn(agent, 'api.example.net', 443), ['SNI']);
    expectProblem(
      report.warnings,
      'narrower-list',
      'serverNames',
      /other\.example\.org \(no toFQDNs entry allows it\)/,
    );
  });

  test('a toFQDNs name missing from serverNames is never allowed on the SNI port', () => {
    expectDecisions(set, agent, [
      ['api.github.com', 'TCP', 443, 'allow'],
      ['github.com', 'TCP', 443, 'deny'],
    ]);
  });

  test('two wildcards: the narrower one is kept', () => {
    expectDecisions(set, agent, [
      ['x.eu.cdn.example.com', 'TCP', 8443, 'allow'],
      ['x.us.cdn.example.com', 'TCP', 8443, 'deny'],
      ['a.x.eu.cdn.example.com', 'TCP', 8443, 'deny'],
    ]);
  });

  test('toEntities world + serverNames: the listed names, SNI-checked', () => {
    expectDecisions(set, probe, [
      ['one.one.one.one', 'TCP', 443, 'allow'],
      ['example.com', 'TCP', 443, 'deny'],
    ]);
    assert.deepEqual(verifyOn(probe, 'one.one.one.one', 443), ['SNI']);
  });

  test('no name in both lists: that port is not converted (narrower), with a warning', () => {
    expectDecisions(set, lone, [
      ['x.a.example', 'TCP', 443, 'deny'],
      ['x.b.example', 'TCP', 443, 'deny'],
    ]);
    expectProblem(
      report.warnings,
      'disjoint',
      'serverNames',
      /no name is both in serverNames and allowed by toFQDNs/,
    );
  });

  test('property: a converted SNI rule never allows a name outside serverNames or toFQDNs', () => {
    const names = [
      'api.example.net',
      'www.example.net',
      'other.example.org',
      'api.github.com',
      'github.com',
      'x.eu.cdn.example.com',
      'x.us.cdn.example.com',
      'cdn.example.com',
    ];
    const inServerNames = new Set(['api.example.net', 'api.github.com', 'x.eu.cdn.example.com']);
    for (const n of names) {
      const port = n.includes('cdn') ? 8443 : 443;
      const allowed = grantsFor(set, agent, canonicalName(n)).some((g) =>
        g.ports.some((r) => r.from <= port && port <= r.to),
      );
      assert.equal(allowed, inServerNames.has(n), n);
    }
  });
});

describe('ports, CIDRs, serverNames, L7 rules and toEntities', async () => {
  const report = await load('cilium', 'ports-cidrs.yaml');
  const set = compile(report);
  const agent = pod('ops', { app: 'agent' });

  test('toCIDR and toCIDRSet (with except) on an endPort range of protocol ANY', () => {
    const at = (ip: string, protocol: 'TCP' | 'UDP', port: number) =>
      decideAddress(set, agent, ip, protocol, port).verdict;
    assert.equal(at('203.0.113.7', 'TCP', 5000), 'allow');
    assert.equal(at('203.0.113.7', 'UDP', 5010), 'allow');
    assert.equal(at('203.0.113.7', 'TCP', 5011), 'deny');
    assert.equal(at('203.0.113.7', 'UDP', 8125), 'allow');
    assert.equal(at('203.0.113.7', 'TCP', 8125), 'deny');
    assert.equal(at('198.51.100.5', 'TCP', 5005), 'allow');
    assert.equal(at('198.51.100.200', 'TCP', 5005), 'deny');
    assert.equal(at('203.0.113.7', 'TCP', 9000), 'deny');
  });

  test('port "0" is every port of its protocol; a rule without toPorts is every port', () => {
    expectDecisions(set, agent, [
      ['logs.example.com', 'TCP', 1, 'allow'],
      ['logs.example.com', 'TCP', 65535, 'allow'],
      ['logs.example.com', 'UDP', 514, 'deny'],
      ['all-ports.example.com', 'UDP', 9999, 'allow'],
      ['all-ports.example.com', 'TCP', 22, 'allow'],
    ]);
  });

  test('serverNames become verify: SNI, http rules verify: Inspect, each on their ports only', () => {
    expectDecisions(set, agent, [
      ['a.tls.example.com', 'TCP', 443, 'allow'],
      ['a.tls.example.com', 'TCP', 80, 'allow'],
      ['tls.example.com', 'TCP', 443, 'deny'],
    ]);
    const grants = grantsFor(set, agent, canonicalName('a.tls.example.com'));
    const verify443 = grants.filter((g) => g.ports.some((p) => p.from === 443)).map((g) => g.verify);
    const verify80 = grants.filter((g) => g.ports.some((p) => p.from === 80)).map((g) => g.verify);
    assert.deepEqual(verify443, ['SNI']);
    assert.deepEqual(verify80, ['Inspect']);
    const inspected = grants.find((g) => g.verify === 'Inspect')!;
    const http = set.rule(inspected.ref).http;
    assert.deepEqual(http[0]?.methods, ['GET']);
    assert.equal(http[0]?.path?.kind, 'regex');
    assert.equal(http[0]?.path?.value, '/health');
    expectProblem(report.warnings, 'mixed', 'toPorts[0].serverNames', /verify: SNI/);
  });

  test('toEntities world: every address and every name on its ports', () => {
    expectDecisions(set, agent, [
      ['smtp.anything.example', 'TCP', 25, 'allow'],
      ['smtp.anything.example', 'TCP', 26, 'deny'],
    ]);
    assert.equal(decideAddress(set, agent, '192.0.2.1', 'TCP', 25).verdict, 'allow');
    assert.equal(decideAddress(set, agent, '2001:db8::1', 'TCP', 25).verdict, 'allow');
    expectProblem(report.warnings, 'mixed', 'toEntities[0]', /every name/);
  });

  test('SCTP and named ports are reported and dropped, never widened', () => {
    expectProblem(report.warnings, 'mixed', 'ports[2].protocol', /SCTP/);
    expectProblem(report.warnings, 'mixed', 'ports[3].port', /named port "metrics"/);
  });

  test('round trip through YAML keeps every decision', () => {
    const names = [
      'logs.example.com',
      'a.tls.example.com',
      'tls.example.com',
      'all-ports.example.com',
      'x.example',
    ];
    expectSameDecisions(set, roundTrip(report), [agent], names, [
      ['TCP', 25],
      ['TCP', 80],
      ['TCP', 443],
      ['UDP', 514],
    ]);
  });
});

describe('spec and specs', async () => {
  const report = await load('cilium', 'specs.yaml');

  test('each rule with egress becomes its own policy, named by its position', () => {
    assert.deepEqual(
      report.documents.map((d) => d.document.metadata.name),
      ['multi-1', 'multi-2'],
    );
    assert.match(
      report.documents[1]?.document.metadata.annotations?.[SOURCE_ANNOTATION] ?? '',
      /specs\[0\]$/,
    );
    const set = compile(report);
    expectDecisions(set, pod('web', { app: 'frontend' }), [
      ['cdn.example.com', 'TCP', 443, 'allow'],
      ['db.example.com', 'TCP', 5432, 'deny'],
    ]);
    expectDecisions(set, pod('web', { app: 'backend' }), [
      ['db.example.com', 'TCP', 5432, 'allow'],
      ['cdn.example.com', 'TCP', 443, 'deny'],
    ]);
    expectProblem(report.warnings, 'multi', 'specs[1].egress', /nothing to convert/);
  });
});

describe('policies that do not restrict egress', async () => {
  const report = await load('cilium', 'no-egress.yaml');
  const set = compile(report);

  test('no egress rules: no policy (Cilium leaves egress alone)', () => {
    assert.ok(!report.documents.some((d) => d.document.metadata.name === 'ingress-only'));
    assert.equal(set.selection(pod('web', { app: 'frontend' })).mode, null);
  });

  test('only a DNS rule: the pods are governed and reach no outside name', () => {
    const doc = report.documents.find((d) => d.document.metadata.name === 'dns-only')?.document;
    assert.deepEqual(doc?.spec.egress, []);
    expectDecisions(set, pod('web', { app: 'isolated' }), [['anything.example.com', 'TCP', 443, 'deny']]);
  });

  test('enableDefaultDeny.egress false is reported', () => {
    expectProblem(report.warnings, 'additive', 'enableDefaultDeny.egress', /not kept/);
  });
});

describe('broken Cilium documents', async () => {
  const report = await load('cilium', 'broken/malformed.yaml', true);

  test('give errors with field paths and no policies', () => {
    assert.equal(report.policies.length, 0);
    const expected: Array<[string, string, RegExp]> = [
      ['spec-is-a-string', 'spec', /expected a mapping/],
      ['fqdns-not-a-list', 'spec.egress[0].toFQDNs', /expected a list/],
      ['bad-pattern', 'toFQDNs[0].matchPattern', /only letters/],
      ['both-name-and-pattern', 'toFQDNs[0]', /exactly one/],
      ['no-selector', 'spec.endpointSelector', /required/],
      ['bad-port', 'ports[0].port', /port number/],
      ['bad-protocol', 'ports[0].protocol', /expected TCP/],
      ['host-identity', 'endpointSelector.matchLabels.reserved:host', /not pods/],
      ['service-account', 'io.cilium.k8s.policy.serviceaccount', /identity label/],
      ['bad-cidr', 'toCIDR[0]', /not an IP address/],
      ['host-policy', 'spec.nodeSelector', /host policies/],
      ['wrong-version', 'apiVersion', /not supported/],
      ['CiliumNetworkPolicy', 'metadata.name', /required/],
    ];
    for (const [object, path, message] of expected) expectProblem(report.errors, object, path, message);
    assert.ok(!report.errors.some((e) => e.message.startsWith('could not convert')));
  });

  test('egressDeny is an error: dropping it would allow what Cilium denies', async () => {
    const deny = await load('cilium', 'broken/egress-deny.yaml', true);
    assert.equal(deny.policies.length, 0);
    expectProblem(deny.errors, 'deny-metadata', 'spec.egressDeny', /allow-only/);
  });
});

describe('the importer never throws', () => {
  test('arbitrary values anywhere in a policy give errors or warnings, not exceptions', () => {
    const slot = fc.constantFrom(
      'spec',
      'specs',
      'endpointSelector',
      'egress',
      'rule',
      'toFQDNs',
      'fqdn',
      'toPorts',
      'ports',
      'port',
      'toCIDRSet',
      'metadata',
    );
    fc.assert(
      fc.property(slot, fc.jsonValue({ maxDepth: 3 }), (where, junk) => {
        const port: Record<string, unknown> = { port: '443', protocol: 'TCP' };
        const fqdn: Record<string, unknown> = { matchPattern: '*.example.com' };
        const rule: Record<string, unknown> = {
          toFQDNs: [fqdn],
          toCIDRSet: [{ cidr: '10.0.0.0/8' }],
          toPorts: [{ ports: [port] }],
        };
        const spec: Record<string, unknown> = { endpointSelector: {}, egress: [rule] };
        const doc: Record<string, unknown> = {
          apiVersion: 'cilium.io/v2',
          kind: 'CiliumNetworkPolicy',
          metadata: { name: 'p', namespace: 'ns' },
          spec,
        };
        if (where === 'spec' || where === 'specs' || where === 'metadata') doc[where] = junk;
        else if (where === 'endpointSelector' || where === 'egress') spec[where] = junk;
        else if (where === 'rule') spec['egress'] = [junk];
        else if (where === 'fqdn') rule['toFQDNs'] = [junk];
        else if (where === 'ports') (rule['toPorts'] as Array<Record<string, unknown>>)[0] = { ports: junk };
        else if (where === 'port') port['port'] = junk;
        else rule[where] = junk;
        const result = ciliumImporter.convert(doc, { defaultNamespace: 'default' });
        for (const p of [...result.errors, ...result.warnings]) assert.equal(typeof p.path, 'string');
        if (result.errors.length > 0) assert.equal(result.documents.length, 0);
      }),
      { numRuns: 400 },
    );
  });

  test('through load, a broken document never takes others down', () => {
    const report = loadYaml(
      [
        'apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: bad}\nspec: {egress: 7}',
        'apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: good}\nspec: {endpointSelector: {}, egress: [{toFQDNs: [{matchName: a.example.com}]}]}',
      ].join('\n---\n'),
    );
    assert.equal(report.policies.length, 1);
    expectProblem(report.errors, 'bad', 'spec.endpointSelector', /required/);
  });
});

/**
 * Cilium's matcher as documented (pkg/fqdn/matchpattern): an anchored regular expression over
 * the name with a trailing dot. The reference the conversion is held to.
 */
function ciliumRegex(pattern: string): RegExp {
  const p = pattern.trim().toLowerCase();
  if (/^\*+\.?$/.test(p)) return /^(([-a-z0-9_]+[.])+|[.])$/;
  let rest = p.endsWith('.') ? p : `${p}.`;
  let prefix = '';
  const deep = /^\*{2,}\./.exec(rest);
  if (deep) {
    prefix = '([-a-z0-9_]+([.][-a-z0-9_]+){0,})[.]';
    rest = rest.slice(deep[0].length);
  }
  const body = rest.replace(/\*+/g, '\u0000').replace(/\./g, '[.]').replaceAll('\u0000', '[-a-z0-9_]*');
  return new RegExp(`^${prefix}${body}$`);
}

describe('matchPattern conversion agrees with Cilium’s regular expression', () => {
  const labels = ['a', 'b', 'ab', 'api', 'api-x', 'x_y', 'part', 'partial', 'ial', 'io', 'com'];
  const globs = ['*', '**', 'a*', '*b', 'a*b', 'p*l', 'api-*', '*-x', '***'];
  const name = fc.array(fc.constantFrom(...labels), { minLength: 1, maxLength: 5 }).map((l) => l.join('.'));
  const pattern = fc
    .tuple(
      fc.constantFrom('', '**.', '***.'),
      fc.array(fc.constantFrom(...labels, ...globs), { minLength: 1, maxLength: 4 }),
      fc.constantFrom('', '.'),
    )
    .map(([prefix, parts, dot]) => `${prefix}${parts.join('.')}${dot}`);

  test('on random names and patterns', () => {
    fc.assert(
      fc.property(pattern, fc.array(name, { minLength: 1, maxLength: 20 }), (p, names) => {
        const c = new Conversion();
        const native = ciliumPatternToNative(c, p, 'p');
        assert.ok(native !== undefined, `${p}: ${c.errors.map((e) => e.message).join()}`);
        const parsed = parsePattern(native, {
          allowPartialLabelWildcards: true,
          allowPublicSuffixWildcards: true,
        });
        assert.ok(
          !(parsed instanceof Error),
          `${p} -> ${native}: ${parsed instanceof Error ? parsed.message : ''}`,
        );
        const regex = ciliumRegex(p);
        for (const n of names) {
          assert.equal(
            patternMatches(parsed, canonicalName(n)),
            regex.test(`${n}.`),
            `${p} (native ${native}) vs ${n}`,
          );
        }
      }),
      { numRuns: 2000 },
    );
  });

  test('documented examples', () => {
    const c = new Conversion();
    assert.equal(ciliumPatternToNative(c, '*.cilium.io', ''), '*.cilium.io');
    assert.equal(ciliumPatternToNative(c, '**.cilium.io', ''), '**.cilium.io');
    assert.equal(ciliumPatternToNative(c, '***.cilium.io.', ''), '**.cilium.io');
    assert.equal(
      ciliumPatternToNative(c, 'special*service.api.cilium.io', ''),
      'special*service.api.cilium.io',
    );
    assert.equal(ciliumPatternToNative(c, 'a.**.b.com', ''), 'a.*.b.com');
    assert.equal(ciliumPatternToNative(c, '*', ''), '**');
    assert.equal(ciliumPatternToNative(c, '**', ''), '**');
    assert.equal(ciliumPatternToNative(c, '*.', ''), '**');
    assert.equal(ciliumPatternToNative(c, 'Sub.Cilium.IO', ''), 'sub.cilium.io');
    assert.equal(c.errors.length, 0);
    const bad = new Conversion();
    assert.equal(ciliumPatternToNative(bad, 'a b.com', 'x'), undefined);
    assert.equal(bad.errors[0]?.path, 'x');
  });
});

describe('a namespaced policy and its own namespace', () => {
  const policy = (selector: string) =>
    `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: web}\nspec:\n  endpointSelector: ${selector}\n  egress: [{toFQDNs: [{matchName: a.example.com}]}]\n`;

  test('the own namespace in matchLabels is redundant', () => {
    const report = loadYaml(policy('{matchLabels: {"k8s:io.kubernetes.pod.namespace": web, app: x}}'));
    assert.deepEqual(report.errors, []);
    assert.deepEqual(report.documents[0]?.document.spec.podSelector, { matchLabels: { app: 'x' } });
    assert.equal(report.warnings.length, 0);
  });

  test('another namespace in matchLabels is dropped, as Cilium does, with a warning', () => {
    const report = loadYaml(policy('{matchLabels: {"k8s:io.kubernetes.pod.namespace": other}}'));
    expectProblem(report.warnings, 'p', 'matchLabels.k8s:io.kubernetes.pod.namespace', /own namespace "web"/);
    expectDecisions(compile(report), pod('web'), [['a.example.com', 'TCP', 443, 'allow']]);
  });

  test('an expression that excludes the own namespace selects nothing', () => {
    const report = loadYaml(
      policy(
        '{matchExpressions: [{key: "k8s:io.kubernetes.pod.namespace", operator: NotIn, values: [web]}]}',
      ),
    );
    assert.equal(report.documents.length, 0);
    expectProblem(report.warnings, 'p', 'spec.endpointSelector', /selects no pod/);
  });

  test('namespace labels cannot be kept in a namespaced policy', () => {
    const report = loadYaml(policy('{matchLabels: {"k8s:io.cilium.k8s.namespace.labels.team": a}}'));
    expectProblem(
      report.errors,
      'p',
      'io.cilium.k8s.namespace.labels.team',
      /CiliumClusterwideNetworkPolicy/,
    );
  });

  test('host bits in a CIDR are masked, as Cilium reads them', () => {
    const report = loadYaml(
      'apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: c, namespace: web}\nspec:\n  endpointSelector: {}\n  egress: [{toCIDR: [203.0.113.77/24, "2001:db8::1/32"]}]\n',
    );
    assert.deepEqual(report.errors, []);
    assert.deepEqual(report.documents[0]?.document.spec.egress?.[0]?.toCIDRs, [
      { cidr: '203.0.113.0/24' },
      { cidr: '2001:db8::/32' },
    ]);
    expectProblem(report.warnings, 'c', 'toCIDR[0]', /read as 203\.0\.113\.0\/24/);
  });
});
