/**
 * Test helpers for the dialect importers: load a fixture the way every command does, compile
 * what it converts to, and ask decide()/decideQuery() about names on both sides of a boundary.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { canonicalName } from '../../../src/core/names.ts';
import { type FileProblem, type LoadReport, loadPolicies, loadText } from '../../../src/formats/load.ts';
import { validateNative } from '../../../src/formats/native.ts';
import type { Dialect } from '../../../src/formats/registry.ts';
import { makeIdentity } from '../../../src/identity/identity.ts';
import { CompiledPolicies } from '../../../src/policy/compile.ts';
import { decide, decideQuery } from '../../../src/policy/decide.ts';
import type { Identity, Policy, Protocol } from '../../../src/policy/model.ts';
import type { Labels } from '../../../src/policy/selector.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '../../..');

export function fixture(dialect: Dialect, file: string): string {
  return path.join(REPO, 'test/testdata/formats', dialect, file);
}

/** Load one fixture file; errors fail the test unless `allowErrors`. */
export async function load(dialect: Dialect, file: string, allowErrors = false): Promise<LoadReport> {
  const report = await loadPolicies([fixture(dialect, file)]);
  if (!allowErrors) assert.deepEqual(report.errors.map(describeProblem), [], `unexpected errors in ${file}`);
  return report;
}

/** Load YAML text without touching the disk. */
export function loadYaml(text: string): LoadReport {
  const report: LoadReport = { policies: [], errors: [], warnings: [], documents: [] };
  loadText(text, 'inline.yaml', {}, report);
  return report;
}

export function describeProblem(p: FileProblem): string {
  return `${p.object}: ${p.path}: ${p.message}`;
}

export function compile(report: LoadReport): CompiledPolicies {
  return new CompiledPolicies(report.policies.map((p) => p.policy));
}

/**
 * The converted documents written out as YAML, read back and validated as native policies:
 * what `namegate convert` prints must mean what the importer produced.
 */
export function roundTrip(report: LoadReport): CompiledPolicies {
  const policies: Policy[] = [];
  for (const { document } of report.documents) {
    const text = stringify(JSON.parse(JSON.stringify(document)), { lineWidth: 0 });
    const result = validateNative(parse(text));
    assert.deepEqual(result.errors, [], `round trip of ${document.metadata.name}`);
    assert.ok(result.policy);
    policies.push(result.policy);
  }
  return new CompiledPolicies(policies);
}

export function pod(namespace: string, labels: Labels = {}, namespaceLabels: Labels = {}): Identity {
  return makeIdentity(`pod:${namespace}/${JSON.stringify(labels)}`, namespace, labels, namespaceLabels);
}

/** [name, protocol, port, expected verdict] */
export type Case = readonly [string, Protocol, number, 'allow' | 'deny'];

/** Every case through decide(); for allowed names decideQuery() must allow too. */
export function expectDecisions(set: CompiledPolicies, who: Identity, cases: readonly Case[]): void {
  for (const [name, protocol, port, verdict] of cases) {
    const d = decide(set, who, canonicalName(name), protocol, port);
    assert.equal(d.verdict, verdict, `${who.key} -> ${name} ${protocol}/${port}: ${d.verdict} (${d.reason})`);
    if (verdict === 'allow') {
      assert.equal(decideQuery(set, who, canonicalName(name)).verdict, 'allow', `query ${name}`);
    }
  }
}

/** decideQuery(): may the source resolve the name at all? */
export function expectQueries(
  set: CompiledPolicies,
  who: Identity,
  cases: ReadonlyArray<readonly [string, 'allow' | 'deny']>,
): void {
  for (const [name, verdict] of cases) {
    const d = decideQuery(set, who, canonicalName(name));
    assert.equal(d.verdict, verdict, `${who.key} resolves ${name}: ${d.verdict} (${d.reason})`);
  }
}

/** The same decisions from the loaded set and from its YAML round trip. */
export function expectSameDecisions(
  a: CompiledPolicies,
  b: CompiledPolicies,
  who: readonly Identity[],
  names: readonly string[],
  ports: ReadonlyArray<readonly [Protocol, number]>,
): void {
  for (const id of who) {
    for (const name of names) {
      for (const [protocol, port] of ports) {
        const n = canonicalName(name);
        assert.deepEqual(
          decide(b, id, n, protocol, port),
          decide(a, id, n, protocol, port),
          `${id.key} ${name}`,
        );
      }
    }
  }
}

/** A problem whose path ends with `pathEnd` and whose message matches. */
export function findProblem(
  problems: readonly FileProblem[],
  object: string,
  pathEnd: string,
  message: RegExp,
): FileProblem | undefined {
  return problems.find(
    (p) => p.object.includes(object) && p.path.endsWith(pathEnd) && message.test(p.message),
  );
}

export function expectProblem(
  problems: readonly FileProblem[],
  object: string,
  pathEnd: string,
  message: RegExp,
): void {
  const found = findProblem(problems, object, pathEnd, message);
  assert.ok(
    found,
    `no problem for ${object} at ...${pathEnd} matching ${message}; got:\n${problems.map(describeProblem).join('\n')}`,
  );
}
