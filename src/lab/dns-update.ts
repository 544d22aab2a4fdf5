/**
 * Changing the lab's DNS while it runs: RFC 2136 dynamic updates signed with the lab's TSIG key,
 * sent by knsupdate from inside the internet namespace (the only place that reaches knot besides
 * the lab's own links).
 */
import { readFile } from 'node:fs/promises';
import { ErrorCode, NamegateError } from '../core/errors.ts';
import { type RecordChange, updateScript } from './knot-config.ts';
import { type LabPlan, statePaths } from './plan.ts';
import { inNetns, run } from './run.ts';

export type { RecordChange };

export async function updateRecords(plan: LabPlan, changes: readonly RecordChange[]): Promise<void> {
  let secret: string;
  try {
    secret = (await readFile(statePaths(plan).tsigKey, 'utf8')).trim();
  } catch {
    throw new NamegateError(ErrorCode.UsageInvalid, `lab ${plan.name} is not up (no TSIG key)`);
  }
  const script = updateScript(plan, secret, changes);
  const r = await run(inNetns(plan.inetNetns, ['knsupdate']), { input: script, timeoutMs: 10_000 });
  // knsupdate prints the server's answer; anything but NOERROR is a failed update.
  if (r.code !== 0 || !/status: NOERROR/.test(r.stdout)) {
    throw new NamegateError(
      ErrorCode.CommandFailed,
      `dns update failed (exit ${r.code}): ${(r.stderr.trim() || r.stdout.trim()).split('\n').slice(-4).join(' / ')}`,
    );
  }
}

/** Point a name at new addresses (replacing its A and AAAA records). */
export function setAddresses(
  plan: LabPlan,
  name: string,
  addresses: { readonly ipv4?: readonly string[]; readonly ipv6?: readonly string[]; readonly ttl?: number },
): Promise<void> {
  const changes: RecordChange[] = [];
  const ttl = addresses.ttl !== undefined ? { ttl: addresses.ttl } : {};
  if (addresses.ipv4) changes.push({ name, type: 'A', data: addresses.ipv4, ...ttl });
  if (addresses.ipv6) changes.push({ name, type: 'AAAA', data: addresses.ipv6, ...ttl });
  return updateRecords(plan, changes);
}
