/**
 * Cilium toPorts.rules.http (with terminatingTLS / originatingTLS) -> verify: Inspect with HTTP
 * rules; what cannot be said is an error, never a wider allow.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { canonicalName } from '../../../src/core/names.ts';
import { decideRequest } from '../../../src/policy/decide-request.ts';
import { inspectionFor } from '../../../src/policy/inspection.ts';
import { compile, describeProblem, loadYaml, pod, roundTrip } from './helpers.ts';

const cnp = (http: string, extra = '') => `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: gh, namespace: ci }
spec:
  endpointSelector: { matchLabels: { app: builder } }
  egress:
  - toFQDNs: [{ matchName: api.github.com }]
    toPorts:
    - ports: [{ port: "443", protocol: TCP }]
${extra}      rules:
        http:
${http}
`;

const builder = pod('ci', { app: 'builder' });
const api = canonicalName('api.github.com');
const ask = (
  report: ReturnType<typeof loadYaml>,
  method: string,
  path: string,
  headers: Array<[string, string]> = [],
) => {
  const set = compile(report);
  const i = inspectionFor(set, builder, api, 443);
  assert.equal(i.inspect, true);
  return decideRequest(i.rules, 'Enforce', { method, host: api, path, headers, websocket: false }).verdict;
};

describe('Cilium http rules', () => {
  test('method alternation, path regex (whole path), headers and headerMatches keep their meaning', () => {
    const report = loadYaml(
      cnp(
        `        - method: "GET|HEAD"
          path: "/repos/org/[^/]+"
        - method: POST
          path: "/repos/org/x/issues"
          headers: ["X-Api: 1"]
          headerMatches: [{ name: content-type, value: application/json }]`,
        `      terminatingTLS: { secret: { name: ca, namespace: kube-system } }
      originatingTLS: { secret: { name: roots, namespace: kube-system } }
`,
      ),
    );
    assert.deepEqual(report.errors.map(describeProblem), []);
    assert.equal(ask(report, 'GET', '/repos/org/a'), 'allow');
    assert.equal(ask(report, 'HEAD', '/repos/org/a'), 'allow');
    assert.equal(ask(report, 'GET', '/repos/org/a/b'), 'deny', 'a Cilium path regex matches the whole path');
    assert.equal(ask(report, 'DELETE', '/repos/org/a'), 'deny');
    assert.equal(
      ask(report, 'POST', '/repos/org/x/issues', [
        ['x-api', '1'],
        ['content-type', 'application/json'],
      ]),
      'allow',
    );
    assert.equal(ask(report, 'POST', '/repos/org/x/issues', [['x-api', '1']]), 'deny');
    assert.ok(
      report.warnings.some((w) => /terminatingTLS/.test(w.path) && /verify: Inspect/.test(w.message)),
    );
    // What `namegate convert` prints means the same.
    const back = roundTrip(report);
    assert.equal(inspectionFor(back, builder, api, 443).inspect, true);
  });

  test('a literal host regex narrows the rule to that host', () => {
    const report = loadYaml(cnp(`        - host: "api\\\\.github\\\\.com"`));
    assert.deepEqual(report.errors.map(describeProblem), []);
    assert.equal(ask(report, 'GET', '/'), 'allow');
  });

  for (const [label, http, extra, path] of [
    ['a method regex that is not a list of methods', '        - method: "G.*"', '', 'method'],
    ['a host pattern', '        - host: ".*\\\\.github\\\\.com"', '', 'host'],
    [
      'a header from a Secret',
      '        - headerMatches: [{ name: token, secret: { name: s, namespace: n } }]',
      '',
      'secret',
    ],
    [
      'a header rewrite on mismatch',
      '        - headerMatches: [{ name: x, value: y, mismatch: ADD }]',
      '',
      'mismatch',
    ],
    ['a path RE2 cannot run', '        - path: "/(a)\\\\1"', '', 'path'],
  ] as const) {
    test(`${label} is an error (never a wider allow)`, () => {
      const report = loadYaml(cnp(http, extra));
      assert.ok(
        report.errors.some((e) => e.path.includes(path)),
        JSON.stringify(report.errors.map(describeProblem)),
      );
      assert.equal(report.policies.length, 0);
    });
  }

  test('kafka rules are an error (namegate inspects HTTP only)', () => {
    const report = loadYaml(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: k, namespace: ci }
spec:
  endpointSelector: {}
  egress:
  - toFQDNs: [{ matchName: kafka.example.com }]
    toPorts:
    - ports: [{ port: "9092", protocol: TCP }]
      rules: { kafka: [{ topic: t }] }
`);
    assert.ok(report.errors.some((e) => e.path.endsWith('rules.kafka')));
  });
});
