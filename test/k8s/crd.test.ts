/**
 * The CRDs generated from the zod schema against a real kube-apiserver: accepted, structural,
 * served with their printer columns and status subresource, and a differential test: every
 * fixture gets the same verdict from zod and from the API server validating the emitted schema.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse } from 'yaml';
import { ClusterEgressPolicySpecSchema, EgressPolicySpecSchema } from '../../src/formats/native-schema.ts';
import type { KubeApi } from '../../src/k8s/api.ts';
import { generateCrds, type JsonSchema, toStructural } from '../../src/k8s/crd.ts';
import { ensureNamespace, TestApiServer } from './apiserver.ts';
import { apply, installCrds } from './helpers.ts';

const FIXTURES = path.resolve(import.meta.dirname, '../testdata/k8s/differential.yaml');

interface Case {
  name: string;
  kind: 'EgressPolicy' | 'ClusterEgressPolicy';
  valid: boolean;
  spec: unknown;
}

describe('toStructural', () => {
  test('drops additionalProperties:false and zod safe-integer bounds, keeps real bounds', () => {
    const out = toStructural({
      type: 'object',
      additionalProperties: false,
      properties: { n: { type: 'integer', minimum: -9007199254740991, maximum: 65535 } },
    });
    assert.deepEqual(out, { type: 'object', properties: { n: { type: 'integer', maximum: 65535 } } });
  });
  test('turns open objects into preserve-unknown-fields', () => {
    assert.deepEqual(toStructural({ type: 'object', additionalProperties: {} }), {
      type: 'object',
      'x-kubernetes-preserve-unknown-fields': true,
    });
  });
  test('refuses what a CRD cannot carry', () => {
    assert.throws(() => toStructural({ $ref: '#/x' }), /\$ref/);
    assert.throws(
      () => toStructural({ type: 'array', uniqueItems: true, items: { type: 'string' } }),
      /uniqueItems/,
    );
    assert.throws(
      () => toStructural({ type: 'object', properties: { a: { description: 'untyped' } } }),
      /\.a: .*type/,
    );
    assert.throws(() => toStructural({ anyOf: [{ type: 'string' }] }), /anyOf/);
  });
  test('the generated schemas have no $ref, $schema or additionalProperties:false anywhere', () => {
    const text = JSON.stringify(generateCrds());
    assert.doesNotMatch(text, /"\$ref"|"\$schema"|"additionalProperties":false/);
  });
});

describe('CRDs on a real API server', () => {
  let server: TestApiServer;
  let api: KubeApi;

  before(async () => {
    server = await TestApiServer.start();
    api = server.adminApi();
    await installCrds(api);
    await ensureNamespace(api, 'diff');
  });
  after(async () => {
    await server?.stop();
  });

  test('both CRDs are accepted, structural, with status subresource and printer columns', async () => {
    for (const name of ['egresspolicies.namegate.dev', 'clusteregresspolicies.namegate.dev']) {
      const crd = await api.get<{
        spec: {
          versions: Array<{
            subresources?: { status?: unknown };
            additionalPrinterColumns?: Array<{ name: string }>;
          }>;
        };
        status: { conditions: Array<{ type: string; status: string }> };
      }>(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`);
      const cond = (t: string) => crd.status.conditions.find((c) => c.type === t)?.status;
      assert.equal(cond('Established'), 'True', name);
      assert.notEqual(cond('NonStructuralSchema'), 'True', `${name} must be structural`);
      const v = crd.spec.versions[0]!;
      assert.ok(v.subresources?.status !== undefined, 'status subresource');
      assert.deepEqual(
        v.additionalPrinterColumns?.map((c) => c.name),
        ['Mode', 'Accepted', 'Rules', 'Governed Pods', 'Age'],
      );
    }
  });

  test('differential: zod and the API server agree on every fixture', async () => {
    const cases = parse(readFileSync(FIXTURES, 'utf8')) as Case[];
    assert.ok(cases.length >= 20);
    const disagreements: string[] = [];
    for (const c of cases) {
      const schema = c.kind === 'EgressPolicy' ? EgressPolicySpecSchema : ClusterEgressPolicySpecSchema;
      const zodOk = schema.safeParse(c.spec).success;
      let serverOk = true;
      let serverMessage = '';
      try {
        await apply(
          api,
          {
            apiVersion: 'namegate.dev/v1alpha1',
            kind: c.kind,
            metadata: { name: c.name, ...(c.kind === 'EgressPolicy' ? { namespace: 'diff' } : {}) },
            spec: c.spec as JsonSchema,
          },
          { dryRun: true },
        );
      } catch (err) {
        serverOk = false;
        serverMessage = err instanceof Error ? err.message : String(err);
      }
      if (zodOk !== c.valid || serverOk !== c.valid) {
        disagreements.push(
          `${c.name}: expected ${c.valid}, zod ${zodOk}, api server ${serverOk} ${serverMessage}`,
        );
      }
    }
    assert.deepEqual(disagreements, []);
  });

  test('defaults from the zod schema are applied by the API server', async () => {
    const got = await apply(api, {
      apiVersion: 'namegate.dev/v1alpha1',
      kind: 'EgressPolicy',
      metadata: { name: 'defaults', namespace: 'diff' },
      spec: { egress: [{ toFQDNs: [{ name: 'a.example' }], ports: [{ port: 443 }] }] },
    });
    const spec = got['spec'] as {
      mode: string;
      egress: Array<{ verify: string; ports: Array<{ protocol: string }> }>;
    };
    assert.equal(spec.mode, 'Enforce');
    assert.equal(spec.egress[0]?.verify, 'None');
    assert.equal(spec.egress[0]?.ports[0]?.protocol, 'TCP');
  });
});
