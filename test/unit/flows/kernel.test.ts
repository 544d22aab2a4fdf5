/** NFLOG packets become kernel flow events: identity, 5-tuple, verdict from the rule, and why. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classifyAddress } from '../../../src/core/ip.ts';
import type { NflogPacket } from '../../../src/datapath/nflog-wire.ts';
import { LOG_PREFIX_AUDIT, LOG_PREFIX_DROP, LOG_PREFIX_UNKNOWN } from '../../../src/datapath/nft-ruleset.ts';
import { AddressHistory } from '../../../src/flows/history.ts';
import { KernelEvents } from '../../../src/flows/kernel.ts';
import { makeIdentity } from '../../../src/identity/identity.ts';
import { compile } from '../policy/policies.ts';

const NOW = Date.parse('2026-12-07T10:00:00.000Z');
const WEB = makeIdentity('pod:web/web', 'web', { app: 'web' });
const set = compile({
  name: 'web-egress',
  namespace: 'web',
  spec: {
    podSelector: { matchLabels: { app: 'web' } },
    egress: [{ toFQDNs: [{ name: 'api.example.com' }], ports: [{ port: 443 }] }],
  },
});

function tcp(src: number[], dst: number[], dport: number): Uint8Array {
  const b = Buffer.alloc(40);
  b[0] = 0x45;
  b[9] = 6;
  Buffer.from(src).copy(b, 12);
  Buffer.from(dst).copy(b, 16);
  b.writeUInt16BE(40000, 20);
  b.writeUInt16BE(dport, 22);
  return b;
}

function packet(prefix: string, payload: Uint8Array): NflogPacket {
  return { group: 100, prefix, timestampMs: NOW, indev: 1, outdev: 2, payload };
}

function events(history = new AddressHistory()): KernelEvents {
  return new KernelEvents({
    identity: (ip) =>
      ip === '10.10.3.2'
        ? {
            identity: WEB,
            info: { identity: WEB.key, namespace: 'web', pod: 'web', labels: { app: 'web' }, workload: null },
            siblings: ['10.10.3.2', 'fd00:10:3::2'],
          }
        : ip === '10.10.2.2'
          ? {
              identity: makeIdentity('pod:ci/ci-runner', 'ci', {}),
              info: {
                identity: 'pod:ci/ci-runner',
                namespace: 'ci',
                pod: 'ci-runner',
                labels: {},
                workload: null,
              },
              siblings: [],
            }
          : undefined,
    history,
    addressClass: classifyAddress,
    policies: () => set,
    now: () => NOW,
  });
}

test('an Enforce drop of a hard-coded address: never resolved', () => {
  const e = events().event(packet(LOG_PREFIX_DROP, tcp([10, 10, 3, 2], [203, 0, 113, 66], 443)));
  assert.equal(e?.type, 'kernel');
  assert.equal(e?.verdict, 'drop');
  assert.equal(e?.reason, 'never_resolved');
  assert.equal(e?.namespace, 'web');
  assert.deepEqual(
    [e?.src, e?.sport, e?.dst, e?.dport, e?.proto],
    ['10.10.3.2', 40000, '203.0.113.66', 443, 'tcp'],
  );
  assert.equal(e?.time, '2026-12-07T10:00:00.000Z');
});

test('an Audit would-be drop on a port the rule does not grant: the name, the ports and the policy', () => {
  const h = new AddressHistory();
  h.learn('fd00:10:3::2', 'api.example.com', ['203.0.113.5'], NOW - 10_000, NOW + 50_000);
  const e = events(h).event(packet(LOG_PREFIX_AUDIT, tcp([10, 10, 3, 2], [203, 0, 113, 5], 80)));
  assert.equal(e?.verdict, 'audit');
  assert.equal(e?.reason, 'other_port');
  assert.equal(e?.name, 'api.example.com');
  assert.equal(e?.detail?.ports, 'TCP/443');
  assert.equal(e?.policy, 'web/web-egress');
});

test('learned by another pod only: named by identity', () => {
  const h = new AddressHistory();
  h.learn('10.10.2.2', 'github.com', ['203.0.113.20'], NOW - 1000, NOW + 60_000);
  const e = events(h).event(packet(LOG_PREFIX_DROP, tcp([10, 10, 3, 2], [203, 0, 113, 20], 443)));
  assert.equal(e?.reason, 'other_source');
  assert.equal(e?.name, 'github.com');
  assert.deepEqual(e?.detail?.learnedBy, ['pod:ci/ci-runner']);
});

test("unknown sources take the rule's reason; foreign prefixes and garbage are not events", () => {
  const k = events();
  const e = k.event(packet(LOG_PREFIX_UNKNOWN, tcp([10, 10, 9, 9], [203, 0, 113, 1], 443)));
  assert.equal(e?.reason, 'unknown_source');
  assert.equal(e?.identity, null);
  assert.equal(k.event(packet('someone-else ', tcp([10, 10, 3, 2], [1, 1, 1, 1], 1))), null);
  assert.equal(k.event(packet(LOG_PREFIX_DROP, new Uint8Array([0x45, 0]))), null);
  assert.equal(k.unreadable, 2);
});
