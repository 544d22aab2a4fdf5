/**
 * The dashboard page: one Server-Sent Events stream from the agent (/dashboard/events) brings
 * aggregated statistics and the newest flows once a second; the page only draws. The flow table
 * keeps at most MAX_ROWS rows, so the page costs the same whatever the decision rate.
 */
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import './style.css';

const MAX_ROWS = 200;

interface FlowEvent {
  time: string;
  node: string | null;
  type: string;
  verdict: string;
  reason: string;
  policy: string | null;
  rule: number | null;
  src: string;
  namespace: string | null;
  pod: string | null;
  identity: string | null;
  name: string | null;
  dst: string | null;
  dport: number | null;
  ips: string[];
  [k: string]: unknown;
}

interface Stats {
  time: string;
  totals: {
    queries: number;
    queriesDenied: number;
    queriesAudit: number;
    drops: number;
    auditDrops: number;
    governed: number;
  };
  series: { start: number; allowed: number[]; denied: number[]; audit: number[]; drops: number[] };
  topDenied: Array<{ name: string; count: number }>;
  topSources: Array<{ src: string; who: string; total: number; denied: number }>;
  source?: { src: string; who: string; names: Array<{ name: string; total: number; denied: number }> };
}

const $ = <T extends HTMLElement>(sel: string) => document.querySelector(sel) as T;

function cell(text: string, cls?: string): HTMLTableCellElement {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function fill(tbody: HTMLElement, rows: HTMLTableRowElement[]): void {
  tbody.replaceChildren(...rows);
}

function fmt(n: number): string {
  return n.toLocaleString('en-US');
}

let selectedSource: string | null = null;
let source: EventSource | null = null;
let chart: uPlot | null = null;

function chartFor(el: HTMLElement): uPlot {
  const opts: uPlot.Options = {
    width: Math.max(300, el.clientWidth - 8),
    height: 220,
    series: [
      {},
      { label: 'allowed', stroke: '#1a7f37', width: 1.5 },
      { label: 'denied', stroke: '#b42318', width: 1.5 },
      { label: 'audit', stroke: '#b26b00', width: 1.5 },
      { label: 'kernel drops', stroke: '#7a1d12', width: 1.5, dash: [4, 3] },
    ],
    axes: [{}, { label: 'per second' }],
  };
  return new uPlot(opts, [[], [], [], [], []], el);
}

function drawStats(s: Stats): void {
  $('#total-queries').textContent = fmt(s.totals.queries);
  $('#total-denied').textContent = fmt(s.totals.queriesDenied);
  $('#total-audit').textContent = fmt(s.totals.queriesAudit + s.totals.auditDrops);
  $('#total-drops').textContent = fmt(s.totals.drops);
  $('#governed').textContent = fmt(s.totals.governed);
  const xs = s.series.allowed.map((_, i) => s.series.start + i);
  chart ??= chartFor($('#chart'));
  chart.setData([xs, s.series.allowed, s.series.denied, s.series.audit, s.series.drops]);
  fill(
    $('#top-denied tbody'),
    s.topDenied.map((d) => {
      const tr = document.createElement('tr');
      tr.append(cell(d.name), cell(fmt(d.count), 'num'));
      return tr;
    }),
  );
  fill(
    $('#top-sources tbody'),
    s.topSources.map((d) => {
      const tr = document.createElement('tr');
      tr.dataset['src'] = d.src;
      tr.append(cell(d.who), cell(fmt(d.total), 'num'), cell(fmt(d.denied), 'num'));
      tr.addEventListener('click', () => selectSource(d.src));
      return tr;
    }),
  );
  const panel = $('#pod-panel');
  if (s.source) {
    panel.hidden = false;
    $('#pod-name').textContent = s.source.who;
    fill(
      $('#pod-names tbody'),
      s.source.names.map((n) => {
        const tr = document.createElement('tr');
        tr.append(
          cell(n.name, n.denied > 0 ? 'verdict-deny' : ''),
          cell(fmt(n.total), 'num'),
          cell(fmt(n.denied), 'num'),
        );
        return tr;
      }),
    );
  } else panel.hidden = selectedSource === null;
}

function who(e: FlowEvent): string {
  if (e.namespace && e.pod) return `${e.namespace}/${e.pod}`;
  return e.pod ?? e.identity ?? e.src;
}

function address(e: FlowEvent): string {
  if (e.type === 'dns') return e.ips.slice(0, 2).join(' ');
  if (e.dst === null) return '';
  return e.dport !== null ? `${e.dst}:${e.dport}` : e.dst;
}

function decision(e: FlowEvent): string {
  const by = e.policy !== null ? `${e.policy}${e.rule !== null ? `[${e.rule}]` : ''}` : '';
  return [e.reason, by].filter(Boolean).join(' ');
}

function addFlows(events: FlowEvent[]): void {
  const tbody = $('#flows tbody');
  const rows: HTMLTableRowElement[] = [];
  for (const e of events) {
    const tr = document.createElement('tr');
    tr.className = `flow verdict-row-${e.verdict}`;
    tr.append(
      cell(e.time.slice(11, 23)),
      cell(e.type),
      cell(who(e)),
      cell(e.name ?? ''),
      cell(address(e)),
      cell(e.verdict, `verdict verdict-${e.verdict}`),
      cell(decision(e)),
    );
    const action = document.createElement('td');
    if (e.verdict !== 'allow' && e.name !== null) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'propose';
      b.textContent = 'propose a rule';
      b.addEventListener('click', () => void propose(e));
      action.append(b);
    }
    tr.append(action);
    rows.push(tr);
  }
  // Newest on top; the table never grows past MAX_ROWS.
  tbody.prepend(...rows.reverse());
  while (tbody.children.length > MAX_ROWS) tbody.lastElementChild?.remove();
}

async function propose(e: FlowEvent): Promise<void> {
  const dialog = $('#proposal') as HTMLDialogElement;
  $('#proposal-status').textContent = 'asking the agent...';
  $('#proposal-yaml').textContent = '';
  dialog.showModal();
  const res = await fetch('/dashboard/propose', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(e),
  });
  if (!res.ok) {
    $('#proposal-status').textContent = `error: ${await res.text()}`;
    return;
  }
  const p = (await res.json()) as { yaml: string; errors: string[]; warnings: string[] };
  const status = $('#proposal-status');
  status.textContent =
    p.errors.length === 0 ? 'valid: namegate validate accepts it' : `invalid: ${p.errors.join('; ')}`;
  status.dataset['valid'] = String(p.errors.length === 0);
  $('#proposal-yaml').textContent = p.yaml;
}

function query(): string {
  const form = $('#filters') as HTMLFormElement;
  const q = new URLSearchParams();
  for (const el of Array.from(form.elements)) {
    const input = el as HTMLInputElement;
    if (input.name && input.value.trim() !== '') q.append(input.name, input.value.trim());
  }
  if (selectedSource !== null) q.set('source', selectedSource);
  return q.toString();
}

function connect(): void {
  source?.close();
  const status = $('#status');
  status.dataset['state'] = 'connecting';
  status.textContent = 'connecting';
  $('#filter-error').textContent = '';
  const es = new EventSource(`/dashboard/events?${query()}`);
  source = es;
  es.addEventListener('stats', (m) => {
    status.dataset['state'] = 'live';
    status.textContent = 'live';
    drawStats(JSON.parse((m as MessageEvent<string>).data) as Stats);
  });
  es.addEventListener('flows', (m) => addFlows(JSON.parse((m as MessageEvent<string>).data) as FlowEvent[]));
  es.addEventListener('error', () => {
    status.dataset['state'] = 'error';
    status.textContent = 'reconnecting';
    // A 400 (bad filter) closes the stream for good: say why.
    if (es.readyState === EventSource.CLOSED)
      void fetch(`/dashboard/events?${query()}`).then(async (r) => {
        if (!r.ok) $('#filter-error').textContent = await r.text();
      });
  });
}

function selectSource(src: string | null): void {
  selectedSource = src;
  $('#flows tbody').replaceChildren();
  connect();
}

$('#filters').addEventListener('submit', (ev) => {
  ev.preventDefault();
  $('#flows tbody').replaceChildren();
  connect();
});
$('#pod-clear').addEventListener('click', () => selectSource(null));
window.addEventListener('resize', () => {
  const el = $('#chart');
  chart?.setSize({ width: Math.max(300, el.clientWidth - 8), height: 220 });
});
$('#node').textContent = location.host;
connect();
