/**
 * The datapath interface: what the rest of namegate asks of the kernel. The nftables driver
 * implements it for real; RecordingDatapath implements it in memory for unit tests.
 *
 * Invariants every implementation keeps:
 * - learn() resolves only after the elements are committed (the DNS proxy releases the answer
 *   then); it rejects with NG_DATAPATH_COMMIT when they could not be, never silently.
 * - A timeout is never 0 (an nftables element with timeout 0 never expires).
 * - reconcile() changes the kernel by difference and never flushes learned elements.
 */
import type { Cidr } from '../core/ip.ts';
import type { Mode, Protocol } from '../policy/model.ts';

/** One learned permission: this source may open this destination on these ports. */
export interface AllowElement {
  /** Canonical IP text of the governed source. */
  readonly source: string;
  /** Canonical IP text of the destination; same family as source. */
  readonly destination: string;
  readonly protocol: Protocol;
  readonly portFrom: number;
  readonly portTo: number;
  /** How long the element lives from its commit, in ms; > 0. */
  readonly timeoutMs: number;
}

/** An element without its timeout: what forget() takes and what identifies an element. */
export type ElementKey = Omit<AllowElement, 'timeoutMs'>;

export function elementKey(e: ElementKey): string {
  return `${e.source}|${e.destination}|${e.protocol}|${e.portFrom}-${e.portTo}`;
}

/** A governed source and the mode it is governed in. */
export interface SourceEntry {
  readonly ip: string;
  readonly mode: Mode;
}

/** A static allow from a toCIDRs rule: this source may reach this network on these ports. */
export interface CidrElement {
  readonly source: string;
  readonly cidr: Cidr;
  readonly except: readonly Cidr[];
  readonly protocol: Protocol;
  readonly portFrom: number;
  readonly portTo: number;
}

/** A port whose connections from this source are redirected to the SNI/Host proxy. */
export interface VerifyElement {
  readonly source: string;
  readonly protocol: 'TCP';
  readonly portFrom: number;
  readonly portTo: number;
}

/** The state that follows from policy and identity alone (not from DNS answers). */
export interface StaticState {
  readonly sources: readonly SourceEntry[];
  readonly cidrs: readonly CidrElement[];
  readonly verify: readonly VerifyElement[];
}

export interface Datapath {
  /** Make the kernel's static state equal to `state`, by difference, in one transaction. */
  reconcile(state: StaticState): Promise<void>;
  /** Add elements, or refresh their timeouts; resolves when the kernel has committed them. */
  learn(elements: readonly AllowElement[]): Promise<void>;
  /** Remove elements and end the connections they allowed (conntrack). */
  forget(elements: readonly ElementKey[]): Promise<void>;
  /** The learned elements the kernel holds now (after a restart, what survived). */
  listLearned(): Promise<AllowElement[]>;
  /**
   * Delete UDP/TCP 53 conntrack entries of sources that just became governed, so queries to
   * their old resolver go through the redirect (K8S-05). Optional: in-memory datapaths lack it.
   */
  flushDnsConntrack?(sources: readonly string[]): Promise<unknown>;
  /** Stop background work; leaves the kernel's state in place (enforcement outlives the agent). */
  close(): Promise<void>;
}
