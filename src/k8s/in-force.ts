/**
 * What the policy objects put in force (pure; the policy source does the I/O). namegate fails
 * closed on a rejected object, never open: a pod that only it selected must not become
 * ungoverned, which would allow all its egress.
 * - accepted: its policies;
 * - rejected_last_good_kept: it was accepted before (same uid) and an update made it invalid:
 *   the version last accepted stays in force until the object is fixed or deleted;
 * - rejected_fail_closed: never accepted, but who it governs can be read: those pods are
 *   governed with nothing allowed (`denyAll`);
 * - rejected_no_subject: not even that can be read; the one case that cannot fail closed.
 */
import type { Policy } from '../policy/model.ts';

export type Standing =
  | 'accepted'
  | 'rejected_last_good_kept'
  | 'rejected_fail_closed'
  | 'rejected_no_subject';

export const STANDINGS: readonly Standing[] = [
  'accepted',
  'rejected_last_good_kept',
  'rejected_fail_closed',
  'rejected_no_subject',
];

/** What inForce needs of an object's verdict (policy-source.ts `Evaluated`). */
export interface Verdict {
  readonly uid: string | undefined;
  /** Its own problems and those its dialect's set check found. */
  readonly errors: readonly unknown[];
  readonly policies: readonly Policy[];
  /** Its subject with no egress allowed; undefined when the subject cannot be read. */
  readonly denyAll: readonly Policy[] | undefined;
}

/** The policies of an object's last accepted version. */
export interface LastGood {
  readonly uid: string | undefined;
  readonly policies: readonly Policy[];
}

export interface InForce {
  readonly policies: Policy[];
  readonly standings: Map<string, Standing>;
  /** The next `lastGood`: objects no longer read are gone from it. */
  readonly lastGood: Map<string, LastGood>;
}

export function inForce(
  verdicts: ReadonlyMap<string, Verdict>,
  lastGood: ReadonlyMap<string, LastGood>,
): InForce {
  const policies: Policy[] = [];
  const standings = new Map<string, Standing>();
  const next = new Map<string, LastGood>();
  for (const [id, v] of verdicts) {
    const before = lastGood.get(id);
    // A new uid is a new object under an old name: what the old one allowed does not carry over.
    const kept = before && before.uid === v.uid ? before : undefined;
    let standing: Standing;
    let now: readonly Policy[];
    if (v.errors.length === 0) {
      [standing, now] = ['accepted', v.policies];
      next.set(id, { uid: v.uid, policies: v.policies });
    } else if (kept) {
      [standing, now] = ['rejected_last_good_kept', kept.policies];
      next.set(id, kept);
    } else if (v.denyAll) {
      [standing, now] = ['rejected_fail_closed', v.denyAll];
    } else {
      [standing, now] = ['rejected_no_subject', []];
    }
    standings.set(id, standing);
    policies.push(...now);
  }
  return { policies, standings, lastGood: next };
}
