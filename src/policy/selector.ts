/**
 * Kubernetes label selectors with the API server's semantics:
 * - every matchLabels pair must be present with that value;
 * - In: the key is present and its value is listed; NotIn: the key is absent or its value is
 *   not listed; Exists / DoesNotExist: presence of the key;
 * - all requirements are ANDed; an empty selector selects everything.
 */

export type Labels = Readonly<Record<string, string>>;

export type SelectorOperator = 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';

export interface LabelSelectorRequirement {
  readonly key: string;
  readonly operator: SelectorOperator;
  readonly values?: readonly string[] | undefined;
}

export interface LabelSelector {
  readonly matchLabels?: Labels | undefined;
  readonly matchExpressions?: readonly LabelSelectorRequirement[] | undefined;
}

/** A selector compiled to a predicate. */
export type Selector = (labels: Labels) => boolean;

export const selectAll: Selector = () => true;

export function compileSelector(selector: LabelSelector | undefined | null): Selector {
  if (!selector) return selectAll;
  const checks: Selector[] = [];
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    checks.push((labels) => labels[key] === value);
  }
  for (const req of selector.matchExpressions ?? []) {
    checks.push(requirement(req));
  }
  if (checks.length === 0) return selectAll;
  return (labels) => {
    for (const check of checks) if (!check(labels)) return false;
    return true;
  };
}

function requirement(req: LabelSelectorRequirement): Selector {
  const key = req.key;
  const values = new Set(req.values ?? []);
  switch (req.operator) {
    case 'In':
      return (labels) => Object.hasOwn(labels, key) && values.has(labels[key] as string);
    case 'NotIn':
      return (labels) => !Object.hasOwn(labels, key) || !values.has(labels[key] as string);
    case 'Exists':
      return (labels) => Object.hasOwn(labels, key);
    case 'DoesNotExist':
      return (labels) => !Object.hasOwn(labels, key);
  }
}

// Label keys: optional DNS-subdomain prefix and "/", then a name of 1..63 characters.
const LABEL_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$/;
const LABEL_PREFIX = /^[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?$/;
const LABEL_VALUE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$/;

/** The Kubernetes rules for selector contents; returns problems as [path, message]. */
export function validateSelector(selector: LabelSelector, path: string): Array<[string, string]> {
  const problems: Array<[string, string]> = [];
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    const keyProblem = labelKeyProblem(key);
    if (keyProblem) problems.push([`${path}.matchLabels`, keyProblem]);
    if (typeof value !== 'string' || !LABEL_VALUE.test(value)) {
      problems.push([`${path}.matchLabels.${key}`, `${JSON.stringify(value)} is not a valid label value`]);
    }
  }
  (selector.matchExpressions ?? []).forEach((req, i) => {
    const at = `${path}.matchExpressions[${i}]`;
    const keyProblem = labelKeyProblem(req.key);
    if (keyProblem) problems.push([`${at}.key`, keyProblem]);
    const n = req.values?.length ?? 0;
    if ((req.operator === 'In' || req.operator === 'NotIn') && n === 0) {
      problems.push([`${at}.values`, `operator ${req.operator} needs at least one value`]);
    }
    if ((req.operator === 'Exists' || req.operator === 'DoesNotExist') && n > 0) {
      problems.push([`${at}.values`, `operator ${req.operator} takes no values`]);
    }
    (req.values ?? []).forEach((value, j) => {
      if (!LABEL_VALUE.test(value)) {
        problems.push([`${at}.values[${j}]`, `${JSON.stringify(value)} is not a valid label value`]);
      }
    });
  });
  return problems;
}

export function labelKeyProblem(key: string): string | null {
  const slash = key.indexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : null;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== null && !LABEL_PREFIX.test(prefix)) {
    return `label key ${JSON.stringify(key)} has an invalid prefix (a DNS subdomain is expected)`;
  }
  if (!LABEL_NAME.test(name)) {
    return `label key ${JSON.stringify(key)} is invalid (1..63 letters, digits, "-", "_", ".", alphanumeric at both ends)`;
  }
  return null;
}

/** Parse `k=v,k2=v2` (the CLI's --labels form). */
export function parseLabelList(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const part of text.split(',')) {
    const item = part.trim();
    if (item === '') continue;
    const eq = item.indexOf('=');
    if (eq <= 0) throw new Error(`label ${JSON.stringify(item)} must be written key=value`);
    const key = item.slice(0, eq).trim();
    const problem = labelKeyProblem(key);
    if (problem) throw new Error(problem);
    const value = item.slice(eq + 1).trim();
    if (!LABEL_VALUE.test(value)) throw new Error(`${JSON.stringify(value)} is not a valid label value`);
    labels[key] = value;
  }
  return labels;
}
