/**
 * Reading namegate's table back from the kernel: sets and their elements, the learned
 * elements (after a restart), drop and source counters, and the status `namegate datapath
 * status` prints. Read-only: every write goes through the driver's transactions.
 */
import { ErrorCode, NamegateError } from '../core/errors.ts';
import { type AddrRange, compareRanges, rangeContains, rangePrefixes, rangeText } from './ip-range.ts';
import type { ElementKind } from './learned-model.ts';
import type { DropCount, SourceDrops } from './metrics.ts';
import type { NftConfig } from './nft-config.ts';
import { type LearnedRange, learnedSetName, parseDropComment, singleAddress } from './nft-elements.ts';
import type { NftExecutor } from './nft-executor.ts';
import {
  type KernelSet,
  type KernelTable,
  parseCounter,
  parseElement,
  parseSet,
  parseTable,
} from './nft-json.ts';
import {
  COUNTER_NAMES,
  counterNames,
  FAMILIES,
  type Family,
  SET_ROLES,
  SOURCE_ROLES,
  setName,
} from './nft-ruleset.ts';

const TABLE_MISSING = /No such file or directory/;

/** A range as a source text: a bare address, a CIDR when it is one, else "a-b". */
function prefixText(range: AddrRange): string {
  const prefixes = rangePrefixes(range);
  const [addr, len] = prefixes[0] ?? ['', 0];
  if (prefixes.length !== 1) return rangeText(range);
  return len === (range.family === 4 ? 32 : 128) ? addr : `${addr}/${len}`;
}

export function commitError(what: string, nftError: string): NamegateError {
  return new NamegateError(
    ErrorCode.DatapathCommit,
    `${what}: ${nftError || 'nft failed without a message'}`,
  );
}

export interface SetStatus {
  readonly name: string;
  readonly elements: number;
  readonly size: number | null;
}

export interface DatapathStatus {
  readonly table: string;
  readonly present: boolean;
  readonly executor: 'addon' | 'spawn';
  readonly sets: readonly SetStatus[];
  readonly drops: readonly DropCount[];
  /** Drops of sources inside the source CIDRs that namegate does not know as the sender. */
  readonly sourceDrops: SourceDrops;
}

export class NftTableReader {
  readonly #exec: NftExecutor;
  readonly config: NftConfig;

  constructor(exec: NftExecutor, config: NftConfig) {
    this.#exec = exec;
    this.config = config;
  }

  async listSet(name: string, terse = false): Promise<KernelSet | null> {
    const r = await this.#exec.run(`list set inet ${this.config.table} ${name}`, { json: true, terse });
    if (!r.ok) {
      if (TABLE_MISSING.test(r.err)) return null;
      throw commitError(`list set ${name}`, r.err);
    }
    return parseSet(r.out);
  }

  async readTable(): Promise<KernelTable | null> {
    const r = await this.#exec.run(`list table inet ${this.config.table}`, { json: true, terse: true });
    if (!r.ok) {
      if (TABLE_MISSING.test(r.err)) return null;
      throw commitError('list table', r.err);
    }
    return parseTable(r.out);
  }

  /** Every learned element in the kernel, with its kind and the time it has left. */
  async readLearned(): Promise<(LearnedRange & { kind: ElementKind; remainingMs: number | null })[]> {
    const out: (LearnedRange & { kind: ElementKind; remainingMs: number | null })[] = [];
    for (const f of FAMILIES) {
      for (const kind of ['port', 'all', 'range'] as const) {
        const s = await this.listSet(learnedSetName(kind, f));
        if (!s) continue;
        for (const raw of s.elements) {
          const e = parseElement(s.type, raw);
          const [src, dst, proto, port] = e.parts;
          if (src?.kind !== 'addr' || dst?.kind !== 'addr' || proto?.kind !== 'proto') continue;
          const ports = kind === 'all' ? { from: 0, to: 65535 } : port?.kind === 'port' ? port : null;
          const source = singleAddress(src.range);
          const destination = singleAddress(dst.range);
          if (ports === null || source === null || destination === null) continue;
          if (proto.proto !== 'tcp' && proto.proto !== 'udp') continue;
          out.push({
            kind,
            source,
            destination,
            protocol: proto.proto === 'tcp' ? 'TCP' : 'UDP',
            from: ports.from,
            to: ports.to,
            remainingMs: e.expiresS === null ? null : e.expiresS * 1000,
          });
        }
      }
    }
    return out;
  }

  /**
   * Drop counts from the kernel's `drops` sets: one row per owned range, with the owning source
   * and mode from the element's comment. A table written by an older driver has no comments:
   * the range then stands for itself and its mode comes from the audit set.
   */
  async readDropCounters(): Promise<DropCount[]> {
    const rows: { range: AddrRange; row: DropCount }[] = [];
    for (const f of FAMILIES) {
      let audits: AddrRange[] | null = null;
      for (const role of SOURCE_ROLES.drops) {
        const drops = await this.listSet(setName(role, f));
        for (const raw of drops?.elements ?? []) {
          const e = parseElement(drops?.type ?? [], raw);
          const part = e.parts[0];
          if (part?.kind !== 'addr') continue;
          const range = part.range;
          const packets = e.packets ?? 0;
          const owner = parseDropComment(e.comment);
          if (owner) {
            rows.push({
              range,
              row: { source: owner.owner, range: rangeText(range), mode: owner.mode, packets },
            });
            continue;
          }
          audits ??= await this.#ranges(SOURCE_ROLES.Audit.map((r) => setName(r, f)));
          const mode = audits.some((a) => rangeContains(a, range)) ? 'Audit' : 'Enforce';
          rows.push({ range, row: { source: prefixText(range), range: rangeText(range), mode, packets } });
        }
      }
    }
    // By address, whichever set a range came from.
    return rows.sort((x, y) => compareRanges(x.range, y.range)).map((x) => x.row);
  }

  /**
   * Packets of the source CIDRs dropped because no identity knows the source (`unknown`) or
   * because they failed the reverse-path check (`spoofed`): the table's named counters, 0 while
   * a counter does not exist (no source CIDRs configured, or no table); and UDP packets to the
   * DNS proxy over a source's kernel rate limit (`dnsFlood`, with config.dnsGuard).
   */
  async readSourceDrops(): Promise<SourceDrops> {
    const kept = counterNames(this.config);
    const read = async (name: string): Promise<number> => {
      if (!kept.includes(name)) return 0;
      const r = await this.#exec.run(`list counter inet ${this.config.table} ${name}`, { json: true });
      if (!r.ok) {
        if (TABLE_MISSING.test(r.err)) return 0;
        throw commitError(`list counter ${name}`, r.err);
      }
      return parseCounter(r.out).packets;
    };
    return {
      unknown: await read(COUNTER_NAMES.unknown),
      spoofed: await read(COUNTER_NAMES.spoofed),
      dnsFlood: await read(COUNTER_NAMES.dnsflood),
    };
  }

  /** The address ranges these single-field sets hold. */
  async #ranges(names: readonly string[]): Promise<AddrRange[]> {
    const out: AddrRange[] = [];
    for (const name of names) {
      const s = await this.listSet(name);
      for (const raw of s?.elements ?? []) {
        const p = parseElement(s?.type ?? [], raw).parts[0];
        if (p?.kind === 'addr') out.push(p.range);
      }
    }
    return out;
  }

  /** The table, its sets and counters, as `namegate datapath status` shows them. */
  async status(): Promise<Omit<DatapathStatus, 'executor'>> {
    const table = await this.readTable();
    const sets: SetStatus[] = [];
    if (table) {
      for (const f of FAMILIES as readonly Family[]) {
        for (const role of SET_ROLES) {
          const s = await this.listSet(setName(role, f));
          if (s) sets.push({ name: s.name, elements: s.elements.length, size: s.size });
        }
      }
    }
    return {
      table: this.config.table,
      present: table !== null,
      sets,
      drops: table ? await this.readDropCounters() : [],
      sourceDrops: table ? await this.readSourceDrops() : { unknown: 0, spoofed: 0, dnsFlood: 0 },
    };
  }
}
