/**
 * What a client's result says about a connection attempt: allowed (it reached the server, or DNS
 * answered with addresses) or denied (refused, timed out, reset), and a short reason a person can
 * read in the tour's table. Pure: exit codes and text in, a verdict out.
 */

export type Verdict = 'allow' | 'deny';

export interface Observation {
  readonly verdict: Verdict;
  readonly reason: string;
}

export interface ClientResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
}

function firstLine(s: string): string {
  return (
    s
      .split('\n')
      .map((l) => l.trim())
      .find((l) => l.length > 0) ?? ''
  );
}

const CURL_FAILURES: Readonly<Record<number, string>> = {
  6: 'could not resolve host',
  7: 'connection refused',
  35: 'TLS handshake failed',
  52: 'empty reply',
  56: 'connection reset',
  60: 'certificate not trusted',
};

/** The body every lab vhost answers with names it: "hello from api.stripe.com". */
function servedBy(body: string): string | null {
  const m = /hello from ([a-z0-9.-]+)/.exec(body);
  return m ? m[1]! : null;
}

/**
 * curl run with `-sS -w '\n%{http_code}'`: the body, then the status on the last line.
 * Exit 6 (name not resolved) is reported as such; the tour asks dig for the DNS reason.
 */
export function observeCurl(r: ClientResult): Observation {
  if (r.timedOut) return { verdict: 'deny', reason: 'timeout' };
  if (r.code === 0) {
    const lines = r.stdout.trimEnd().split('\n');
    const status = lines[lines.length - 1]?.trim() ?? '';
    const body = lines.slice(0, -1).join('\n');
    // namegate's own answer to an inspected request it refused: "namegate: <reason>".
    const refused = /^namegate: ([a-z0-9_]+)/.exec(body);
    if (refused && /^[45]/.test(status)) return { verdict: 'deny', reason: `HTTP ${status} ${refused[1]}` };
    const host = servedBy(body);
    return { verdict: 'allow', reason: `HTTP ${status}${host ? ` from ${host}` : ''}` };
  }
  const code = r.code ?? -1;
  if (code === 28) {
    return {
      verdict: 'deny',
      reason: /connect|connection timed out/i.test(r.stderr) ? 'connect timeout' : 'timeout',
    };
  }
  const known = CURL_FAILURES[code];
  if (known) return { verdict: 'deny', reason: known };
  return {
    verdict: 'deny',
    reason: `curl exit ${code}: ${firstLine(r.stderr).replace(/^curl: \(\d+\) /, '')}`,
  };
}

export interface DigAnswer {
  readonly status: string | null;
  readonly addresses: readonly string[];
  readonly cnames: readonly string[];
}

/** Read dig's default output: the header's status and the answer section's A/AAAA/CNAME data. */
export function parseDig(stdout: string): DigAnswer {
  const status = /status: ([A-Z]+)/.exec(stdout)?.[1] ?? null;
  const addresses: string[] = [];
  const cnames: string[] = [];
  let inAnswer = false;
  for (const raw of stdout.split('\n')) {
    const line = raw.trim();
    if (line.startsWith(';; ANSWER SECTION')) {
      inAnswer = true;
      continue;
    }
    if (line.startsWith(';;') || line === '') {
      if (inAnswer && line === '') inAnswer = false;
      continue;
    }
    if (!inAnswer) continue;
    const cols = line.split(/\s+/);
    const type = cols[3];
    const data = cols[4];
    if (!data) continue;
    if (type === 'A' || type === 'AAAA') addresses.push(data);
    if (type === 'CNAME') cnames.push(data.replace(/\.$/, ''));
  }
  return { status, addresses, cnames };
}

/** dig run with `+time=N +tries=1`: allow when it answered with addresses. */
export function observeDig(r: ClientResult, label?: (address: string) => string | null): Observation {
  if (r.timedOut || /timed out|no servers could be reached/i.test(r.stdout + r.stderr)) {
    return { verdict: 'deny', reason: 'DNS timeout' };
  }
  const a = parseDig(r.stdout);
  if (a.status === null) {
    return { verdict: 'deny', reason: `dig exit ${r.code}: ${firstLine(r.stderr || r.stdout)}` };
  }
  if (a.status === 'NOERROR' && a.addresses.length > 0) {
    const first = a.addresses[0]!;
    const note = label?.(first);
    const more = a.addresses.length > 1 ? ` (+${a.addresses.length - 1})` : '';
    return { verdict: 'allow', reason: `NOERROR ${first}${more}${note ? ` ${note}` : ''}` };
  }
  return { verdict: 'deny', reason: a.status === 'NOERROR' ? 'NOERROR, no address' : a.status };
}

/** `nc -z -v -w N ip port` (OpenBSD netcat). */
export function observeTcp(r: ClientResult): Observation {
  if (r.timedOut) return { verdict: 'deny', reason: 'connect timeout' };
  if (r.code === 0) return { verdict: 'allow', reason: 'connected' };
  const text = `${r.stderr}\n${r.stdout}`;
  if (/refused/i.test(text)) return { verdict: 'deny', reason: 'connection refused' };
  if (/timed out|in progress/i.test(text)) return { verdict: 'deny', reason: 'connect timeout' };
  if (/unreachable|no route/i.test(text)) return { verdict: 'deny', reason: 'unreachable' };
  return { verdict: 'deny', reason: `nc exit ${r.code}: ${firstLine(r.stderr)}` };
}

/** A datagram sent with `nc -u`: allowed when the listener's reply came back. */
export function observeUdp(r: ClientResult): Observation {
  const reply = firstLine(r.stdout);
  if (reply.length > 0) return { verdict: 'allow', reason: `UDP reply: ${reply}` };
  if (/refused/i.test(r.stderr)) return { verdict: 'deny', reason: 'port unreachable' };
  return { verdict: 'deny', reason: 'no UDP reply' };
}
