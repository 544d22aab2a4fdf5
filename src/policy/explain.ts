/**
 * The path to a verdict, for people: which policies select the source and why others do not,
 * which rules match the name, and what the port check said. Built from the same functions that
 * decide, so the explanation cannot drift from the decision.
 */
import type { CanonicalName } from '../core/names.ts';
import { type CompiledPolicies, isSelected } from './compile.ts';
import { type Decision, decide, portAllows } from './decide.ts';
import { type Identity, type PortRange, type Protocol, policyRefText } from './model.ts';
import { patternMatches } from './pattern.ts';

export interface Explanation {
  readonly decision: Decision;
  readonly lines: string[];
}

export function formatPorts(ports: readonly PortRange[]): string {
  return ports
    .map((p) =>
      p.from === 0 && p.to === 65535
        ? `${p.protocol}/*`
        : p.from === p.to
          ? `${p.protocol}/${p.from}`
          : `${p.protocol}/${p.from}-${p.to}`,
    )
    .join(', ');
}

export function explain(
  set: CompiledPolicies,
  identity: Identity,
  name: CanonicalName,
  protocol: Protocol,
  port: number,
): Explanation {
  const decision = decide(set, identity, name, protocol, port);
  const lines: string[] = [];
  const labels =
    Object.entries(identity.labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(',') || '(none)';
  lines.push(`source ${identity.key}: namespace ${identity.namespace}, labels ${labels}`);
  lines.push(`question: ${name} ${protocol}/${port}`);

  const selection = set.selection(identity);
  const selecting = set.policies.map((_, i) => i).filter((i) => set.selects(i, identity));
  if (selecting.length === 0) {
    lines.push(`none of the ${set.size} policies selects this source: it is not governed`);
  } else {
    for (const i of selecting) {
      const p = set.policies[i];
      if (!p) continue;
      const counted = isSelected(selection, i)
        ? ''
        : ' (not counted: an Enforce policy also selects the source)';
      lines.push(`selected by ${p.ref.kind} ${policyRefText(p.ref)} [${p.mode}]${counted}`);
    }
    lines.push(`governed in ${selection.mode} mode`);
    for (const i of selection.policies) {
      const p = set.policies[i];
      if (!p) continue;
      p.rules.forEach((rule, r) => {
        for (const f of rule.fqdns) {
          if (!patternMatches(f.pattern, name)) continue;
          const ok = portAllows(rule.ports, protocol, port);
          lines.push(
            `  ${policyRefText(p.ref)} spec.egress[${r}] ${f.text} matches; ports ${formatPorts(rule.ports)}: ${ok ? 'port allowed' : 'port not listed'}${rule.verify === 'None' ? '' : ` (verify: ${rule.verify})`}`,
          );
        }
      });
    }
  }
  const by = decision.policy ? ` by ${decision.policy.kind} ${policyRefText(decision.policy)}` : '';
  const rule = decision.rule !== null ? ` spec.egress[${decision.rule}]` : '';
  lines.push(`verdict: ${decision.verdict} (${decision.reason})${by}${rule}`);
  return { decision, lines };
}
