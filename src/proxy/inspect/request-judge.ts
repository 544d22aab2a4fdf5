/**
 * The policy's answer for one request of an inspected connection, asked of the policies in force
 * when the request arrives (a policy change applies to the next request, not the next
 * connection). A name no rule allows any more gets `no_matching_rule`.
 */
import type { Mode } from '../../core/mode.ts';
import type { CanonicalName } from '../../core/names.ts';
import type { CompiledPolicies } from '../../policy/compile.ts';
import { decideRequest, type RequestDecision } from '../../policy/decide-request.ts';
import type { HttpRequestFacts } from '../../policy/http-rule.ts';
import { type Inspection, inspectionFor } from '../../policy/inspection.ts';
import type { Identity } from '../../policy/model.ts';

export function requestJudge(
  current: () => CompiledPolicies,
  identity: Identity,
  mode: Mode,
  name: CanonicalName,
  port: number,
): (facts: HttpRequestFacts) => RequestDecision {
  let set: CompiledPolicies | null = null;
  let inspection: Inspection | null = null;
  return (facts) => {
    const now = current();
    if (now !== set || inspection === null) {
      set = now;
      inspection = inspectionFor(now, identity, name, port);
    }
    if (inspection.rules.length === 0) {
      return {
        verdict: mode === 'Audit' ? 'audit' : 'deny',
        reason: 'no_matching_rule',
        policy: null,
        rule: null,
        httpRule: null,
      };
    }
    return decideRequest(inspection.rules, mode, facts);
  };
}
