/**
 * The structure of namegate.dev/v1alpha1 documents, as zod schemas. One source of truth: the
 * validator (native.ts) parses with these, and the CRD generator (src/k8s/crd.ts) turns the same
 * schemas into OpenAPI. Meaning (names, patterns, CIDRs, port ranges) is checked in native.ts,
 * which can explain problems better than a schema can.
 */
import { z } from 'zod';

export const LabelSelectorSchema = z
  .strictObject({
    matchLabels: z.record(z.string(), z.string()).optional().describe('Labels that must all be present.'),
    matchExpressions: z
      .array(
        z.strictObject({
          key: z.string(),
          operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
          values: z.array(z.string()).optional(),
        }),
      )
      .optional(),
  })
  .describe('A Kubernetes label selector; empty selects everything.');

export const FqdnSelectorSchema = z
  .strictObject({
    name: z.string().optional().describe('An exact domain name, e.g. api.example.com.'),
    pattern: z
      .string()
      .optional()
      .describe('*.example.com (one label in front) or **.example.com (one or more labels in front).'),
  })
  .describe('Exactly one of name or pattern.');

export const PortSchema = z.strictObject({
  port: z.number().int().min(1).max(65535),
  endPort: z.number().int().min(1).max(65535).optional().describe('Last port of a range, inclusive.'),
  protocol: z.enum(['TCP', 'UDP']).default('TCP'),
});

export const CidrSchema = z.strictObject({
  cidr: z.string().describe('An IPv4 or IPv6 network, e.g. 203.0.113.0/24.'),
  except: z.array(z.string()).optional().describe('Networks inside cidr that stay closed.'),
});

export const HttpRuleSchema = z
  .strictObject({
    methods: z.array(z.string()).optional().describe('Upper-case methods, e.g. [GET, HEAD]; absent: any.'),
    path: z
      .strictObject({
        exact: z.string().optional(),
        prefix: z.string().optional(),
        regex: z.string().optional().describe('RE2 syntax, matched against the whole path.'),
      })
      .optional()
      .describe('Exactly one of exact, prefix or regex, over the canonical path (no query); absent: any.'),
    headers: z
      .array(
        z.strictObject({
          name: z.string(),
          value: z.string().optional().describe('The exact value (after trimming).'),
          regex: z.string().optional().describe('RE2 syntax, matched against the whole value.'),
        }),
      )
      .optional()
      .describe('Each must hold; with neither value nor regex the field must be present.'),
    hosts: z
      .array(z.string())
      .optional()
      .describe("Names or patterns inside the rule's toFQDNs this HTTP rule is limited to."),
    websocket: z.boolean().optional().describe('Allow websocket upgrades on matching requests.'),
  })
  .describe('One allowed kind of request; a request matching no HTTP rule of the rule is denied.');

export const RuleSchema = z.strictObject({
  toFQDNs: z.array(FqdnSelectorSchema).optional(),
  toCIDRs: z.array(CidrSchema).optional(),
  ports: z.array(PortSchema).optional().describe('Empty means every port of TCP and UDP.'),
  verify: z
    .enum(['None', 'SNI', 'Inspect'])
    .default('None')
    .describe(
      'SNI: connections on these ports must name (TLS SNI or HTTP Host) what they resolved. Inspect: SNI, then TLS is terminated with the inspection CA and every request must match an http rule.',
    ),
  http: z.array(HttpRuleSchema).optional().describe('verify: Inspect only: the requests allowed.'),
  passThrough: z
    .array(FqdnSelectorSchema)
    .optional()
    .describe(
      'verify: Inspect only: names of toFQDNs never inspected (certificate-pinning clients); SNI checks only.',
    ),
});

const commonSpec = {
  podSelector: LabelSelectorSchema.optional(),
  mode: z.enum(['Enforce', 'Audit']).default('Enforce'),
  allowPublicSuffixWildcards: z
    .boolean()
    .optional()
    .describe('Allow wildcards whose fixed part is a public suffix, such as *.com.'),
  allowPartialLabelWildcards: z
    .boolean()
    .optional()
    .describe("Allow '*' inside a label (Cilium's meaning); set by importers, rarely by hand."),
  egress: z.array(RuleSchema).optional().describe('Allow rules; none means the selected pods reach nothing.'),
};

export const EgressPolicySpecSchema = z.strictObject(commonSpec);

export const ClusterEgressPolicySpecSchema = z.strictObject({
  ...commonSpec,
  namespaceSelector: LabelSelectorSchema.optional(),
});

export const MetadataSchema = z.looseObject({
  name: z.string(),
  namespace: z.string().optional(),
  generation: z.number().int().optional(),
});

export const ConditionSchema = z.looseObject({
  type: z.string(),
  status: z.enum(['True', 'False', 'Unknown']),
  reason: z.string(),
  message: z.string(),
  observedGeneration: z.number().int().optional(),
  lastTransitionTime: z.string(),
});

export const StatusSchema = z.looseObject({
  observedGeneration: z.number().int().optional(),
  conditions: z.array(ConditionSchema).optional(),
  rules: z.number().int().optional(),
  governedPods: z.number().int().optional(),
});

export type EgressPolicySpecInput = z.input<typeof EgressPolicySpecSchema>;
export type ClusterEgressPolicySpecInput = z.input<typeof ClusterEgressPolicySpecSchema>;
export type RuleInput = z.input<typeof RuleSchema>;
