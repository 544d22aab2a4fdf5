/**
 * The tour's table: pod | target | expected | observed | reason, one row per check, with a
 * summary line. Colour (green when observed equals expected, red when not) only when asked, and
 * applied after padding so columns line up either way. Pure: rows in, lines out.
 */
import type { Verdict } from './observe.ts';

export interface TableRow {
  readonly pod: string;
  readonly target: string;
  readonly expected: Verdict;
  readonly observed: Verdict;
  readonly reason: string;
}

const HEADERS = ['pod', 'target', 'expected', 'observed', 'reason'] as const;
const MAX_CELL = 60;

function paint(on: boolean, code: number, text: string): string {
  return on ? `\u001b[${code}m${text}\u001b[0m` : text;
}

function clip(s: string): string {
  // One line per row, bounded: client output can carry anything.
  const flat = s.replace(/\s+/g, ' ').trim();
  return flat.length > MAX_CELL ? `${flat.slice(0, MAX_CELL - 3)}...` : flat;
}

export function matches(row: TableRow): boolean {
  return row.expected === row.observed;
}

export function formatTable(
  rows: readonly TableRow[],
  options: { readonly colour?: boolean } = {},
): string[] {
  const on = options.colour === true;
  const cells = rows.map((r) => [clip(r.pod), clip(r.target), r.expected, r.observed, clip(r.reason)]);
  const widths = HEADERS.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (cols: readonly string[]) =>
    cols
      .map((c, i) => (i === cols.length - 1 ? c : c.padEnd(widths[i]!)))
      .join(' | ')
      .trimEnd();
  const out = [paint(on, 1, line(HEADERS)), widths.map((w) => '-'.repeat(w)).join('-+-')];
  rows.forEach((r, i) => {
    const c = cells[i]!;
    const ok = matches(r);
    const padded = c.map((cell, j) => (j === c.length - 1 ? cell : cell.padEnd(widths[j]!)));
    // Colour the verdict and the reason; the rest stays plain so the table reads calmly.
    padded[3] = paint(on, ok ? 32 : 31, padded[3]!);
    padded[4] = paint(on, ok ? 32 : 31, padded[4]!);
    out.push(padded.join(' | ').trimEnd());
  });
  const good = rows.filter(matches).length;
  const summary = `${good}/${rows.length} checks as expected`;
  out.push('', paint(on, good === rows.length ? 32 : 31, summary));
  return out;
}
