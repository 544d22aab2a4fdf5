/**
 * docs/security.md maps every case of the threat list to what namegate does and the tests that
 * prove it. This keeps the map honest:
 * - every case ID of the threat list has a row, and the map has no ID the list does not know;
 *   the list's IDs live in the repository (test/testdata/security/case-ids.txt), so this runs on
 *   every machine; where the review's full list is present (/work/shared/reference/
 *   security-cases.md, or $NAMEGATE_SECURITY_CASES) the copy is checked against it too;
 * - no ID has two rows;
 * - every row names at least one test file, or says "N/A:" or "not testable here:" with a reason;
 * - every named test file exists and mentions the row's ID (tests tag the IDs they prove).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

const ROOT = path.resolve(import.meta.dirname, '../..');
const MAP = path.join(ROOT, 'docs/security.md');
const CASE_IDS = path.join(ROOT, 'test/testdata/security/case-ids.txt');
const REFERENCE = process.env['NAMEGATE_SECURITY_CASES'] ?? '/work/shared/reference/security-cases.md';
const ID = /^[A-Z][A-Z0-9]*-\d+$/;

interface Row {
  readonly id: string;
  readonly line: number;
  readonly text: string;
  readonly files: readonly string[];
}

/** The case rows: table lines whose first cell is exactly one case ID. */
function rows(markdown: string): Row[] {
  const out: Row[] = [];
  markdown.split('\n').forEach((text, i) => {
    const m = /^\|\s*([^|]+?)\s*\|/.exec(text);
    if (!m || !ID.test(m[1]!)) return;
    const files = [...new Set(text.match(/\btest\/[A-Za-z0-9_./-]+\.ts\b/g) ?? [])];
    out.push({ id: m[1]!, line: i + 1, text, files });
  });
  return out;
}

/** Case IDs of the reference list: lines "- ID | attack -> behaviour | evidence". */
function referenceIds(markdown: string): string[] {
  return [...markdown.matchAll(/^- ([A-Z][A-Z0-9]*-\d+) \|/gm)].map((m) => m[1]!);
}

/** The repository's copy of the list: one ID a line, "#" comments. */
function caseIds(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

function mentions(text: string, id: string): boolean {
  return new RegExp(`(?<![A-Z0-9-])${id}(?![0-9])`).test(text);
}

describe('docs/security.md', () => {
  const map = readFileSync(MAP, 'utf8');
  const all = rows(map);

  test('has case rows, and no ID twice', () => {
    assert.ok(all.length > 0, 'no case rows found');
    const seen = new Map<string, number>();
    for (const r of all) {
      assert.ok(!seen.has(r.id), `${r.id} has two rows (lines ${seen.get(r.id)} and ${r.line})`);
      seen.set(r.id, r.line);
    }
  });

  test('every row names a test file or says why it has none', () => {
    for (const r of all) {
      assert.ok(
        r.files.length > 0 || /\bN\/A:|\bnot testable here:/.test(r.text),
        `${r.id} (line ${r.line}): no test file, and no "N/A:" or "not testable here:" reason`,
      );
    }
  });

  test('every named test file exists and tags the row ID', () => {
    const problems: string[] = [];
    for (const r of all) {
      for (const f of r.files) {
        const file = path.join(ROOT, f);
        if (!existsSync(file)) problems.push(`${r.id} (line ${r.line}): ${f} does not exist`);
        else if (!mentions(readFileSync(file, 'utf8'), r.id))
          problems.push(`${r.id} (line ${r.line}): ${f} does not mention ${r.id}`);
      }
    }
    assert.deepEqual(problems, []);
  });

  test('every case of the threat list has a row, and every row is a case of the list', () => {
    const ids = caseIds(readFileSync(CASE_IDS, 'utf8'));
    assert.ok(ids.length > 0, `no case IDs read from ${CASE_IDS}`);
    for (const id of ids) assert.match(id, ID, `${CASE_IDS}: ${id} is not a case ID`);
    const mapped = new Set(all.map((r) => r.id));
    const known = new Set(ids);
    assert.deepEqual(
      ids.filter((id) => !mapped.has(id)),
      [],
      'case IDs without a row in docs/security.md',
    );
    assert.deepEqual(
      all.filter((r) => !known.has(r.id)).map((r) => r.id),
      [],
      'rows for IDs the threat list does not have',
    );
  });

  test("the repository's list is the review's list, where that is on this machine", (t) => {
    if (!existsSync(REFERENCE)) return t.skip(`${REFERENCE} is not on this machine`);
    const ids = referenceIds(readFileSync(REFERENCE, 'utf8'));
    assert.ok(ids.length > 0, `no case IDs read from ${REFERENCE}`);
    assert.deepEqual(caseIds(readFileSync(CASE_IDS, 'utf8')), ids, `${CASE_IDS} differs from ${REFERENCE}`);
  });
});
