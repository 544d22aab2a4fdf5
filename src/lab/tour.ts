/**
 * The tour: checks from the lab's pods that show what the example policies do, run with real
 * clients (curl with the lab CA, dig, nc), printed as a table of expected against observed.
 *
 * The expectations assume the agent runs in the node namespace with examples/. Without it,
 * nothing answers on the pods' resolver address and nothing is enforced, so the tour runs but
 * shows mismatches. Checks of one pod run in order (a later check may rely on an address an
 * earlier one learned); pods run side by side.
 */
import { labExec } from './exec.ts';
import {
  type ClientResult,
  type Observation,
  observeCurl,
  observeDig,
  observeTcp,
  observeUdp,
  type Verdict,
} from './observe.ts';
import { type LabPlan, siteFor, statePaths } from './plan.ts';
import { listening } from './sockets.ts';
import { formatTable, matches, type TableRow } from './table.ts';

export type TourCheck =
  | {
      readonly kind: 'http';
      readonly pod: string;
      readonly url: string;
      readonly family?: 4 | 6;
      /** Connect to this address instead of resolving (curl --resolve). */
      readonly via?: string;
      readonly expect: Verdict;
      readonly why: string;
    }
  | {
      readonly kind: 'dns';
      readonly pod: string;
      readonly name: string;
      readonly qtype?: 'A' | 'AAAA';
      /** Ask this server instead of the pod's resolver. */
      readonly server?: string;
      readonly expect: Verdict;
      readonly why: string;
    }
  | {
      readonly kind: 'tcp' | 'udp';
      readonly pod: string;
      readonly ip: string;
      readonly port: number;
      readonly expect: Verdict;
      readonly why: string;
    };

export interface TourResult {
  readonly check: TourCheck;
  readonly observed: Observation;
}

function hostPort(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** How a check reads in the table's target column. */
export function targetText(c: TourCheck): string {
  switch (c.kind) {
    case 'http': {
      const via = c.via ? ` via ${c.via}` : '';
      return `${c.url.replace(/\/$/, '')}${c.family === 6 ? ' (IPv6)' : ''}${via}`;
    }
    case 'dns':
      return `dns ${c.server ? `@${c.server} ` : ''}${c.name}${c.qtype && c.qtype !== 'A' ? ` ${c.qtype}` : ''}`;
    case 'tcp':
      return `tcp ${hostPort(c.ip, c.port)}`;
    case 'udp':
      return `udp ${hostPort(c.ip, c.port)}${c.port === 443 ? ' (QUIC)' : ''}`;
  }
}

function ip4(plan: LabPlan, name: string): string {
  const site = siteFor(plan, name);
  if (!site?.ipv4[0]) throw new Error(`no site for ${name}`);
  return site.ipv4[0];
}

type HttpCheck = Extract<TourCheck, { kind: 'http' }>;

/** An HTTPS (or HTTP) request from a pod, with what the example policies should do to it. */
function http(
  pod: string,
  url: string,
  expect: Verdict,
  why: string,
  more: Pick<HttpCheck, 'family' | 'via'> = {},
): TourCheck {
  return { kind: 'http', pod, url, expect, why, ...more };
}

function dns(pod: string, name: string, expect: Verdict, why: string, server?: string): TourCheck {
  return { kind: 'dns', pod, name, expect, why, ...(server ? { server } : {}) };
}

function socket(
  kind: 'tcp' | 'udp',
  pod: string,
  ip: string,
  port: number,
  expect: Verdict,
  why: string,
): TourCheck {
  return { kind, pod, ip, port, expect, why };
}

/** The demo's checks, derived from examples/*.yaml: one list per pod. */
export function tourChecks(plan: LabPlan): TourCheck[] {
  return [...paymentsChecks(plan), ...ciRunnerChecks(), ...webChecks(), ...unmanagedChecks()];
}

/** payments-api: stripe-only (api.stripe.com on TCP 443), and every way around it that must fail. */
function paymentsChecks(plan: LabPlan): TourCheck[] {
  const pod = 'payments-api';
  const stripe = ip4(plan, 'api.stripe.com');
  const github = ip4(plan, 'github.com');
  const other = plan.otherResolver.ipv4;
  return [
    http(pod, 'https://api.stripe.com/', 'allow', 'stripe-only allows it on TCP 443'),
    http(pod, 'https://api.stripe.com/', 'allow', 'the same over IPv6', { family: 6 }),
    http(pod, 'http://api.stripe.com/', 'deny', 'port 80 is not in the rule'),
    dns(pod, 'evil.example.com', 'deny', 'not allowed: REFUSED'),
    http(
      pod,
      'https://cdn-neighbour.example.net/',
      'deny',
      "api.stripe.com's IP, another name: the SNI check closes it",
      {
        via: stripe,
      },
    ),
    http(
      pod,
      'https://api.stripe.com/',
      'deny',
      'an allowed name (spoofed SNI) sent to an address never learned for it',
      {
        via: github,
      },
    ),
    http(
      pod,
      `https://${github}/`,
      'deny',
      'an address this pod never learned, without a name (port 443 goes through the SNI check)',
    ),
    socket('udp', pod, stripe, plan.quicPort, 'deny', 'the rule is TCP only'),
    dns(pod, 'evil.example.com', 'deny', 'DNS to another resolver is redirected to namegate', other),
    socket('tcp', pod, other, plan.dotPort, 'deny', 'DNS over TLS does not escape'),
  ];
}

/** ci-runner: ci-sources-and-packages, with a ** wildcard; another pod's names stay closed. */
function ciRunnerChecks(): TourCheck[] {
  const pod = 'ci-runner';
  return [
    http(pod, 'https://github.com/', 'allow', 'ci-sources-and-packages'),
    http(pod, 'https://objects.githubusercontent.com/', 'allow', 'matched by **.githubusercontent.com'),
    http(pod, 'https://registry.npmjs.org/', 'allow', 'ci-sources-and-packages'),
    http(pod, 'https://api.stripe.com/', 'deny', "another pod's name"),
  ];
}

/** web: only an Audit policy selects it, so would-be denials pass (and are logged). */
function webChecks(): TourCheck[] {
  return [
    http('web', 'https://pypi.org/', 'allow', 'audit-package-mirrors allows it'),
    http('web', 'https://evil.example.com/', 'allow', 'Audit: logged as a would-be denial, not dropped'),
  ];
}

/** unmanaged: no policy selects it; namegate leaves it alone. */
function unmanagedChecks(): TourCheck[] {
  return [http('unmanaged', 'https://evil.example.com/', 'allow', 'no policy selects this pod')];
}

const CLIENT_TIMEOUT_MS = 15_000;

/** Runs a client in a pod: the lab namespaces by default, real pods on a Kubernetes lab. */
export type PodClient = (pod: string, argv: string[], input?: string) => Promise<ClientResult>;

function labClient(plan: LabPlan): PodClient {
  return (pod, argv, input) =>
    labExec(plan, pod, argv, { timeoutMs: CLIENT_TIMEOUT_MS, ...(input !== undefined ? { input } : {}) });
}

async function observe(plan: LabPlan, c: TourCheck, client: PodClient): Promise<Observation> {
  const exec = (argv: string[], input?: string): Promise<ClientResult> => client(c.pod, argv, input);
  switch (c.kind) {
    case 'http': {
      const url = new URL(c.url);
      const port = url.port || (url.protocol === 'https:' ? '443' : '80');
      const argv = [
        'curl',
        '-sS',
        '--connect-timeout',
        '3',
        '--max-time',
        '6',
        '--cacert',
        statePaths(plan).caCert,
      ];
      argv.push('-w', '\\n%{http_code}', '-o', '-');
      if (c.family) argv.push(c.family === 6 ? '-6' : '-4');
      if (c.via) argv.push('--resolve', `${url.hostname}:${port}:${c.via}`);
      argv.push(c.url);
      const o = observeCurl(await exec(argv));
      if (o.reason !== 'could not resolve host') return o;
      // Say why DNS gave nothing: REFUSED (namegate's denial), NXDOMAIN, or no resolver at all.
      const qtype = c.family === 6 ? 'AAAA' : 'A';
      const d = observeDig(await exec(['dig', '+time=2', '+tries=1', url.hostname, qtype]));
      return {
        verdict: 'deny',
        reason: d.verdict === 'deny' ? `DNS ${d.reason.replace(/^DNS /, '')}` : o.reason,
      };
    }
    case 'dns': {
      const argv = ['dig', '+time=2', '+tries=1'];
      if (c.server) argv.push(`@${c.server}`);
      argv.push(c.name, c.qtype ?? 'A');
      const answer = plan.otherResolverAnswer;
      return observeDig(await exec(argv), (ip) =>
        ip === answer.ipv4 || ip === answer.ipv6 ? '(the other resolver answered)' : null,
      );
    }
    case 'tcp':
      return observeTcp(await exec(['nc', '-z', '-v', '-w', '3', c.ip, String(c.port)]));
    case 'udp':
      return observeUdp(await exec(['nc', '-u', '-w', '2', c.ip, String(c.port)], 'ping\n'));
  }
}

/** Run checks: pods side by side, each pod's checks in order. Results keep the checks' order. */
export async function runChecks(
  plan: LabPlan,
  checks: readonly TourCheck[],
  client: PodClient = labClient(plan),
): Promise<TourResult[]> {
  const results = new Array<TourResult>(checks.length);
  const byPod = new Map<string, number[]>();
  for (const [i, c] of checks.entries()) byPod.set(c.pod, [...(byPod.get(c.pod) ?? []), i]);
  await Promise.all(
    [...byPod.values()].map(async (indexes) => {
      for (const i of indexes) {
        const check = checks[i]!;
        let observed: Observation;
        try {
          observed = await observe(plan, check, client);
        } catch (err) {
          observed = { verdict: 'deny', reason: `error: ${(err as Error).message}` };
        }
        results[i] = { check, observed };
      }
    }),
  );
  return results;
}

export function tableRows(results: readonly TourResult[]): TableRow[] {
  return results.map((r) => ({
    pod: r.check.pod,
    target: targetText(r.check),
    expected: r.check.expect,
    observed: r.observed.verdict,
    reason: r.observed.reason,
  }));
}

export interface TourOptions {
  readonly out: (line: string) => void;
  readonly colour?: boolean;
  readonly checks?: readonly TourCheck[];
  /** Where the clients run (default: the lab's pod namespaces). */
  readonly client?: PodClient;
  /** Say so when nothing answers DNS on the pods' resolver address (the static lab's agent). */
  readonly resolverNote?: boolean;
}

/** Does anything listen for DNS on the pods' resolver address in the node namespace? */
export async function resolverListens(plan: LabPlan): Promise<boolean> {
  const have = await listening(plan.nodeNetns).catch(() => new Set<string>());
  const port = plan.resolver.port;
  return [`udp ${plan.resolver.ipv4}:${port}`, `udp 0.0.0.0:${port}`, `udp *:${port}`].some((k) =>
    have.has(k),
  );
}

/** Run the tour and print its table; true when every check came out as expected. */
export async function runTour(plan: LabPlan, options: TourOptions): Promise<boolean> {
  const checks = options.checks ?? tourChecks(plan);
  options.out(
    `namegate lab ${plan.name}: ${checks.length} checks from ${new Set(checks.map((c) => c.pod)).size} pods`,
  );
  if (options.resolverNote !== false && !(await resolverListens(plan))) {
    options.out(
      `note: nothing answers DNS at ${plan.resolver.ipv4}:53 in ${plan.nodeNetns} (no agent running), so names do` +
        ' not resolve and nothing is enforced: expect mismatches. Start it with namegate lab up --agent.',
    );
  }
  const rows = tableRows(await runChecks(plan, checks, options.client));
  for (const line of formatTable(rows, { colour: options.colour === true })) options.out(line);
  return rows.every(matches);
}
