/**
 * The hold for queries from unknown sources inside the datapath's source CIDRs (a Kubernetes
 * node's pod CIDRs). A new pod asks for its first name within milliseconds of its start, while
 * the kubelet is still reporting its address and the agent's watch has not seen it: refused
 * there and then, the client gives up or retries a second later (glibc fails at once, dig after
 * its timeout). Held instead, the query waits until the address has an identity (and the agent
 * has put it in the kernel), then takes the ordinary road as if it had just arrived.
 *
 * Fail closed and bounded: nothing is answered before the identity exists; a query waits at
 * most `timeoutMs`, then is refused as before; at most `max` queries are held in all and
 * `maxPerSource` per address (more are refused at once).
 */
import type { IdentityProvider } from '../identity/identity.ts';
import type { Identity } from '../policy/model.ts';

export interface UnknownHoldSettings {
  /** Longest wait for an identity; 0 turns the hold off (refused at once, as before). */
  readonly timeoutMs: number;
  /** Queries held at once, in total and per source address. */
  readonly max: number;
  readonly maxPerSource: number;
}

/**
 * How a hold ended: the source got an identity, the deadline passed, no room, shutdown, or the
 * identity came and went again before the kernel held it.
 */
export type UnknownHoldResult = 'identified' | 'timeout' | 'full' | 'stopped' | 'gone';

export interface HeldQuery {
  readonly result: UnknownHoldResult;
  /** Set when result is 'identified'. */
  readonly identity: Identity | undefined;
}

interface Waiter {
  readonly resolve: (held: HeldQuery) => void;
  readonly timer: NodeJS.Timeout;
  /** Known, waiting for the kernel (`settled`). */
  settling: boolean;
}

export interface UnknownHoldDeps {
  readonly identities: IdentityProvider;
  readonly settings: UnknownHoldSettings;
  /**
   * Resolves once the kernel holds the identities known now (the agent: a datapath sync that
   * starts after the call). Without it a released query may be answered before the kernel
   * lets the pod's packets out, and its first connection waits for a SYN retry.
   */
  readonly settled?: () => Promise<unknown>;
}

export class UnknownHold {
  readonly #d: UnknownHoldDeps;
  readonly #waiting = new Map<string, Set<Waiter>>();
  #total = 0;
  #stopped = false;
  readonly #unsubscribe: () => void;

  constructor(deps: UnknownHoldDeps) {
    this.#d = deps;
    this.#unsubscribe = deps.identities.onChange(() => this.#check());
  }

  get enabled(): boolean {
    return this.#d.settings.timeoutMs > 0 && !this.#stopped;
  }

  /** Queries held now. */
  get held(): number {
    return this.#total;
  }

  /** Wait for `source` to get an identity (see the file comment). Never rejects. */
  wait(source: string): Promise<HeldQuery> {
    const s = this.#d.settings;
    const known = this.#d.identities.lookup(source);
    if (known) return Promise.resolve({ result: 'identified', identity: known });
    if (!this.enabled) return Promise.resolve({ result: 'stopped', identity: undefined });
    let set = this.#waiting.get(source);
    if (this.#total >= s.max || (set?.size ?? 0) >= s.maxPerSource)
      return Promise.resolve({ result: 'full', identity: undefined });
    if (!set) {
      set = new Set();
      this.#waiting.set(source, set);
    }
    const waiters = set;
    return new Promise<HeldQuery>((resolve) => {
      const w: Waiter = {
        resolve,
        settling: false,
        timer: setTimeout(() => this.#expire(source, w), s.timeoutMs),
      };
      w.timer.unref?.();
      waiters.add(w);
      this.#total++;
    });
  }

  /** Refuse every held query (shutdown) and stop following identities. */
  stop(): void {
    this.#stopped = true;
    this.#unsubscribe();
    for (const [source, set] of this.#waiting)
      for (const w of set) this.#release(source, w, { result: 'stopped', identity: undefined });
  }

  /**
   * The deadline: refused, unless the identity has arrived and only the kernel is late (then
   * the query goes on; the non-held road would answer it too).
   */
  #expire(source: string, w: Waiter): void {
    const identity = this.#d.identities.lookup(source);
    this.#release(source, w, identity ? { result: 'identified', identity } : { result: 'timeout', identity });
  }

  #release(source: string, w: Waiter, held: HeldQuery): void {
    const set = this.#waiting.get(source);
    if (!set?.delete(w)) return;
    if (set.size === 0) this.#waiting.delete(source);
    clearTimeout(w.timer);
    this.#total--;
    w.resolve(held);
  }

  /** After any identity change: release the held sources that are known now. */
  #check(): void {
    let kernel: Promise<unknown> | null = null;
    for (const [source, set] of this.#waiting) {
      const identity = this.#d.identities.lookup(source);
      if (!identity) continue;
      for (const w of set) {
        if (w.settling) continue;
        w.settling = true;
        // Looked up again at release: the pod may have gone meanwhile (never its old identity).
        const release = () => {
          const now = this.#d.identities.lookup(source);
          this.#release(
            source,
            w,
            now ? { result: 'identified', identity: now } : { result: 'gone', identity: now },
          );
        };
        if (!this.#d.settled) {
          release();
          continue;
        }
        // Known now; wait (within the same deadline) for the kernel to hold it too, one wait for
        // every source this change made known. A failed sync still releases: the identity is
        // known, and the query is judged by policy as on the ordinary road.
        kernel ??= this.#d.settled();
        kernel.then(release, release);
      }
    }
  }
}
