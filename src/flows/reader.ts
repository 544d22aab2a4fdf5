/**
 * Flow log lines -> FlowEvents, with the source lines among them remembered so that later
 * lines are enriched with labels and workload. Used on flow log files (`namegate observe
 * --file`, `namegate recommend --from-file`), on the agent's stream, and inside the agent.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { type FlowEvent, toFlowEvent } from './event.ts';
import { SourceBook } from './sources.ts';

/** Lines longer than this are not flow log lines (ours are well under 4 KiB). */
export const MAX_LINE = 64 * 1024;

export class FlowReader {
  readonly sources: SourceBook;
  malformed = 0;

  constructor(sources = new SourceBook()) {
    this.sources = sources;
  }

  /** One line of text; the event it is, or null (a source line, another log line, garbage). */
  line(text: string): FlowEvent | null {
    if (text.length === 0 || text.length > MAX_LINE || text.charCodeAt(0) !== 0x7b) {
      if (text.length > 0) this.malformed++;
      return null;
    }
    let o: unknown;
    try {
      o = JSON.parse(text);
    } catch {
      this.malformed++;
      return null;
    }
    return this.value(o);
  }

  /** One parsed line. */
  value(o: unknown): FlowEvent | null {
    if (this.sources.note(o)) return null;
    const e = toFlowEvent(o);
    return e === null ? null : this.sources.enrich(e);
  }
}

export interface FileReadOptions {
  /** Read at most this many bytes from the end of each file (older lines are skipped). */
  readonly maxBytes?: number;
}

/**
 * Every event in the files, in file order; `onEvent` returns false to stop early. A partial
 * first line (when starting inside a file) is skipped.
 */
export async function readFlowFiles(
  paths: readonly string[],
  reader: FlowReader,
  onEvent: (e: FlowEvent) => boolean | undefined,
  options: FileReadOptions = {},
): Promise<void> {
  for (const path of paths) {
    const size = (await stat(path)).size;
    const start = options.maxBytes !== undefined && size > options.maxBytes ? size - options.maxBytes : 0;
    const stream = createReadStream(path, { start, encoding: 'utf8', highWaterMark: 256 * 1024 });
    const lines = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY });
    let first = start > 0;
    try {
      for await (const l of lines) {
        if (first) {
          first = false;
          continue;
        }
        const e = reader.line(l);
        if (e !== null && onEvent(e) === false) return;
      }
    } finally {
      lines.close();
      stream.destroy();
    }
  }
}
