/**
 * Who a rejected document governs (REL-06; src/formats/subject.ts and the importers' `subject`
 * hooks): a table across dialects of invalid documents and the pods their deny-all policies govern, and
 * properties: for every valid fixture, the subject covers every policy the document converts to;
 * selectors come through unchanged.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { parseAllDocuments } from 'yaml';
import { validateNative } from '../../../src/formats/native.ts';
import { findImporter } from '../../../src/formats/registry.ts';
import { denyAll, readSubjects } from '../../../src/formats/subject.ts';
import { makeIdentity } from '../../../src/identity/identity.ts';
import { CompiledPolicies } from '../../../src/policy/compile.ts';
import type { Policy } from '../../../src/policy/model.ts';
import { fixture } from './helpers.ts';

const CONTEXT = { defaultNamespace: 'default' };
const WEB = { app: 'web' };
const RULE = { toFQDNs: [{ name: 'bad..name' }] };

function governing(doc: Record<string, unknown>): Policy[] | undefined {
  return denyAll(readSubjects(doc, CONTEXT), String((doc['metadata'] as { name: string }).name));
}

/** Which of a few pods the policies govern, and with which rules. */
function governed(policies: readonly Policy[]): string[] {
  const set = new CompiledPolicies(policies);
  const pods = {
    'shop/web(team=a)': makeIdentity('a', 'shop', WEB, { team: 'a' }),
    'shop/other(team=a)': makeIdentity('b', 'shop', { app: 'other' }, { team: 'a' }),
    'bank/web(team=b)': makeIdentity('c', 'bank', WEB, { team: 'b' }),
  };
  for (const p of policies) assert.deepEqual(p.rules, [], 'a deny-all policy allows nothing');
  return Object.entries(pods)
    .filter(([, pod]) => set.selection(pod).mode !== null)
    .map(([name, pod]) => `${name}:${set.selection(pod).mode}`);
}

const TABLE: Array<{ name: string; doc: Record<string, unknown>; governs: string[] | undefined }> = [
  {
    name: 'EgressPolicy: podSelector in its namespace',
    doc: {
      apiVersion: 'namegate.dev/v1alpha1',
      kind: 'EgressPolicy',
      metadata: { name: 'p', namespace: 'shop' },
      spec: { podSelector: { matchLabels: WEB }, egress: [RULE] },
    },
    governs: ['shop/web(team=a):Enforce'],
  },
  {
    name: 'ClusterEgressPolicy: namespace and pod selectors, mode Audit',
    doc: {
      apiVersion: 'namegate.dev/v1alpha1',
      kind: 'ClusterEgressPolicy',
      metadata: { name: 'p' },
      spec: {
        namespaceSelector: { matchLabels: { team: 'b' } },
        podSelector: { matchLabels: WEB },
        mode: 'Audit',
        egress: [RULE],
      },
    },
    governs: ['bank/web(team=b):Audit'],
  },
  {
    name: 'EgressPolicy: a mode that is not one reads as Enforce',
    doc: {
      apiVersion: 'namegate.dev/v1alpha1',
      kind: 'EgressPolicy',
      metadata: { name: 'p', namespace: 'shop' },
      spec: { mode: 'Permissive', egress: [RULE] },
    },
    governs: ['shop/web(team=a):Enforce', 'shop/other(team=a):Enforce'],
  },
  {
    name: 'CiliumNetworkPolicy: endpointSelector (egressDeny cannot be kept)',
    doc: {
      apiVersion: 'cilium.io/v2',
      kind: 'CiliumNetworkPolicy',
      metadata: { name: 'p', namespace: 'shop' },
      spec: {
        endpointSelector: { matchLabels: WEB },
        egressDeny: [{ toCIDR: ['10.0.0.0/8'] }],
      },
    },
    governs: ['shop/web(team=a):Enforce'],
  },
  {
    name: 'CiliumClusterwideNetworkPolicy: every spec',
    doc: {
      apiVersion: 'cilium.io/v2',
      kind: 'CiliumClusterwideNetworkPolicy',
      metadata: { name: 'p' },
      specs: [
        { endpointSelector: { matchLabels: WEB }, egressDeny: [{ toCIDR: ['10.0.0.0/8'] }] },
        { endpointSelector: { matchLabels: { app: 'other' } }, egress: [{ toFQDNs: [{}] }] },
      ],
    },
    governs: ['shop/web(team=a):Enforce', 'shop/other(team=a):Enforce', 'bank/web(team=b):Enforce'],
  },
  {
    name: 'ClusterNetworkPolicy: subject',
    doc: {
      apiVersion: 'policy.networking.k8s.io/v1alpha2',
      kind: 'ClusterNetworkPolicy',
      metadata: { name: 'p' },
      spec: {
        tier: 'Admin',
        priority: 10,
        subject: { namespaces: { matchLabels: { team: 'a' } } },
        egress: [{ action: 'Allow', to: [{ domainNames: ['a.example.com'] }] }],
      },
    },
    governs: ['shop/web(team=a):Enforce', 'shop/other(team=a):Enforce'],
  },
  {
    name: 'FQDNNetworkPolicy: podSelector',
    doc: {
      apiVersion: 'networking.gke.io/v1alpha1',
      kind: 'FQDNNetworkPolicy',
      metadata: { name: 'p', namespace: 'bank' },
      spec: { podSelector: { matchLabels: WEB }, egress: [{ matches: [{ name: 'bad..name' }] }] },
    },
    governs: ['bank/web(team=b):Enforce'],
  },
  {
    name: 'EgressPolicy: a podSelector that is not a selector cannot be read',
    doc: {
      apiVersion: 'namegate.dev/v1alpha1',
      kind: 'EgressPolicy',
      metadata: { name: 'p', namespace: 'shop' },
      spec: { podSelector: 'app=web', egress: [RULE] },
    },
    governs: undefined,
  },
  {
    name: 'ServiceEntry: no subject of its own (it adds hosts to the mesh registry)',
    doc: {
      apiVersion: 'networking.istio.io/v1',
      kind: 'ServiceEntry',
      metadata: { name: 'p', namespace: 'shop' },
      spec: { hosts: ['bad..name'] },
    },
    governs: undefined,
  },
  {
    name: 'FQDNNetworkPolicy: an invalid label key cannot be read',
    doc: {
      apiVersion: 'networking.gke.io/v1alpha1',
      kind: 'FQDNNetworkPolicy',
      metadata: { name: 'p', namespace: 'bank' },
      spec: { podSelector: { matchLabels: { 'no spaces': 'x' } }, egress: [] },
    },
    governs: undefined,
  },
];

describe('the subject of a rejected document', () => {
  for (const row of TABLE) {
    test(row.name, () => {
      const policies = governing(row.doc);
      assert.deepEqual(policies && governed(policies), row.governs);
    });
  }
});

/** Every document of the dialects' valid fixtures. */
function fixtureDocs(): Array<{ file: string; doc: Record<string, unknown> }> {
  const out: Array<{ file: string; doc: Record<string, unknown> }> = [];
  for (const dialect of ['cilium', 'gke', 'npep', 'istio'] as const) {
    const dir = path.dirname(fixture(dialect, 'x'));
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.yaml'))) {
      for (const d of parseAllDocuments(readFileSync(path.join(dir, file), 'utf8'))) {
        const doc = d.toJS() as Record<string, unknown> | null;
        if (doc) out.push({ file: `${dialect}/${file}`, doc });
      }
    }
  }
  return out;
}

const selecting = (p: Policy) =>
  JSON.stringify([p.ref.kind, p.namespace, p.podSelector, p.namespaceSelector, p.mode]);

describe('subject properties', () => {
  test('for every valid fixture, the subject covers every policy the document converts to', () => {
    let compared = 0;
    for (const { file, doc } of fixtureDocs()) {
      const importer = findImporter(String(doc['apiVersion']), String(doc['kind']));
      assert.ok(importer, file);
      const converted = importer.convert(doc, CONTEXT).documents.flatMap((d) => {
        const policy = validateNative(d, CONTEXT.defaultNamespace).policy;
        return policy ? [policy] : [];
      });
      if (converted.length === 0) continue;
      if (!importer.subject) continue; // Istio: documented as having no subject
      const denied = new Set((governing(doc) ?? []).map(selecting));
      for (const p of converted) assert.ok(denied.has(selecting(p)), `${file}: ${selecting(p)} not covered`);
      compared++;
    }
    assert.ok(compared >= 10, `only ${compared} fixture documents compared`);
  });

  test('selectors come through every dialect unchanged', () => {
    const key = fc.stringMatching(/^[a-z][a-z0-9]{0,8}$/);
    const value = fc.stringMatching(/^[a-z0-9]{1,8}$/);
    fc.assert(
      fc.property(fc.dictionary(key, value, { maxKeys: 4 }), (generated) => {
        const matchLabels = { ...generated };
        const selector = Object.keys(matchLabels).length > 0 ? { matchLabels } : {};
        const docs = [
          TABLE[0]?.doc,
          {
            apiVersion: 'cilium.io/v2',
            kind: 'CiliumNetworkPolicy',
            metadata: { name: 'p', namespace: 'shop' },
            spec: { endpointSelector: selector, egressDeny: [{ toCIDR: ['10.0.0.0/8'] }] },
          },
          {
            apiVersion: 'networking.gke.io/v1alpha1',
            kind: 'FQDNNetworkPolicy',
            metadata: { name: 'p', namespace: 'shop' },
            spec: { podSelector: selector, egress: [{ matches: [{ name: 'bad..name' }] }] },
          },
        ];
        for (const doc of docs) {
          const d = structuredClone(doc) as Record<string, unknown>;
          if (d['kind'] === 'EgressPolicy') (d['spec'] as Record<string, unknown>)['podSelector'] = selector;
          const [p, ...rest] = governing(d) ?? [];
          assert.equal(rest.length, 0);
          assert.deepEqual(p?.podSelector.matchLabels ?? {}, matchLabels, String(d['kind']));
        }
      }),
    );
  });
});
