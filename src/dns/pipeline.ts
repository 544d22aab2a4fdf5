/**
 * One query's way through the proxy, as a chain of small stages:
 *
 *   limit (per-source rate) -> check (message rules) -> identify -> route (policy)
 *     -> forward (upstream, pending bounds) -> fit (UDP size) -> read answers (CNAME chain)
 *     -> learn (store; denied ranges, caps) -> commit (datapath batch) -> hold -> reply
 *
 * Every query ends in exactly one flow-log line and one count in namegate_dns_queries_total.
 * Fail closed: a malformed reply, a CNAME loop or a datapath commit failure gives SERVFAIL
 * and learns nothing; an unexpected exception gives SERVFAIL, never the upstream's answer.
 */

import type { Clock } from '../core/clock.ts';
import { errorMessage } from '../core/errors.ts';
import type { CanonicalName } from '../core/names.ts';
import type { AllowElement, Datapath, ElementKey } from '../datapath/datapath.ts';
import { elementsFor, portRanges } from '../enforce/elements.ts';
import { elementSources, type IdentityProvider } from '../identity/identity.ts';
import { F } from '../observe/fields.ts';
import type { Logger } from '../observe/log.ts';
import type { CompiledPolicies } from '../policy/compile.ts';
import { answerAddressAllowed } from '../policy/decide.ts';
import { type Identity, type PolicyRef, type PortRange, policyRefText } from '../policy/model.ts';
import type { CurrentPolicies } from '../policy/source.ts';
import type { AddressInput, InUseSource, LearnedStore } from '../store/learned-store.ts';
import { AnswerError, type AnswerFacts, type AnswerLimits, readAnswers } from './answers.ts';
import { type CommitBatcher, holdKey } from './commit.ts';
import type { DnsVerdict, FlowLog, FlowRecord } from './flow-log.ts';
import type { PendingLimiter, RateLimiter } from './limits.ts';
import {
  buildReply,
  checkQuery,
  type Ede,
  EdeCode,
  flagsOf,
  type ParsedQuery,
  type QueryRules,
  type ReplyBasis,
  setId,
  truncatedReply,
} from './message.ts';
import type { DnsMetrics } from './metrics.ts';
import { inUnknownScope, type Route, type RouteSettings, route } from './route.ts';
import type { UnknownHold, UnknownHoldResult } from './unknown-hold.ts';
import { type Transport, UpstreamError, type UpstreamReply } from './upstream.ts';
import { Flag, type Question, Rcode, WireError } from './wire.ts';

export interface Upstream {
  query(query: Buffer, question: Question, tcp: boolean): Promise<UpstreamReply>;
}

export interface PipelineSettings extends RouteSettings, AnswerLimits, QueryRules {
  readonly holdTimeoutMs: number;
}

export interface PipelineDeps {
  readonly settings: PipelineSettings;
  readonly policies: CurrentPolicies;
  readonly identities: IdentityProvider;
  readonly store: LearnedStore;
  readonly upstream: Upstream;
  readonly commits: CommitBatcher;
  readonly datapath: Datapath;
  readonly clock: Clock;
  readonly metrics: DnsMetrics;
  readonly flowLog: FlowLog;
  readonly rate: RateLimiter;
  readonly pending: PendingLimiter;
  /** Operational errors (not flow lines). */
  readonly log: Logger;
  /** Holds queries of unknown sources inside the source CIDRs until they are known (unknown-hold.ts). */
  readonly unknownHold?: UnknownHold;
  /** Read ahead before an answer that has to make room, so eviction spares what is in use. */
  readonly inUse?: InUseSource;
}

/** The reason a held query that got no identity is refused with. */
const HOLD_REASON: Record<Exclude<UnknownHoldResult, 'identified'>, string> = {
  timeout: 'unknown_source_timeout',
  full: 'unknown_hold_full',
  stopped: 'unknown_source',
  gone: 'unknown_source',
};

type Hold = 'committed' | 'timeout' | 'failed';

/** The flow record of the query in progress, filled in as the stages run (one object per query). */
type Rec = { -readonly [K in keyof FlowRecord]-?: FlowRecord[K] };

const NO_IPS: readonly string[] = Object.freeze([]);

/** What an answer changed: the elements to commit for its new and refreshed addresses. */
interface Changes {
  readonly ranges: PortRange[];
  readonly elements: AllowElement[];
  readonly keys: string[];
  readonly ips: string[];
}

const UPSTREAM_EDE: Ede = { code: EdeCode.NoReachableAuthority, text: 'no upstream answered' };
const COMMIT_EDE: Ede = { code: EdeCode.Other, text: 'namegate could not apply the answer' };
const MALFORMED_EDE: Ede = { code: EdeCode.Other, text: 'upstream reply rejected by namegate' };
const OVERLOAD_EDE: Ede = { code: EdeCode.Other, text: 'too many queries in progress' };

export class Pipeline {
  readonly #d: PipelineDeps;

  constructor(deps: PipelineDeps) {
    this.#d = deps;
  }

  /** Handle one message; resolves to the reply to send, or null to send nothing. Never rejects. */
  async handle(msg: Buffer, src: string, transport: Transport): Promise<Buffer | null> {
    const started = this.#d.clock.now();
    try {
      return await this.#handle(msg, src, transport, started);
    } catch (err) {
      this.#d.log.error({ [F.sourceIp]: src, [F.error]: errorMessage(err) }, 'dns pipeline failed');
      this.#d.metrics.countQuery('error', 'internal', transport, 0);
      if (msg.length < 12) return null;
      const basis: ReplyBasis = {
        id: (msg[0]! << 8) | msg[1]!,
        flags: flagsOf(msg),
        questionEnd: 0,
        edns: false,
      };
      return buildReply(basis, msg, Rcode.SERVFAIL, null);
    }
  }

  async #handle(msg: Buffer, src: string, transport: Transport, started: number): Promise<Buffer | null> {
    const d = this.#d;
    if (!d.rate.allow(src, started)) {
      d.metrics.drops.inc({ reason: 'rate_limited' });
      d.flowLog.dropped(src, 'rate_limited', started, transport);
      return null;
    }
    const check = checkQuery(msg, d.settings);
    if (!check.ok) {
      if (!check.reply) {
        d.metrics.drops.inc({ reason: check.problem });
        return null;
      }
      this.#finish(started, {
        src,
        identity: null,
        qname: check.question?.name ?? null,
        qtype: check.question?.type ?? null,
        verdict: 'refuse',
        reason: check.problem,
        policy: null,
        rule: null,
        ips: NO_IPS,
        ttl: null,
        rcode: check.rcode,
        ms: 0,
        transport,
        hold: undefined,
        truncated: undefined,
        learned: undefined,
      });
      return check.reply;
    }
    const q = check.query;
    let identity = d.identities.lookup(src);
    let held: UnknownHoldResult | null = null;
    if (!identity && d.unknownHold?.enabled && inUnknownScope(d.settings, src)) {
      const h = await d.unknownHold.wait(src);
      identity = h.identity;
      held = h.result;
      d.metrics.unknownHolds.inc({ result: held });
    }
    let set = d.policies.current();
    let r = route(d.settings, set, identity, q.question.name, src);
    const rec: Rec = {
      src,
      identity: identity?.key ?? null,
      qname: q.question.name,
      qtype: q.question.type,
      verdict: r.verdict,
      reason: held !== null && held !== 'identified' && r.kind === 'refuse' ? HOLD_REASON[held] : r.reason,
      policy: r.decision?.policy ? policyText(r.decision.policy) : null,
      rule: r.decision?.rule ?? null,
      ips: NO_IPS,
      ttl: null,
      rcode: null,
      ms: 0,
      transport,
      hold: undefined,
      truncated: undefined,
      learned: undefined,
    };
    if (r.kind === 'refuse') {
      rec.rcode = r.rcode;
      this.#finish(started, rec);
      return buildReply(basisOf(q), msg, r.rcode, r.ede);
    }
    if (!d.pending.acquire(src)) {
      return this.#fail(started, rec, q, msg, 'pending_limit', OVERLOAD_EDE);
    }
    let up: UpstreamReply;
    try {
      up = await d.upstream.query(msg, q.question, transport === 'tcp');
    } catch (err) {
      return this.#fail(
        started,
        rec,
        q,
        msg,
        err instanceof UpstreamError ? err.reason : 'upstream_failed',
        UPSTREAM_EDE,
      );
    } finally {
      d.pending.release(src);
    }
    const reply = up.bytes;
    setId(reply, q.id);
    const flags = flagsOf(reply);
    const rcode = flags & 0xf;
    rec.rcode = rcode;
    if (transport === 'udp' && reply.length > q.udpLimit) {
      // Learn nothing from an answer the client does not get; it retries over TCP.
      rec.truncated = true;
      this.#finish(started, rec);
      return truncatedReply(q, msg, flags);
    }
    if (!r.learn || rcode !== Rcode.NOERROR || (flags & Flag.TC) !== 0) {
      if (rec.verdict === 'audit' && rcode === Rcode.NOERROR && (flags & Flag.TC) === 0)
        this.#noteUnlearned(reply, q, rec);
      this.#finish(started, rec);
      return reply;
    }

    let facts: AnswerFacts;
    try {
      facts = readAnswers(reply, q.question, d.settings);
    } catch (err) {
      if (!(err instanceof WireError || err instanceof AnswerError)) throw err;
      return this.#fail(
        started,
        rec,
        q,
        msg,
        err instanceof AnswerError ? err.reason : 'malformed_reply',
        MALFORMED_EDE,
      );
    }
    // An answer that has to make room in the store reads what is in use first (conntrack).
    if (d.inUse && d.store.wouldEvict(src, r.name, facts.addresses)) await d.inUse.prepare(src);
    if (d.policies.current() !== set || d.identities.lookup(src) !== identity) {
      // Policies or the source's identity changed while the upstream answered: decide again
      // with what is in force now, so a query asked before a revocation cannot put back what
      // the revocation just removed (nor learn ports of a rule that is gone).
      identity = d.identities.lookup(src);
      set = d.policies.current();
      r = route(d.settings, set, identity, q.question.name, src);
      rec.identity = identity?.key ?? null;
      rec.verdict = r.verdict;
      rec.reason = r.reason;
      rec.policy = r.decision?.policy ? policyText(r.decision.policy) : null;
      rec.rule = r.decision?.rule ?? null;
      if (r.kind === 'refuse' || !r.learn) d.metrics.notLearned.inc({ reason: 'view_changed' });
      if (r.kind === 'refuse') {
        rec.rcode = r.rcode;
        this.#finish(started, rec);
        return buildReply(basisOf(q), msg, r.rcode, r.ede);
      }
    }
    if (!r.learn) {
      this.#finish(started, rec);
      return reply;
    }
    // Learning waits only when something is on its way to the kernel.
    const wait = this.#learn(src, r, set, facts, rec);
    if (wait !== null) rec.hold = await wait;
    if (rec.hold === 'failed') {
      rec.ips = NO_IPS;
      rec.ttl = null;
      return this.#fail(started, rec, q, msg, 'commit_failed', COMMIT_EDE);
    }
    this.#finish(started, rec);
    return reply;
  }

  /**
   * An answer that passes without being learned (an Audit source, a name its policies do not
   * allow): its addresses go into the flow record, marked not learned, so a connection the
   * kernel then logs as an Audit would-be drop still names the name. A reply that does not
   * read is simply not noted: it is forwarded as it is either way.
   */
  #noteUnlearned(reply: Buffer, q: ParsedQuery, rec: Rec): void {
    try {
      const facts = readAnswers(reply, q.question, this.#d.settings);
      const ips: string[] = [];
      let ttl: number | null = null;
      for (const a of facts.addresses) {
        if (ips.length >= this.#d.store.limits.maxIpsPerName) break;
        ips.push(a.ip);
        ttl = ttl === null ? a.ttl : Math.min(ttl, a.ttl);
      }
      if (ips.length === 0) return;
      rec.ips = ips;
      rec.ttl = ttl;
      rec.learned = false;
    } catch (err) {
      if (!(err instanceof WireError || err instanceof AnswerError)) throw err;
    }
  }

  /** End the query with SERVFAIL (and an Extended DNS Error) for `reason`. */
  #fail(started: number, rec: Rec, q: ParsedQuery, msg: Buffer, reason: string, ede: Ede): Buffer {
    rec.verdict = 'error';
    rec.reason = reason;
    rec.rcode = Rcode.SERVFAIL;
    rec.truncated = undefined;
    this.#finish(started, rec);
    return buildReply(basisOf(q), msg, Rcode.SERVFAIL, ede);
  }

  /**
   * Store what the answer lets this source reach (rec.ips, rec.ttl) and hand new elements to the
   * datapath. Returns the hold to wait for, or null when nothing is on its way to the kernel.
   */
  #learn(
    src: string,
    r: Extract<Route, { learn: true }>,
    set: CompiledPolicies,
    facts: AnswerFacts,
    rec: Rec,
  ): Promise<Hold> | null {
    const d = this.#d;
    const accept: AddressInput[] = [];
    let ttl: number | null = null;
    const srcV6 = src.includes(':');
    for (const a of facts.addresses) {
      // An address is learnable when the source, or a sibling address of its identity (a
      // dual-stack pod asking for AAAA over IPv4), has the address's family. The source itself
      // has it when the families agree; only the other family asks for the siblings.
      if (a.ip.includes(':') !== srcV6 && elementSources(d.identities, src, a.ip).length === 0) {
        d.metrics.notLearned.inc({ reason: 'family' });
        continue;
      }
      if (!answerAddressAllowed(set, r.identity, a.ip)) {
        d.metrics.notLearned.inc({ reason: 'denied_range' });
        continue;
      }
      if (accept.length >= d.store.limits.maxIpsPerName) {
        d.metrics.notLearned.inc({ reason: 'cap' });
        continue;
      }
      accept.push(a);
      ttl = ttl === null ? a.ttl : Math.min(ttl, a.ttl);
    }
    rec.ttl = ttl;
    if (accept.length === 0) return null;

    const now = d.clock.now();
    const result = d.store.learn(src, r.name, accept, now);
    for (let i = 0; i < result.rejected.length; i++) d.metrics.notLearned.inc({ reason: 'store' });
    // The port ranges and element lists are built only when an address is new or refreshed:
    // most answers repeat what the source already holds.
    let changes: Changes | null = null;
    let waits: Promise<void>[] | null = null;
    const inFlight = d.commits.pendingKeys > 0;
    const ips: string[] = [];
    for (const l of result.learned) {
      ips.push(l.ip);
      if (l.change === 'unchanged') {
        // Learned by an earlier answer: wait if its commit is still on its way to the kernel.
        const pending = inFlight ? d.commits.pendingFor(holdKey(src, l.ip)) : undefined;
        if (pending) {
          if (waits === null) waits = [];
          waits.push(pending);
        }
        continue;
      }
      d.metrics.countLearned(l.change);
      if (changes === null)
        changes = { ranges: portRanges(set, r.identity, r.name), elements: [], keys: [], ips: [] };
      const timeoutMs = Math.max(1, d.store.expiryFor(src, l.ip) - now);
      for (const e of elementsFor(d.identities, src, l.ip, changes.ranges, timeoutMs))
        changes.elements.push(e);
      changes.keys.push(holdKey(src, l.ip));
      changes.ips.push(l.ip);
    }
    rec.ips = ips;
    if (result.evicted.length > 0) this.#forgetEvicted(src, r.identity, set, result.evicted);
    if (changes !== null && changes.elements.length > 0) {
      const commit = d.commits.submit(changes.elements, changes.keys);
      const forgotten = changes.ips;
      const committed = changes;
      // Whenever the commit fails (even after the hold released the answer), the store must not
      // claim what the kernel does not hold: the next answer then learns it again.
      commit.then(
        () => this.#undoRevoked(src, r.name, committed),
        (err: unknown) => {
          for (const ip of forgotten) d.store.forget(src, r.name, ip);
          d.log.error(
            { [F.sourceIp]: src, [F.name]: r.name, [F.error]: errorMessage(err) },
            'datapath commit failed',
          );
        },
      );
      if (waits === null) waits = [];
      waits.push(commit);
    }
    if (waits === null) return null;
    const holdStarted = d.clock.now();
    return holdFor(waits, d.settings.holdTimeoutMs).then((hold) => {
      d.metrics.commitWait.observe((d.clock.now() - holdStarted) / 1000);
      if (hold === 'timeout') d.metrics.holdTimeouts.inc();
      if (hold === 'failed') d.metrics.commitFailures.inc();
      return hold;
    });
  }

  /**
   * A sync that judged this answer's entries while their elements were still on the way to the
   * kernel (a policy or identity change right after the store write) removed the entries but
   * found no element to remove; the commit then put them in. Whatever the store no longer holds
   * once the commit is done leaves the kernel again, unless another name of the source holds it.
   */
  #undoRevoked(src: string, name: string, changes: Changes): void {
    const d = this.#d;
    const now = d.clock.now();
    const gone = new Set<string>();
    for (const ip of changes.ips)
      if (!d.store.holds(src, name, ip, now) && d.store.expiryFor(src, ip) <= now) gone.add(ip);
    if (gone.size === 0) return;
    const keys: ElementKey[] = changes.elements
      .filter((e) => gone.has(e.destination))
      .map((e) => ({
        source: e.source,
        destination: e.destination,
        protocol: e.protocol,
        portFrom: e.portFrom,
        portTo: e.portTo,
      }));
    d.metrics.notLearned.inc({ reason: 'revoked_in_flight' }, gone.size);
    d.datapath.forget(keys).catch((err: unknown) => {
      d.log.error({ [F.sourceIp]: src, [F.error]: errorMessage(err) }, 'datapath forget failed');
    });
  }

  /** Remove kernel elements of evicted entries that no other name of the source still holds. */
  #forgetEvicted(
    src: string,
    identity: Identity,
    set: CompiledPolicies,
    evicted: ReadonlyArray<{ name: string; ip: string; orphaned: boolean }>,
  ): void {
    const keys: ElementKey[] = [];
    for (const e of evicted) {
      if (!e.orphaned) continue;
      const ranges = portRanges(set, identity, e.name as CanonicalName);
      for (const el of elementsFor(this.#d.identities, src, e.ip, ranges, 1)) {
        keys.push({
          source: el.source,
          destination: el.destination,
          protocol: el.protocol,
          portFrom: el.portFrom,
          portTo: el.portTo,
        });
      }
    }
    if (keys.length === 0) return;
    this.#d.datapath.forget(keys).catch((err: unknown) => {
      this.#d.log.error({ [F.sourceIp]: src, [F.error]: errorMessage(err) }, 'datapath forget failed');
    });
  }

  #finish(started: number, rec: Rec): void {
    const d = this.#d;
    const ms = d.clock.now() - started;
    rec.ms = ms;
    d.metrics.countQuery(rec.verdict, rec.reason, rec.transport, ms / 1000);
    d.flowLog.record(rec);
  }
}

// Policy names as printed in flow lines, made once per policy rather than once per query.
const policyTexts = new WeakMap<PolicyRef, string>();

function policyText(ref: PolicyRef): string {
  if (ref.namespace === null) return ref.name;
  let text = policyTexts.get(ref);
  if (text === undefined) {
    text = policyRefText(ref);
    policyTexts.set(ref, text);
  }
  return text;
}

function basisOf(q: ParsedQuery): ReplyBasis {
  return { id: q.id, flags: q.flags, questionEnd: q.questionEnd, edns: q.edns };
}

/** Wait for every commit, at most `ms`. */
function holdFor(waits: Promise<void>[], ms: number): Promise<Hold> {
  return new Promise<Hold>((resolve) => {
    const timer = setTimeout(() => resolve('timeout'), ms);
    const all = waits.length === 1 ? waits[0]! : Promise.all(waits);
    all.then(
      () => {
        clearTimeout(timer);
        resolve('committed');
      },
      () => {
        clearTimeout(timer);
        resolve('failed');
      },
    );
  });
}

export type { DnsVerdict };
