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
import type { Mode } from '../core/mode.ts';
import type { Protocol } from '../core/protocol.ts';

/** One learned permission: this source may open this destination on these ports. */
export interface AllowElement {
  /**
   * Canonical IP text of the source address that asked (the DNS query's source), never a CIDR:
   * learning is per address even when the source is governed as part of a CIDR group.
   */
  readonly source: string;
  /** Canonical IP text of the destination; same family as source. */
  readonly destination: string;
  readonly protocol: Protocol;
  readonly portFrom: number;
  readonly portTo: number;
  /** How long the element lives from its commit, in ms; > 0. */
  readonly timeoutMs: number;
}

/** What forget() did once it resolves: its elements are gone and so are their flows. */
export interface ForgetResult {
  /** Conntrack entries deleted (flows ended); 0 where no kernel is involved. */
  readonly flows: number;
}

/** An element without its timeout: what forget() takes and what identifies an element. */
export type ElementKey = Omit<AllowElement, 'timeoutMs'>;

export function elementKey(e: ElementKey): string {
  return `${e.source}|${e.destination}|${e.protocol}|${e.portFrom}-${e.portTo}`;
}

/**
 * A governed source and the mode it is governed in. Sources may nest (a /32 inside a /24): an
 * address is governed by the longest prefix listed that contains it, in that prefix's mode, with
 * that prefix's CIDR allows and verify ports only (src/datapath/source-ranges.ts).
 */
export interface SourceEntry {
  /**
   * An address ("10.0.1.2") or a CIDR ("10.0.1.0/24", host bits zero): a pod's IP, or a gateway
   * source group's prefix. A /32 or /128 is the same as the bare address.
   */
  readonly ip: string;
  readonly mode: Mode;
}

/** A static allow from a toCIDRs rule: this source may reach this network on these ports. */
export interface CidrElement {
  /**
   * The governed source it belongs to, as in SourceEntry.ip (address or CIDR). It applies to the
   * addresses that source owns after longest-prefix resolution; a source not in `sources` is not
   * governed and its elements are left out.
   */
  readonly source: string;
  readonly cidr: Cidr;
  readonly except: readonly Cidr[];
  readonly protocol: Protocol;
  readonly portFrom: number;
  readonly portTo: number;
}

/** A port whose connections from this source are redirected to the SNI/Host proxy. */
export interface VerifyElement {
  /** As CidrElement.source. */
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
  /**
   * Optional: prefixes (address or CIDR) that identity resolves to a group no policy governs.
   * Nested in a governed prefix, such a prefix is carved out of it: its addresses are then not
   * governed, as identity says. Without it they would take the enclosing prefix's mode (fail
   * closed). Prefixes listed here and in `sources` are governed.
   */
  readonly ungoverned?: readonly string[];
}

export interface Datapath {
  /** Make the kernel's static state equal to `state`, by difference, in one transaction. */
  reconcile(state: StaticState): Promise<void>;
  /** Add elements, or refresh their timeouts; resolves when the kernel has committed them. */
  learn(elements: readonly AllowElement[]): Promise<void>;
  /**
   * Remove elements and end the connections they allowed (conntrack), as one step: it resolves
   * only once both are done, and rejects (NG_COMMAND_FAILED) when the elements went but some
   * flows could not be ended.
   */
  forget(elements: readonly ElementKey[]): Promise<ForgetResult>;
  /** The learned elements the kernel holds now (after a restart, what survived). */
  listLearned(): Promise<AllowElement[]>;
  /**
   * Delete UDP/TCP 53 conntrack entries of sources (addresses or CIDRs) that just became
   * governed, so queries to their old resolver go through the redirect (K8S-05). Optional:
   * in-memory datapaths lack it.
   */
  flushDnsConntrack?(sources: readonly string[]): Promise<unknown>;
  /** Stop background work; leaves the kernel's state in place (enforcement outlives the agent). */
  close(): Promise<void>;
}
