/**
 * The authoritative DNS server of the lab's internet: knotd's configuration and its zone. Pure:
 * text from the plan.
 *
 * One zone, the root, holds every name. An authoritative server follows CNAMEs only inside a
 * zone, so a single zone makes knot answer a chain (www.example.org -> edge.example.net) in one
 * response, as the recursive resolver a real agent forwards to would; names outside it get
 * NXDOMAIN, never a REFUSED that could be mistaken for namegate's.
 */
import { isIP } from 'node:net';
import { ErrorCode, NamegateError } from '../core/errors.ts';
import { tryCanonicalName } from '../core/names.ts';
import type { DnsRecord, LabPlan } from './plan.ts';
import { statePaths } from './plan.ts';

export const TSIG_ALGORITHM = 'hmac-sha256';

function quote(s: string): string {
  return JSON.stringify(s);
}

export function knotConfig(plan: LabPlan, tsigSecret: string): string {
  const p = statePaths(plan);
  return [
    '# Written by namegate lab up; removed by namegate lab down.',
    'server:',
    `    rundir: ${quote(`${p.knot}/run`)}`,
    `    pidfile: ${quote(`${p.knot}/run/knot.pid`)}`,
    `    listen: [ ${plan.upstream.ipv4}@${plan.upstream.port}, ${plan.upstream.ipv6}@${plan.upstream.port} ]`,
    '    udp-workers: 2',
    '    tcp-workers: 2',
    '    background-workers: 1',
    '',
    'log:',
    `  - target: ${quote(`${p.logs}/knotd.log`)}`,
    '    any: info',
    '',
    'database:',
    `    storage: ${quote(`${p.knot}/db`)}`,
    '',
    'key:',
    `  - id: ${plan.tsigKeyName}`,
    `    algorithm: ${TSIG_ALGORITHM}`,
    `    secret: ${tsigSecret}`,
    '',
    'acl:',
    '  - id: lab-update',
    `    key: ${plan.tsigKeyName}`,
    '    action: update',
    '',
    'zone:',
    '  - domain: .',
    `    file: ${quote(p.zoneFile)}`,
    '    acl: lab-update',
    // Updates live in the journal; the file the lab wrote stays as written.
    '    zonefile-sync: -1',
    '    zonefile-load: whole',
    '    journal-content: changes',
    '    semantic-checks: off',
    '',
  ].join('\n');
}

function rdata(r: DnsRecord): string {
  switch (r.type) {
    case 'CNAME':
    case 'NS':
      return `${r.data}.`;
    case 'TXT':
      return quote(r.data);
    default:
      return r.data;
  }
}

export function zoneFile(plan: LabPlan, serial = 1): string {
  const lines = [
    '; The lab root zone. Written by namegate lab up.',
    '$TTL 300',
    `. 3600 IN SOA ns1.example.net. hostmaster.example.net. ${serial} 3600 600 86400 30`,
    '. 3600 IN NS ns1.example.net.',
  ];
  for (const r of plan.records) lines.push(`${r.name}. ${r.ttl} IN ${r.type} ${rdata(r)}`);
  return `${lines.join('\n')}\n`;
}

export interface RecordChange {
  readonly name: string;
  readonly type: 'A' | 'AAAA' | 'CNAME' | 'TXT';
  /** The new data; empty removes every record of this name and type. */
  readonly data: readonly string[];
  readonly ttl?: number;
}

function checkChange(c: RecordChange): void {
  const bad = (why: string) =>
    new NamegateError(ErrorCode.UsageInvalid, `dns update of ${JSON.stringify(c.name)}: ${why}`);
  if (typeof tryCanonicalName(c.name) !== 'string' || c.name !== tryCanonicalName(c.name)) {
    throw bad('not a canonical name');
  }
  if (c.ttl !== undefined && (!Number.isInteger(c.ttl) || c.ttl < 0 || c.ttl > 86400))
    throw bad('ttl out of range');
  if (c.data.length > 32) throw bad('more than 32 records');
  for (const d of c.data) {
    // The script is line-based: data must never carry a line break or a second command.
    const ok =
      c.type === 'A'
        ? isIP(d) === 4
        : c.type === 'AAAA'
          ? isIP(d) === 6
          : c.type === 'CNAME'
            ? tryCanonicalName(d) === d
            : /^[\x20-\x7e]{0,255}$/.test(d);
    if (!ok) throw bad(`${JSON.stringify(d)} is not valid ${c.type} data`);
  }
}

/** The knsupdate script that replaces the records of a name and type (RFC 2136, TSIG-signed). */
export function updateScript(plan: LabPlan, tsigSecret: string, changes: readonly RecordChange[]): string {
  for (const c of changes) checkChange(c);
  const lines = [
    `server ${plan.upstream.ipv4} ${plan.upstream.port}`,
    `key ${TSIG_ALGORITHM}:${plan.tsigKeyName} ${tsigSecret}`,
    'zone .',
    'origin .',
  ];
  for (const c of changes) {
    lines.push(`update delete ${c.name}. ${c.type}`);
    for (const d of c.data) {
      lines.push(
        `update add ${c.name}. ${c.ttl ?? 300} ${c.type} ${rdata({ name: c.name, type: c.type, ttl: 0, data: d })}`,
      );
    }
  }
  lines.push('send', 'answer', 'quit');
  return `${lines.join('\n')}\n`;
}
