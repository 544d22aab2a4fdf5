/**
 * Flow-log lines for people: the demo follows the agent's flow log and prints one short line
 * per DNS decision instead of the JSON. Pure: a JSON line in, a text line (or null) out.
 */

export interface FlowStyle {
  readonly green: (s: string) => string;
  readonly red: (s: string) => string;
  readonly yellow: (s: string) => string;
  readonly dim: (s: string) => string;
}

const plain: FlowStyle = { green: (s) => s, red: (s) => s, yellow: (s) => s, dim: (s) => s };

export function formatFlowLine(line: string, style: FlowStyle = plain): string | null {
  let r: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(line);
    if (typeof parsed !== 'object' || parsed === null) return null;
    r = parsed as Record<string, unknown>;
  } catch {
    return null;
  }
  const str = (k: string) => (typeof r[k] === 'string' ? (r[k] as string) : '');
  const time = str('time').slice(11, 23);
  const who = str('identity') || str('src');
  const verdict = str('verdict');
  const paint =
    verdict === 'allow'
      ? style.green
      : verdict === 'audit'
        ? style.yellow
        : verdict === ''
          ? style.dim
          : style.red;
  const ips =
    Array.isArray(r['ips']) && r['ips'].length > 0 ? ` -> ${(r['ips'] as unknown[]).join(' ')}` : '';
  const policy = str('policy') ? ` by ${str('policy')}` : '';
  const what = str('qname') ? `${str('qname')} ${str('qtype')}` : str('msg');
  return `${style.dim(time)} ${who.padEnd(24)} ${what.padEnd(34)} ${paint(verdict.padEnd(6))} ${str('reason')}${policy}${ips}`;
}
