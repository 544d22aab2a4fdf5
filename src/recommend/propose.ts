/**
 * "Propose a rule" for one denied or audited flow (the dashboard's action): the smallest policy
 * that would allow it, as namegate YAML, checked by the validator like every recommendation.
 */
import type { FlowEvent } from '../flows/event.ts';
import { Recommender } from './engine.ts';
import { nativeDocument, renderYaml } from './render.ts';
import { validateRecommended } from './validate.ts';

export interface Proposal {
  readonly yaml: string;
  readonly errors: readonly string[];
  readonly warnings: readonly string[];
}

export function proposeRule(e: FlowEvent): Proposal {
  if (e.name === null) {
    return {
      yaml: '',
      errors: ['this flow has no name (an address no answer named): allow it with a toCIDRs rule instead'],
      warnings: [],
    };
  }
  const r = new Recommender();
  // The flow itself counts as observed, whatever it was decided: that is the question asked.
  r.add({ ...e, verdict: 'audit', reason: 'proposed', rcode: e.rcode === 'NXDOMAIN' ? 'NOERROR' : e.rcode });
  const [rec] = r.result({ minSeen: 1, siblings: 0 });
  if (!rec)
    return { yaml: '', errors: ['the flow has no known source workload (namespace and pod)'], warnings: [] };
  const v = validateRecommended(nativeDocument(rec), 'namegate');
  return { yaml: renderYaml([rec], 'namegate', { minSeen: 1 }), errors: v.errors, warnings: v.warnings };
}
