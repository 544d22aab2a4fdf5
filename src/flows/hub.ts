/**
 * The agent's flow hub: every flow log line (DNS, proxy, kernel, source) passes through here on
 * its way to the file. It keeps a bounded history in memory and streams lines to the clients
 * that follow (`namegate observe --follow`, the dashboard, other agents' readers).
 *
 * Cost on the decision path is what matters (the DNS proxy hands it every query's line): lines
 * arrive in chunks (the flow log's buffer), are kept as those same strings, and a client without
 * a filter gets the chunks as they are. Lines are parsed only for clients with a filter, once
 * per line whatever their number. Delivery is batched (every `flushMs`) and never waits for a
 * client: one that does not keep up loses lines beyond its bound and is told how many
 * (`{"event":"lost","count":N}`), and the agent goes on.
 */
import type { FlowEvent } from './event.ts';
import type { FlowPredicate } from './filter.ts';
import { FlowReader } from './reader.ts';
import { type SourceBook, sourceLine } from './sources.ts';

export interface FlowHubOptions {
  /** Bytes of lines kept in memory (default 16 MiB). */
  readonly historyBytes?: number;
  /** Delivery interval to followers (default 100 ms). */
  readonly flushMs?: number;
  /** Followers at once (default 32); more are refused. */
  readonly maxFollowers?: number;
  /** Undelivered bytes per follower before it loses lines (default 8 MiB). */
  readonly followerBytes?: number;
  /** Wall clock (ms). */
  readonly now?: () => number;
}

export interface Follower {
  /** Lines of the flow log format, newline-terminated. Return false when the peer is gone. */
  write(text: string): boolean;
}

interface FollowerState {
  readonly out: Follower;
  readonly filter: FlowPredicate | null;
  pending: string[];
  pendingBytes: number;
  lost: number;
  closed: boolean;
}

interface Chunk {
  readonly text: string;
  readonly at: number;
}

export interface HistoryQuery {
  /** Only events at or after this wall time (ms). */
  readonly sinceMs?: number;
  /** Only events before this wall time (ms). */
  readonly untilMs?: number;
  /** At most the last N matching events. */
  readonly last?: number;
  readonly filter?: FlowPredicate | null;
}

export class FlowHub {
  readonly reader: FlowReader;
  readonly #historyBytes: number;
  readonly #flushMs: number;
  readonly #maxFollowers: number;
  readonly #followerBytes: number;
  readonly #now: () => number;
  readonly #chunks: Chunk[] = [];
  #chunkHead = 0;
  #bytes = 0;
  readonly #followers = new Set<FollowerState>();
  #timer: NodeJS.Timeout | null = null;
  /** Lines dropped for followers that read too slowly (metrics). */
  lostLines = 0;

  constructor(sources: SourceBook, options: FlowHubOptions = {}) {
    this.reader = new FlowReader(sources);
    this.#historyBytes = options.historyBytes ?? 16 * 1024 * 1024;
    this.#flushMs = options.flushMs ?? 100;
    this.#maxFollowers = options.maxFollowers ?? 32;
    this.#followerBytes = options.followerBytes ?? 8 * 1024 * 1024;
    this.#now = options.now ?? Date.now;
  }

  get historyBytes(): number {
    return this.#bytes;
  }

  get followers(): number {
    return this.#followers.size;
  }

  get sources(): SourceBook {
    return this.reader.sources;
  }

  /** A chunk of complete lines (a LineSink for the flow logs). */
  write(chunk: string): void {
    if (chunk.length === 0) return;
    this.#chunks.push({ text: chunk, at: this.#now() });
    this.#bytes += chunk.length;
    while (this.#bytes > this.#historyBytes && this.#chunkHead < this.#chunks.length - 1) {
      this.#bytes -= (this.#chunks[this.#chunkHead] as Chunk).text.length;
      this.#chunks[this.#chunkHead++] = undefined as never;
    }
    if (this.#chunkHead > 1024 && this.#chunkHead * 2 > this.#chunks.length) {
      this.#chunks.splice(0, this.#chunkHead);
      this.#chunkHead = 0;
    }
    // Source lines are rare; only chunks that hold one are parsed for the book.
    const hasSource = chunk.includes('"event":"source"');
    let filtered = false;
    for (const f of this.#followers) if (f.filter !== null) filtered = true;
    if (filtered || hasSource) this.#deliverParsed(chunk, hasSource);
    for (const f of this.#followers) if (f.filter === null) this.#queue(f, chunk);
    if (this.#followers.size > 0) this.#schedule();
  }

  /** Split and parse a chunk once, for the book and for the followers with a filter. */
  #deliverParsed(chunk: string, hasSource: boolean): void {
    let start = 0;
    for (;;) {
      const end = chunk.indexOf('\n', start);
      if (end < 0) break;
      const line = chunk.slice(start, end);
      start = end + 1;
      if (line.length === 0) continue;
      const e = this.reader.line(line);
      if (e === null) {
        // A source line: every follower needs it to enrich later lines.
        if (hasSource && line.includes('"event":"source"'))
          for (const f of this.#followers) if (f.filter !== null) this.#queue(f, `${line}\n`);
        continue;
      }
      for (const f of this.#followers) if (f.filter?.(e)) this.#queue(f, `${line}\n`);
    }
  }

  #queue(f: FollowerState, text: string): void {
    if (f.closed) return;
    if (f.pendingBytes + text.length > this.#followerBytes) {
      const n = countLines(text);
      f.lost += n;
      this.lostLines += n;
      return;
    }
    f.pending.push(text);
    f.pendingBytes += text.length;
  }

  #schedule(): void {
    if (this.#timer) return;
    this.#timer = setTimeout(() => this.flush(), this.#flushMs);
    this.#timer.unref();
  }

  /** Deliver what is pending now. */
  flush(): void {
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    for (const f of this.#followers) {
      if (f.closed) {
        this.#followers.delete(f);
        continue;
      }
      let text = f.pending.length === 1 ? (f.pending[0] as string) : f.pending.join('');
      if (f.lost > 0) {
        text += `{"event":"lost","count":${f.lost},"time":"${new Date(this.#now()).toISOString()}"}\n`;
        f.lost = 0;
      }
      f.pending = [];
      f.pendingBytes = 0;
      if (text.length > 0 && !f.out.write(text)) {
        f.closed = true;
        this.#followers.delete(f);
      }
    }
  }

  /**
   * Follow from now on. Every known source line is sent first (so the follower can enrich what
   * comes). Returns an unfollow function, or null when there are too many followers already.
   */
  follow(out: Follower, filter: FlowPredicate | null): (() => void) | null {
    if (this.#followers.size >= this.#maxFollowers) return null;
    const f: FollowerState = { out, filter, pending: [], pendingBytes: 0, lost: 0, closed: false };
    const time = new Date(this.#now()).toISOString();
    for (const [src, info] of this.sources.entries()) this.#queue(f, sourceLine(time, src, info));
    this.#followers.add(f);
    this.#schedule();
    return () => {
      f.closed = true;
      this.#followers.delete(f);
    };
  }

  /** Oldest time the history still covers (wall ms), or null when it is empty. */
  get historyStart(): number | null {
    const c = this.#chunks[this.#chunkHead];
    return c ? c.at - this.#flushMs : null;
  }

  /** Matching lines from memory, oldest first, each with its event. */
  history(q: HistoryQuery): Array<{ line: string; event: FlowEvent }> {
    const out: Array<{ line: string; event: FlowEvent }> = [];
    const reader = new FlowReader(this.sources);
    for (let i = this.#chunkHead; i < this.#chunks.length; i++) {
      const c = this.#chunks[i] as Chunk;
      // A chunk holds lines of at most flushMs before it arrived (plus the clock's slack).
      if (q.sinceMs !== undefined && c.at + 1000 < q.sinceMs) continue;
      for (const line of c.text.split('\n')) {
        const e = reader.line(line);
        if (e === null) continue;
        const t = Date.parse(e.time);
        if (q.sinceMs !== undefined && t < q.sinceMs) continue;
        if (q.untilMs !== undefined && t >= q.untilMs) continue;
        if (q.filter && !q.filter(e)) continue;
        out.push({ line, event: e });
      }
    }
    return q.last !== undefined && out.length > q.last ? out.slice(out.length - q.last) : out;
  }

  close(): void {
    this.flush();
    for (const f of this.#followers) f.closed = true;
    this.#followers.clear();
  }
}

function countLines(text: string): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++;
  return n;
}
