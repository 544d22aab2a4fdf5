/**
 * Runs inside the lab's node namespace (`ip netns exec <node> node set-probe.ts <table>`) and
 * answers "tell me when this element is in (or out of) that set" for bench/k8s/main.ts.
 *
 * Why not `nft monitor`: nft 1.0.6's monitor loses its set cache once the agent's reconcile
 * flushes and re-adds its chains, and then prints "Unable to cache set_elem" instead of element
 * events. So this polls the set through libnftables (the build/nft.node addon, in-process: no
 * process per poll), only while a question is open, about once per millisecond.
 *
 * Protocol, one JSON object per line:
 *   in:  {"id": 1, "set": "allow4", "element": "10.10.1.2 . 203.0.113.20 . tcp . 443", "present": false}
 *   out: {"id": 1, "ok": true, "polls": 12}   (or "ok": false, "error": "...")
 * The asker times the answer's arrival; the pipe adds well under a millisecond.
 */
import { createInterface } from 'node:readline';
import { openExecutor } from '../../src/datapath/nft-executor.ts';

interface Question {
  readonly id: number;
  readonly set: string;
  readonly element: string;
  readonly present: boolean;
  readonly timeoutMs?: number;
}

const table = process.argv[2] ?? 'namegate';
const exec = await openExecutor('auto');

function texts(json: string): Set<string> {
  const doc = JSON.parse(json) as { nftables: Array<{ set?: { elem?: unknown[] } }> };
  const out = new Set<string>();
  for (const item of doc.nftables) {
    for (const raw of item.set?.elem ?? []) {
      const v =
        raw && typeof raw === 'object' && 'elem' in raw ? (raw as { elem: { val: unknown } }).elem.val : raw;
      // A plain set's element is a bare string; a concatenation is {concat: [...]}.
      const concat = v && typeof v === 'object' ? (v as { concat?: unknown[] }).concat : undefined;
      out.add(Array.isArray(concat) ? concat.map(String).join(' . ') : String(v));
    }
  }
  return out;
}

async function answer(q: Question): Promise<Record<string, unknown>> {
  const deadline = performance.now() + (q.timeoutMs ?? 30_000);
  let polls = 0;
  for (;;) {
    const r = await exec.run(`list set inet ${table} ${q.set}`, { json: true });
    polls++;
    if (!r.ok) return { id: q.id, ok: false, error: r.err };
    if (texts(r.out).has(q.element) === q.present) return { id: q.id, ok: true, polls };
    if (performance.now() > deadline) return { id: q.id, ok: false, error: `timeout after ${polls} polls` };
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

process.stdout.write(`ready ${exec.kind}\n`);
const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  let q: Question;
  try {
    q = JSON.parse(line) as Question;
  } catch {
    process.stdout.write(`${JSON.stringify({ id: -1, ok: false, error: 'bad question' })}\n`);
    return;
  }
  void answer(q)
    .catch((err: unknown) => ({ id: q.id, ok: false, error: String(err) }))
    .then((a) => process.stdout.write(`${JSON.stringify(a)}\n`));
});
lines.on('close', () => {
  void exec.close().then(() => process.exit(0));
});
