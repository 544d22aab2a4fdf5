/**
 * CustomResourceDefinitions for EgressPolicy and ClusterEgressPolicy, generated from the zod
 * schemas the engine validates with (src/formats/native-schema.ts): one source of truth.
 *
 * zod's OpenAPI 3.0 output is close to what the API server wants but not structural. toStructural
 * fixes that: it drops additionalProperties:false (strict objects; the API server rejects the
 * keyword, and rejects unknown fields itself with fieldValidation=Strict), turns open objects
 * into x-kubernetes-preserve-unknown-fields, removes the JavaScript safe-integer bounds zod adds
 * to every integer, and then checks what apiextensions requires: no $ref or $schema, no
 * uniqueItems, and a type on every node. A schema it cannot make structural is an error at
 * generation time, never a CRD the API server rejects at install time.
 */
import { stringify } from 'yaml';
import { z } from 'zod';
import {
  ClusterEgressPolicySpecSchema,
  EgressPolicySpecSchema,
  StatusSchema,
} from '../formats/native-schema.ts';
import { API_GROUP, type PolicyKind } from '../policy/model.ts';
import type { ResourceType } from './api.ts';

export const CRD_VERSION = 'v1alpha1';

export const EGRESS_POLICY: ResourceType = {
  group: API_GROUP,
  version: CRD_VERSION,
  plural: 'egresspolicies',
  kind: 'EgressPolicy',
  namespaced: true,
};

export const CLUSTER_EGRESS_POLICY: ResourceType = {
  group: API_GROUP,
  version: CRD_VERSION,
  plural: 'clusteregresspolicies',
  kind: 'ClusterEgressPolicy',
  namespaced: false,
};

export const NATIVE_RESOURCES: Readonly<Record<PolicyKind, ResourceType>> = {
  EgressPolicy: EGRESS_POLICY,
  ClusterEgressPolicy: CLUSTER_EGRESS_POLICY,
};

export type JsonSchema = { [key: string]: unknown };

const SAFE_INT = Number.MAX_SAFE_INTEGER;

/** Make a zod OpenAPI 3.0 schema structural (see the file comment); throws on what it cannot fix. */
export function toStructural(schema: JsonSchema, at = ''): JsonSchema {
  const out: JsonSchema = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === '$schema' || key === 'id' || key === '$id') continue;
    if (key === '$ref' || key === '$defs' || key === 'definitions') {
      throw new Error(`${at || '(root)'}: ${key} cannot be used in a CRD schema`);
    }
    if (key === 'uniqueItems' && value === true)
      throw new Error(`${at}: uniqueItems cannot be true in a CRD schema`);
    if ((key === 'minimum' && value === -SAFE_INT) || (key === 'maximum' && value === SAFE_INT)) continue;
    if (key === 'additionalProperties') {
      if (value === false) continue;
      if (value === true || (isObject(value) && Object.keys(value).length === 0)) {
        out['x-kubernetes-preserve-unknown-fields'] = true;
        continue;
      }
      out[key] = toStructural(value as JsonSchema, `${at}.*`);
      continue;
    }
    if (key === 'properties' && isObject(value)) {
      const props: JsonSchema = {};
      for (const [name, sub] of Object.entries(value))
        props[name] = toStructural(sub as JsonSchema, `${at}.${name}`);
      out[key] = props;
      continue;
    }
    if (key === 'items') {
      if (Array.isArray(value)) throw new Error(`${at}: tuple items cannot be used in a CRD schema`);
      out[key] = toStructural(value as JsonSchema, `${at}[]`);
      continue;
    }
    if ((key === 'anyOf' || key === 'oneOf' || key === 'allOf' || key === 'not') && value !== undefined) {
      throw new Error(`${at}: ${key} is not supported by the CRD generator`);
    }
    out[key] = value;
  }
  if (typeof out['type'] !== 'string' && out['x-kubernetes-preserve-unknown-fields'] !== true) {
    throw new Error(`${at || '(root)'}: every node of a CRD schema needs a type`);
  }
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function openApiOf(schema: z.ZodType): JsonSchema {
  return toStructural(z.toJSONSchema(schema, { target: 'openapi-3.0', io: 'input' }) as JsonSchema);
}

function statusSchema(): JsonSchema {
  const status = openApiOf(StatusSchema);
  const props = status['properties'] as Record<string, JsonSchema>;
  // Conditions are keyed by type, as metav1.Condition lists are: server-side apply merges by it.
  props['conditions'] = {
    ...props['conditions'],
    'x-kubernetes-list-type': 'map',
    'x-kubernetes-list-map-keys': ['type'],
  };
  return status;
}

const PRINTER_COLUMNS = [
  { name: 'Mode', type: 'string', jsonPath: '.spec.mode', description: 'Enforce or Audit' },
  {
    name: 'Accepted',
    type: 'string',
    jsonPath: '.status.conditions[?(@.type=="Accepted")].status',
    description: 'Whether the policy is valid and in force',
  },
  { name: 'Rules', type: 'integer', jsonPath: '.status.rules', description: 'Number of egress rules' },
  {
    name: 'Governed Pods',
    type: 'integer',
    jsonPath: '.status.governedPods',
    description: 'Pods with an IP that the policy selects',
  },
  { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
];

function crd(resource: ResourceType, spec: z.ZodType, shortName: string, description: string): JsonSchema {
  const singular = resource.kind.toLowerCase();
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: `${resource.plural}.${resource.group}`,
      labels: { 'app.kubernetes.io/name': 'namegate', 'app.kubernetes.io/component': 'crd' },
      annotations: { 'namegate.dev/generated-by': 'namegate crds (src/k8s/crd.ts); do not edit' },
    },
    spec: {
      group: resource.group,
      scope: resource.namespaced ? 'Namespaced' : 'Cluster',
      names: {
        kind: resource.kind,
        listKind: `${resource.kind}List`,
        plural: resource.plural,
        singular,
        shortNames: [shortName],
        categories: ['namegate'],
      },
      versions: [
        {
          name: resource.version,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: PRINTER_COLUMNS,
          schema: {
            openAPIV3Schema: {
              description,
              type: 'object',
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec: openApiOf(spec),
                status: statusSchema(),
              },
            },
          },
        },
      ],
    },
  };
}

/** Both CRDs, in a stable order. */
export function generateCrds(): JsonSchema[] {
  return [
    crd(
      EGRESS_POLICY,
      EgressPolicySpecSchema,
      'egp',
      'EgressPolicy: the domain names and networks the selected pods of this namespace may reach.',
    ),
    crd(
      CLUSTER_EGRESS_POLICY,
      ClusterEgressPolicySpecSchema,
      'cegp',
      'ClusterEgressPolicy: the domain names and networks the selected pods of the selected namespaces may reach.',
    ),
  ];
}

/** One CRD as a YAML document, as committed under deploy/crds/. */
export function crdYaml(doc: JsonSchema): string {
  return `# Generated by \`namegate crds\` from src/formats/native-schema.ts. Do not edit.\n${stringify(doc, { lineWidth: 0 })}`;
}

export function crdsYaml(): string {
  return generateCrds()
    .map((d) => crdYaml(d))
    .join('---\n');
}

/** File name under deploy/crds/ for a generated CRD. */
export function crdFileName(doc: JsonSchema): string {
  return `${(doc['metadata'] as { name: string }).name}.yaml`;
}
