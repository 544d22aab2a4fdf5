/**
 * Istio ServiceEntry import (REGISTRY_ONLY): hosts keep Istio's suffix meaning, exportTo decides
 * which pods are governed, ports keep their protocol's name check.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { canonicalName } from '../../../src/core/names.ts';
import { Conversion } from '../../../src/formats/foreign-common.ts';
import { SOURCE_ANNOTATION } from '../../../src/formats/importer.ts';
import { istioHostToNative, istioImporter } from '../../../src/formats/istio.ts';
import { decideAddress, grantsFor } from '../../../src/policy/decide.ts';
import { parsePattern, patternMatches } from '../../../src/policy/pattern.ts';
import {
  type Case,
  compile,
  expectDecisions,
  expectProblem,
  expectSameDecisions,
  load,
  pod,
  roundTrip,
} from './helpers.ts';

describe("Istio's *.wikipedia.org example (istio.io, Egress using Wildcard Hosts)", async () => {
  const report = await load('istio', 'wikipedia.yaml');
  const set = compile(report);
  const cases: Case[] = [
    ['en.wikipedia.org', 'TCP', 443, 'allow'],
    ['de.wikipedia.org', 'TCP', 443, 'allow'],
    // Istio's "*." is a suffix match: any depth.
    ['upload.en.wikipedia.org', 'TCP', 443, 'allow'],
    ['wikipedia.org', 'TCP', 443, 'deny'],
    ['en.wikipedia.org', 'TCP', 80, 'deny'],
    ['en.wikipedia.org', 'UDP', 443, 'deny'],
    ['wikipedia.com', 'TCP', 443, 'deny'],
    ['notwikipedia.org', 'TCP', 443, 'deny'],
  ];

  test('exportTo absent: a ClusterEgressPolicy over every namespace, named namespace-name', () => {
    const doc = report.documents[0]?.document;
    assert.equal(doc?.kind, 'ClusterEgressPolicy');
    assert.equal(doc?.metadata.name, 'default-wikipedia');
    assert.equal(
      doc?.metadata.annotations?.[SOURCE_ANNOTATION],
      'networking.istio.io/v1 ServiceEntry default/wikipedia',
    );
    assert.deepEqual((doc?.spec as { namespaceSelector?: unknown } | undefined)?.namespaceSelector, {});
  });

  test('every pod that sees the entry is governed, in any namespace', () => {
    for (const who of [pod('default'), pod('shop', { app: 'web' })]) expectDecisions(set, who, cases);
  });

  test('HTTPS keeps its name check as verify: SNI', () => {
    const grants = grantsFor(set, pod('shop'), canonicalName('en.wikipedia.org'));
    assert.deepEqual(
      grants.map((g) => g.verify),
      ['SNI'],
    );
  });

  test('the wildcard meaning is stated in a warning', () => {
    expectProblem(report.warnings, 'wikipedia', 'spec.hosts[0]', /one or more labels/);
    expectProblem(report.warnings, 'wikipedia', 'spec.exportTo', /REGISTRY_ONLY/);
  });

  test('round trip through YAML keeps every decision', () => {
    expectDecisions(roundTrip(report), pod('shop'), cases);
  });
});

describe("Istio's edition.cnn.com example (istio.io, Accessing External Services)", async () => {
  const report = await load('istio', 'cnn.yaml');
  const set = compile(report);

  test('HTTP and HTTPS ports, exact host', () => {
    expectDecisions(set, pod('news'), [
      ['edition.cnn.com', 'TCP', 80, 'allow'],
      ['edition.cnn.com', 'TCP', 443, 'allow'],
      ['edition.cnn.com', 'TCP', 8080, 'deny'],
      ['cnn.com', 'TCP', 443, 'deny'],
      ['www.edition.cnn.com', 'TCP', 443, 'deny'],
    ]);
    assert.deepEqual(
      grantsFor(set, pod('news'), canonicalName('edition.cnn.com')).map((g) => g.verify),
      ['SNI'],
    );
  });
});

describe('TCP with addresses (after istio.io, Consuming External MongoDB Services)', async () => {
  const report = await load('istio', 'mongo.yaml');
  const set = compile(report);
  const shop = pod('shop');

  test('opaque TCP with addresses: matched by address only, as Istio does; the host is not allowed by name', () => {
    expectDecisions(set, shop, [
      ['my-mongo.tcp.svc', 'TCP', 27017, 'deny'],
      ['my-mongo.tcp.svc', 'TCP', 27018, 'deny'],
    ]);
    assert.deepEqual(grantsFor(set, shop, canonicalName('my-mongo.tcp.svc')), []);
    assert.equal(decideAddress(set, shop, '203.0.113.10', 'TCP', 27017).verdict, 'allow');
    assert.equal(decideAddress(set, shop, '203.0.113.11', 'TCP', 27017).verdict, 'deny');
    assert.equal(decideAddress(set, shop, '203.0.113.10', 'TCP', 22).verdict, 'deny');
    expectProblem(report.warnings, 'mongo', 'spec.hosts', /by address only/);
    expectProblem(report.warnings, 'mongo', 'spec.endpoints', /not kept/);
  });
});

describe('issue 13: TCP ports with addresses are matched by address only (istio.io TCP egress shape)', async () => {
  const report = await load('istio', 'tcp-addresses.yaml');
  const set = compile(report);
  const dev = pod('dev');

  test('"dummy.github.com # not used" is not allowed by name; the addresses are, on the port', () => {
    assert.equal(report.errors.length, 0, JSON.stringify(report.errors));
    expectDecisions(set, dev, [['dummy.github.com', 'TCP', 443, 'deny']]);
    assert.equal(decideAddress(set, dev, '192.0.2.5', 'TCP', 443).verdict, 'allow');
    assert.equal(decideAddress(set, dev, '192.0.2.16', 'TCP', 443).verdict, 'deny');
    assert.equal(decideAddress(set, dev, '192.0.2.5', 'TCP', 80).verdict, 'deny');
  });

  test('TLS stays name-checked on the same entry; its TCP port goes by address', () => {
    expectDecisions(set, dev, [
      ['db.example.com', 'TCP', 443, 'allow'],
      ['db.example.com', 'TCP', 5432, 'deny'],
    ]);
    assert.deepEqual(
      grantsFor(set, dev, canonicalName('db.example.com')).map((g) => g.verify),
      ['SNI'],
    );
    assert.equal(decideAddress(set, dev, '198.51.100.20', 'TCP', 5432).verdict, 'allow');
    assert.equal(decideAddress(set, dev, '198.51.100.20', 'TCP', 443).verdict, 'deny');
  });
});

describe('exportTo decides which pods are governed', async () => {
  const report = await load('istio', 'export-to.yaml');
  const set = compile(report);

  test('"." -> an EgressPolicy in the entry’s namespace', () => {
    const doc = report.documents.find((d) => d.document.metadata.name === 'own-namespace')?.document;
    assert.equal(doc?.kind, 'EgressPolicy');
    assert.equal(doc?.metadata.namespace, 'team-a');
    expectDecisions(set, pod('team-a', { app: 'x' }), [['api.team-a.example.com', 'TCP', 443, 'allow']]);
  });

  test('a list -> a ClusterEgressPolicy over exactly those namespaces', () => {
    expectDecisions(set, pod('team-b'), [
      ['shared.example.com', 'TCP', 8443, 'allow'],
      ['api.team-a.example.com', 'TCP', 443, 'deny'],
    ]);
    expectDecisions(set, pod('team-a'), [['shared.example.com', 'TCP', 8443, 'allow']]);
  });

  test('"*" -> every namespace; "~" -> nothing', () => {
    expectDecisions(set, pod('team-c'), [
      ['everyone.example.com', 'UDP', 53, 'allow'],
      ['everyone.example.com', 'TCP', 53, 'deny'],
      ['shared.example.com', 'TCP', 8443, 'deny'],
      ['hidden.example.com', 'TCP', 443, 'deny'],
    ]);
    assert.ok(!report.documents.some((d) => d.document.metadata.name.includes('hidden')));
    expectProblem(report.warnings, 'hidden', 'spec.exportTo', /no namespace/);
  });

  test('resolution NONE without addresses: the narrower meaning is reported', () => {
    expectProblem(report.warnings, 'shared', 'spec.ports', /any address/);
  });

  test('round trip through YAML keeps every decision', () => {
    const names = [
      'api.team-a.example.com',
      'shared.example.com',
      'everyone.example.com',
      'hidden.example.com',
    ];
    expectSameDecisions(set, roundTrip(report), [pod('team-a'), pod('team-b'), pod('team-c')], names, [
      ['TCP', 443],
      ['TCP', 8443],
      ['UDP', 53],
    ]);
  });
});

describe('a partial first-label wildcard is a string suffix in Istio', async () => {
  const report = await load('istio', 'partial.yaml');
  const set = compile(report);

  test('*gallerycdn.vsassets.io', () => {
    expectDecisions(set, pod('dev'), [
      ['gallerycdn.vsassets.io', 'TCP', 443, 'allow'],
      ['marketplace-gallerycdn.vsassets.io', 'TCP', 443, 'allow'],
      ['a.gallerycdn.vsassets.io', 'TCP', 443, 'allow'],
      ['a.b.xgallerycdn.vsassets.io', 'TCP', 443, 'allow'],
      ['vsassets.io', 'TCP', 443, 'deny'],
      ['gallerycdnx.vsassets.io', 'TCP', 443, 'deny'],
      ['gallery.cdn.vsassets.io', 'TCP', 443, 'deny'],
    ]);
    expectProblem(report.warnings, 'vscode-gallery', 'spec.hosts[0]', /ending in/);
  });
});

describe('MESH_INTERNAL entries are in-cluster traffic', async () => {
  const report = await load('istio', 'mesh-internal.yaml');
  test('nothing is converted, with warnings', () => {
    assert.equal(report.documents.length, 0);
    expectProblem(report.warnings, 'vm-app', 'spec.location', /NetworkPolicy/);
    expectProblem(report.warnings, 'vm-app', 'spec.workloadSelector', /not the pods that call it/);
  });
});

describe('broken ServiceEntries', async () => {
  const report = await load('istio', 'broken/malformed.yaml', true);
  test('give errors with field paths and no policies', () => {
    assert.equal(report.policies.length, 0);
    const expected: Array<[string, string, RegExp]> = [
      ['no-hosts', 'spec.hosts', /at least one host/],
      ['middle-star', 'spec.hosts[0]', /only at the start/],
      ['bad-export', 'spec.exportTo', /only entry/],
      ['bad-port', 'spec.ports[0].number', /port number/],
      ['bad-version', 'apiVersion', /not supported/],
      ['bad-address', 'spec.addresses[0]', /not an IP address/],
      // issue 13: hosts Istio's own validation refuses are errors, not wider policies
      ['star-host', 'spec.hosts[0]', /refuses "\*"/],
      ['idn-host', 'spec.hosts[0]', /not a DNS-1123 label/],
      ['underscore-host', 'spec.hosts[0]', /not a DNS-1123 label/],
      ['numeric-tld', 'spec.hosts[0]', /last label may not be a number/],
    ];
    for (const [object, path, message] of expected) expectProblem(report.errors, object, path, message);
  });

  test('arbitrary values anywhere never throw', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(
          'spec',
          'hosts',
          'host',
          'ports',
          'port',
          'exportTo',
          'addresses',
          'location',
          'metadata',
        ),
        fc.jsonValue({ maxDepth: 3 }),
        (where, junk) => {
          const port: Record<string, unknown> = { number: 443, protocol: 'TLS' };
          const spec: Record<string, unknown> = { hosts: ['a.example.com'], ports: [port] };
          const doc: Record<string, unknown> = {
            apiVersion: 'networking.istio.io/v1',
            kind: 'ServiceEntry',
            metadata: { name: 'se', namespace: 'ns' },
            spec,
          };
          if (where === 'spec' || where === 'metadata') doc[where] = junk;
          else if (where === 'host') spec['hosts'] = [junk];
          else if (where === 'port') port['number'] = junk;
          else spec[where] = junk;
          const result = istioImporter.convert(doc, { defaultNamespace: 'default' });
          if (result.errors.length > 0) assert.equal(result.documents.length, 0);
        },
      ),
      { numRuns: 300 },
    );
  });
});

/** Istio's host matcher (pkg/config/host, Name.Matches): a wildcard is a string suffix. */
function istioMatches(host: string, name: string): boolean {
  if (host === '*') return true;
  if (host.startsWith('*')) return name.endsWith(host.slice(1));
  return name === host;
}

describe('host conversion agrees with Istio’s suffix match', () => {
  test('on random names and hosts', () => {
    const labels = ['a', 'b', 'ab', 'foo', 'xfoo', 'x-foo', 'example', 'com'];
    const name = fc.array(fc.constantFrom(...labels), { minLength: 1, maxLength: 5 }).map((l) => l.join('.'));
    const host = fc
      .tuple(
        fc.constantFrom('', '*', '*.', '*x', '*-', '*f'),
        fc.array(fc.constantFrom(...labels), { minLength: 1, maxLength: 3 }),
      )
      .map(([prefix, rest]) => `${prefix}${rest.join('.')}`)
      .filter((h) => !/^\*[^.]/.test(h) || /^\*[a-z0-9-]+\./.test(h));
    fc.assert(
      fc.property(host, fc.array(name, { minLength: 1, maxLength: 20 }), (h, names) => {
        const c = new Conversion();
        const natives = istioHostToNative(c, h, 'h').map((t) => {
          const p = parsePattern(t, { allowPartialLabelWildcards: true, allowPublicSuffixWildcards: true });
          assert.ok(!(p instanceof Error), `${h} -> ${t}`);
          return p;
        });
        assert.ok(natives.length > 0, `${h}: ${c.errors.map((e) => e.message).join()}`);
        for (const n of names) {
          const ours = natives.some((p) => patternMatches(p, canonicalName(n)));
          assert.equal(ours, istioMatches(h, n), `${h} vs ${n}`);
        }
      }),
      { numRuns: 1000 },
    );
  });
});
