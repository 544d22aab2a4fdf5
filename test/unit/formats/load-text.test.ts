/**
 * What loading a text reports before any dialect sees it: unrendered `{{ }}` templates (with their
 * line), the YAML library's warnings as problems, and keys JSON cannot have.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { findPlaceholder } from '../../../src/formats/load.ts';
import { loadYaml } from './helpers.ts';

const POLICY = [
  'apiVersion: namegate.dev/v1alpha1',
  'kind: EgressPolicy',
  'metadata: {name: p, namespace: a}',
  'spec:',
  '  podSelector: {}',
  '  egress: [{toFQDNs: [{name: a.example.com}]}]',
];

describe('unrendered templates', () => {
  test('a placeholder on any line outside a comment is reported at that line, and nothing is loaded', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: POLICY.length - 1 }),
        fc.constantFrom('{{ .Values.name }}', '{{- include "x" . }}', '{{index .Ports 0}}'),
        (at, placeholder) => {
          const lines = [...POLICY];
          lines[at] = `${lines[at]} ${placeholder}`;
          const report = loadYaml(lines.join('\n'));
          assert.equal(report.policies.length, 0);
          assert.equal(report.errors.length, 1, JSON.stringify(report.errors));
          assert.match(
            report.errors[0]?.message ?? '',
            new RegExp(`unrendered template: .* at line ${at + 1};`),
          );
        },
      ),
      { numRuns: 100 },
    );
  });

  test('comments may hold placeholders; text without "{{" never has one', () => {
    const report = loadYaml(['# rendered from {{ .Chart.Name }}', ...POLICY, '  # {{ end }}'].join('\n'));
    assert.deepEqual(report.errors, []);
    assert.equal(report.policies.length, 1);
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (text) => {
        fc.pre(!text.includes('{{'));
        assert.equal(findPlaceholder(text, 0, text.length), undefined);
      }),
    );
  });
});

describe('what the YAML library would only have printed', () => {
  test('an unresolved tag is a warning of namegate, a collection key an error', () => {
    const tagged = loadYaml(POLICY.join('\n').replace('podSelector: {}', 'podSelector: !custom {}'));
    assert.match(tagged.warnings.map((w) => w.message).join('\n'), /YAML: Unresolved tag: !custom/);
    const keyed = loadYaml(
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n  ? [a, b]\n  : c\n',
    );
    assert.match(keyed.errors[0]?.message ?? '', /a mapping key is itself a mapping or a list/);
  });
});
