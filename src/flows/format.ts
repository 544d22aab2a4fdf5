/**
 * Flow events for people and programs: `json` (one FlowEvent per line, the documented schema),
 * `compact` (one readable line each) and `table` (aligned columns; while following, the widths
 * are fixed up front so rows line up as they arrive). Pure: events in, text out.
 */
import type { FlowEvent } from './event.ts';

export const OUTPUT_FORMATS = ['table', 'compact', 'json'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export interface Paint {
  readonly green: (s: string) => string;
  readonly red: (s: string) => string;
  readonly yellow: (s: string) => string;
  readonly dim: (s: string) => string;
}

export const NO_PAINT: Paint = { green: (s) => s, red: (s) => s, yellow: (s) => s, dim: (s) => s };

export function paintVerdict(verdict: string, paint: Paint): (s: string) => string {
  if (verdict === 'allow') return paint.green;
  if (verdict === 'audit') return paint.yellow;
  return paint.red;
}

/** "ns/pod" (or the group, or the bare address when the source is unknown). */
export function sourceText(e: FlowEvent): string {
  if (e.namespace !== null && e.pod !== null) return `${e.namespace}/${e.pod}`;
  return e.pod ?? e.identity ?? e.src;
}

function hostPort(ip: string | null, port: number | null): string {
  if (ip === null) return port === null ? '-' : `:${port}`;
  const host = ip.includes(':') ? `[${ip}]` : ip;
  return port === null ? host : `${host}:${port}`;
}

/** The destination: the address (and port), with the name when there is one. */
export function destinationText(e: FlowEvent): string {
  if (e.type === 'dns') {
    const q = `${e.name ?? '?'}${e.qtype ? ` ${e.qtype}` : ''}`;
    return e.ips.length > 0 ? `${q} -> ${e.ips.slice(0, 3).join(' ')}${e.ips.length > 3 ? ' ...' : ''}` : q;
  }
  const addr = hostPort(e.dst, e.dport);
  return e.name ? `${addr} (${e.name})` : addr;
}

/** Who decided: "policy[rule]" when a rule did, else the reason; kernel details appended. */
export function decisionText(e: FlowEvent): string {
  const parts: string[] = [];
  if (e.reason) parts.push(e.reason);
  if (e.policy !== null) parts.push(`${e.policy}${e.rule !== null ? `[${e.rule}]` : ''}`);
  const d = e.detail;
  if (d) {
    if (d.expiredAt) parts.push(`expired ${d.expiredAt}`);
    if (d.ports) parts.push(`granted ${d.ports}`);
    if (d.learnedBy && d.learnedBy.length > 0) parts.push(`learned by ${d.learnedBy.join(', ')}`);
    if (d.addressClass) parts.push(d.addressClass);
  }
  if (e.count > 1) parts.push(`x${e.count}`);
  return parts.join(' ');
}

function protoText(e: FlowEvent): string {
  return e.l7 ?? (e.type === 'dns' ? `dns/${e.proto ?? 'udp'}` : (e.proto ?? '-'));
}

function clock(time: string): string {
  // "2026-12-07T16:43:15.123Z" -> "12-07 16:43:15.123"
  return time.length >= 23 ? `${time.slice(5, 10)} ${time.slice(11, 23)}` : time;
}

export function compactLine(e: FlowEvent, paint: Paint = NO_PAINT): string {
  const node = e.node ? ` [${e.node}]` : '';
  const src = `${sourceText(e)}${e.sport !== null ? `:${e.sport}` : ''}`;
  const verdict = paintVerdict(e.verdict, paint)(e.verdict.toUpperCase());
  return `${paint.dim(clock(e.time))}${node} ${e.type} ${src} -> ${destinationText(e)} ${protoText(e)} ${verdict} ${decisionText(e)}`;
}

export function jsonLine(e: FlowEvent): string {
  return JSON.stringify(e);
}

const COLUMNS = ['TIME', 'NODE', 'TYPE', 'SOURCE', 'DESTINATION', 'PROTO', 'VERDICT', 'DECISION'] as const;

function row(e: FlowEvent): string[] {
  return [
    clock(e.time),
    e.node ?? '',
    e.type,
    sourceText(e),
    destinationText(e),
    protoText(e),
    e.verdict,
    decisionText(e),
  ];
}

/** Fixed widths for a live table (the last column is never padded). */
const FOLLOW_WIDTHS = [18, 10, 6, 28, 44, 9, 7, 0];

function render(
  cells: readonly string[],
  widths: readonly number[],
  showNode: boolean,
  paint: Paint,
  verdict?: string,
): string {
  const out: string[] = [];
  cells.forEach((c, i) => {
    if (i === 1 && !showNode) return;
    const w = widths[i] ?? 0;
    let text = i === cells.length - 1 || w === 0 ? c : c.length > w ? `${c.slice(0, w - 1)}~` : c.padEnd(w);
    if (i === 6 && verdict) text = paintVerdict(verdict, paint)(text);
    out.push(text);
  });
  return out.join('  ').trimEnd();
}

/** A whole table at once: widths from the content. */
export function table(events: readonly FlowEvent[], paint: Paint = NO_PAINT): string {
  const showNode = events.some((e) => e.node !== null);
  const rows = events.map(row);
  const widths = COLUMNS.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  const lines = [render(COLUMNS, widths, showNode, paint)];
  rows.forEach((r, i) => {
    lines.push(render(r, widths, showNode, paint, events[i]?.verdict));
  });
  return `${lines.join('\n')}\n`;
}

/** A table printed row by row (following): the header, then each row at fixed widths. */
export function tableHeader(showNode: boolean): string {
  return render(COLUMNS, FOLLOW_WIDTHS, showNode, NO_PAINT);
}

export function tableRow(e: FlowEvent, showNode: boolean, paint: Paint = NO_PAINT): string {
  return render(row(e), FOLLOW_WIDTHS, showNode, paint, e.verdict);
}
