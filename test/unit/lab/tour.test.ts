import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { canonicalName } from '../../../src/core/names.ts';
import { loadPolicies } from '../../../src/formats/load.ts';
import { makeIdentity } from '../../../src/identity/identity.ts';
import {
  type ClientResult,
  observeCurl,
  observeDig,
  observeTcp,
  observeUdp,
  parseDig,
} from '../../../src/lab/observe.ts';
import { labPlan, siteFor } from '../../../src/lab/plan.ts';
import { parseSs } from '../../../src/lab/sockets.ts';
import { formatTable, type TableRow } from '../../../src/lab/table.ts';
import { tableRows, targetText, tourChecks } from '../../../src/lab/tour.ts';
import { CompiledPolicies } from '../../../src/policy/compile.ts';
import { decide, decideQuery } from '../../../src/policy/decide.ts';
import { decideRequest } from '../../../src/policy/decide-request.ts';
import { inspectionFor } from '../../../src/policy/inspection.ts';

function res(code: number | null, stdout = '', stderr = '', timedOut = false): ClientResult {
  return { code, stdout, stderr, timedOut };
}

const DIG_NOERROR = `
; <<>> DiG 9.18.44-1~deb12u1-Debian <<>> @198.51.100.53 www.example.org
;; global options: +cmd
;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 4711
;; flags: qr aa rd; QUERY: 1, ANSWER: 2, AUTHORITY: 0, ADDITIONAL: 1

;; QUESTION SECTION:
;www.example.org.		IN	A

;; ANSWER SECTION:
www.example.org.	300	IN	CNAME	edge.example.net.
edge.example.net.	300	IN	A	203.0.113.90

;; Query time: 0 msec
`;

const DIG_REFUSED = `
;; ->>HEADER<<- opcode: QUERY, status: REFUSED, id: 1
;; flags: qr rd; QUERY: 1, ANSWER: 0, AUTHORITY: 0, ADDITIONAL: 1
`;

describe('reading client results', () => {
  it('curl: status and the vhost that served', () => {
    assert.deepEqual(observeCurl(res(0, 'hello from api.stripe.com\n200')), {
      verdict: 'allow',
      reason: 'HTTP 200 from api.stripe.com',
    });
    assert.deepEqual(observeCurl(res(0, '\n421')), { verdict: 'allow', reason: 'HTTP 421' });
  });

  it('curl: failures name their cause', () => {
    const cases: Array<[ClientResult, string]> = [
      [res(6, '', 'curl: (6) Could not resolve host: evil.example.com'), 'could not resolve host'],
      [res(7, '', 'curl: (7) Failed to connect'), 'connection refused'],
      [res(28, '', 'curl: (28) Connection timed out after 3001 milliseconds'), 'connect timeout'],
      [
        res(28, '', 'curl: (28) Operation timed out after 6000 milliseconds with 0 bytes received'),
        'timeout',
      ],
      [res(35, '', 'curl: (35) OpenSSL SSL_connect: Connection reset by peer'), 'TLS handshake failed'],
      [res(56, '', 'curl: (56) Recv failure: Connection reset by peer'), 'connection reset'],
      [res(null, '', '', true), 'timeout'],
      [
        res(47, '', 'curl: (47) Maximum (50) redirects followed'),
        'curl exit 47: Maximum (50) redirects followed',
      ],
    ];
    for (const [r, reason] of cases) assert.deepEqual(observeCurl(r), { verdict: 'deny', reason });
  });

  it('dig: status, addresses and the CNAME chain', () => {
    assert.deepEqual(parseDig(DIG_NOERROR), {
      status: 'NOERROR',
      addresses: ['203.0.113.90'],
      cnames: ['edge.example.net'],
    });
    assert.deepEqual(observeDig(res(0, DIG_NOERROR)), { verdict: 'allow', reason: 'NOERROR 203.0.113.90' });
    assert.deepEqual(observeDig(res(0, DIG_REFUSED)), { verdict: 'deny', reason: 'REFUSED' });
    assert.deepEqual(observeDig(res(0, DIG_REFUSED.replace('REFUSED', 'NXDOMAIN'))), {
      verdict: 'deny',
      reason: 'NXDOMAIN',
    });
    assert.deepEqual(observeDig(res(0, DIG_REFUSED.replace('REFUSED', 'NOERROR'))), {
      verdict: 'deny',
      reason: 'NOERROR, no address',
    });
    assert.deepEqual(observeDig(res(9, ';; connection timed out; no servers could be reached\n')), {
      verdict: 'deny',
      reason: 'DNS timeout',
    });
    const labelled = observeDig(res(0, DIG_NOERROR), (ip) => (ip === '203.0.113.90' ? '(edge)' : null));
    assert.equal(labelled.reason, 'NOERROR 203.0.113.90 (edge)');
  });

  it('nc: connected, refused, timed out; UDP replies', () => {
    assert.deepEqual(observeTcp(res(0, '', 'Connection to 1.2.3.4 443 port [tcp/https] succeeded!')), {
      verdict: 'allow',
      reason: 'connected',
    });
    assert.equal(
      observeTcp(res(1, '', 'nc: connect to 1.2.3.4 port 443 (tcp) failed: Connection refused')).reason,
      'connection refused',
    );
    assert.equal(
      observeTcp(res(1, '', 'nc: connect to 1.2.3.4 port 443 (tcp) timed out: Operation now in progress'))
        .reason,
      'connect timeout',
    );
    assert.equal(observeTcp(res(null, '', '', true)).reason, 'connect timeout');
    assert.deepEqual(observeUdp(res(0, 'quic-like reply from 203.0.113.10\n')), {
      verdict: 'allow',
      reason: 'UDP reply: quic-like reply from 203.0.113.10',
    });
    assert.deepEqual(observeUdp(res(0, '')), { verdict: 'deny', reason: 'no UDP reply' });
  });
});

describe('the tour table', () => {
  const rows: TableRow[] = [
    {
      pod: 'payments-api',
      target: 'https://api.stripe.com',
      expected: 'allow',
      observed: 'allow',
      reason: 'HTTP 200 from api.stripe.com',
    },
    {
      pod: 'ci-runner',
      target: 'tcp 203.0.113.20:443',
      expected: 'deny',
      observed: 'allow',
      reason: 'connected',
    },
  ];

  it('aligns columns and ends with a summary', () => {
    const lines = formatTable(rows);
    assert.match(lines[0]!, /^pod +\| target +\| expected \| observed \| reason$/);
    const bars = lines.slice(2, 4).map((l) => [...l.matchAll(/\|/g)].map((m) => m.index));
    assert.deepEqual(bars[0], bars[1]);
    assert.equal(lines.at(-1), '1/2 checks as expected');
    assert.ok(!lines.join('\n').includes('\u001b['), 'no colour unless asked');
  });

  it('colours matches green and mismatches red on a terminal, with the same layout', () => {
    const plain = formatTable(rows);
    const coloured = formatTable(rows, { colour: true });
    assert.ok(coloured[2]!.includes('\u001b[32m'));
    assert.ok(coloured[3]!.includes('\u001b[31m'));
    // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping ANSI colour codes
    const strip = (s: string) => s.replace(/\u001b\[\d+m/g, '');
    assert.deepEqual(coloured.map(strip), plain);
  });

  it('keeps each row on one bounded line', () => {
    const long = formatTable([{ ...rows[0]!, reason: `a\nb${'x'.repeat(500)}` }]);
    assert.ok(long[2]!.length < 200);
    assert.ok(!long[2]!.includes('\n'));
  });

  it('describes targets', () => {
    const plan = labPlan('unit');
    const texts = tourChecks(plan).map(targetText);
    assert.ok(texts.includes('https://api.stripe.com (IPv6)'));
    assert.ok(texts.includes('https://cdn-neighbour.example.net via 203.0.113.10'));
    assert.ok(texts.includes('udp 203.0.113.10:443 (QUIC)'));
    assert.ok(texts.includes('dns @198.51.100.54 evil.example.com'));
    const rowsOut = tableRows([
      { check: tourChecks(plan)[0]!, observed: { verdict: 'deny', reason: 'DNS timeout' } },
    ]);
    assert.deepEqual(rowsOut[0], {
      pod: 'payments-api',
      target: 'https://api.stripe.com',
      expected: 'allow',
      observed: 'deny',
      reason: 'DNS timeout',
    });
  });
});

describe('the tour checks agree with the policy engine on examples/', async () => {
  const report = await loadPolicies([new URL('../../../examples', import.meta.url).pathname]);
  const set = new CompiledPolicies(report.policies.map((p) => p.policy));
  const plan = labPlan('unit');

  it('loads the examples', () => {
    assert.deepEqual(report.errors, []);
    assert.ok(report.policies.length >= 3);
  });

  for (const check of tourChecks(plan)) {
    it(`${check.pod}: ${targetText(check)} is ${check.expect}`, () => {
      const pod = plan.pods.find((p) => p.id === check.pod)!;
      const identity = makeIdentity(
        `pod:${pod.namespace}/${pod.id}`,
        pod.namespace,
        pod.labels,
        pod.namespaceLabels,
      );
      let verdict: string;
      const mode = set.selection(identity).mode;
      if (check.kind === 'http') {
        const url = new URL(check.url);
        const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
        const host = url.hostname.replace(/^\[|\]$/g, '');
        if (isIP(host) !== 0) {
          // No name to check (no SNI): only an ungoverned or audited pod gets through.
          verdict = mode === 'Enforce' ? 'deny' : 'allow';
        } else {
          verdict = decide(set, identity, canonicalName(host), 'TCP', port).verdict;
          // Sent to an address the name does not have: the SNI check (and the IP sets) refuse it.
          const site = siteFor(plan, host);
          const learnable = [...(site?.ipv4 ?? []), ...(site?.ipv6 ?? [])];
          if (verdict === 'allow' && check.via && !learnable.includes(check.via) && mode === 'Enforce')
            verdict = 'deny';
          // Inspected: the request itself is judged (a Host other than the name is fronting).
          const inspection = inspectionFor(set, identity, canonicalName(host), port);
          if (verdict === 'allow' && inspection.inspect && mode !== null) {
            const fronted = (check.headers ?? []).some(
              (h) => /^host:/i.test(h) && h.slice(5).trim() !== host,
            );
            const facts = {
              method: check.method ?? 'GET',
              host: canonicalName(host),
              path: url.pathname,
              headers: [],
              websocket: false,
            };
            const d = decideRequest(inspection.rules, mode, facts);
            verdict = fronted ? 'deny' : d.verdict;
          }
        }
      } else if (check.kind === 'dns') {
        verdict = decideQuery(set, identity, canonicalName(check.name)).verdict;
      } else {
        // A raw address no answer taught this pod: only an ungoverned or audited pod gets through.
        verdict = mode === 'Enforce' ? 'deny' : 'allow';
      }
      assert.equal(verdict === 'deny' ? 'deny' : 'allow', check.expect);
    });
  }
});

describe('client output readers on arbitrary text', () => {
  it('never throw and always give a one-line verdict', () => {
    fc.assert(
      fc.property(
        fc.option(fc.integer({ min: 0, max: 255 })),
        fc.string(),
        fc.string(),
        fc.boolean(),
        (code, out, err, to) => {
          const r = res(code ?? null, out, err, to);
          for (const o of [observeCurl(r), observeDig(r), observeTcp(r), observeUdp(r)]) {
            assert.ok(o.verdict === 'allow' || o.verdict === 'deny');
          }
          parseDig(out);
          parseSs(out);
          const lines = formatTable([
            { pod: out, target: err, expected: 'allow', observed: 'deny', reason: out + err },
          ]);
          for (const l of lines) assert.ok(!l.includes('\n'));
        },
      ),
      { numRuns: 300 },
    );
  });
});
