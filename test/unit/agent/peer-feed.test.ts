import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { createAgentMetrics } from '../../../src/agent/metrics.ts';
import { PeerFeed } from '../../../src/agent/peer-feed.ts';
import { systemClock } from '../../../src/core/clock.ts';
import { silentLogger } from '../../../src/observe/log.ts';
import { LearnedStore } from '../../../src/store/learned-store.ts';
import { PeerEntries } from '../../../src/store/peer-view.ts';

const TTL = { minTtlSeconds: 30, maxTtlSeconds: 3600, graceSeconds: 20 };
const POD = '10.0.1.5';
const WAIT_MS = 10_000;

interface Agent {
  readonly feed: PeerFeed;
  readonly store: LearnedStore;
  readonly peers: PeerEntries;
  readonly registry: Registry;
}

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'namegate-peers-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function agent(t: { after(fn: () => Promise<void>): void }, dir: string): Agent {
  const registry = new Registry();
  const peers = new PeerEntries(1000);
  const feed = new PeerFeed({
    dir,
    peers,
    clock: systemClock,
    log: silentLogger(),
    metrics: createAgentMetrics(registry),
    maxLifetimeMs: 3_700_000,
    startWaitMs: WAIT_MS,
  });
  t.after(() => feed.stop());
  return { feed, store: new LearnedStore({ ttl: TTL }), peers, registry };
}

async function counter(a: Agent, name: string, labels: Record<string, string>): Promise<number> {
  const m = (await a.registry.getMetricsAsJSON()).find((x) => x.name === name);
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return Number(v?.value ?? 0);
}

test('two agents share what they learned, both ways: snapshot at start, then live (REL-11)', async (t) => {
  const dir = await tempDir(t);
  const a = agent(t, dir);
  const now = () => systemClock.now();
  a.store.learn(POD, 'api.stripe.com', [{ ip: '198.51.100.10', ttl: 60 }], now());
  await a.feed.start(a.store);
  const b = agent(t, dir);
  b.store.learn(POD, 'github.com', [{ ip: '192.0.2.1', ttl: 60 }], now());
  // The start returns once A's snapshot is in and A follows B back: before B's DNS answers.
  await b.feed.start(b.store);
  assert.ok(b.peers.holds(POD, 'api.stripe.com', '198.51.100.10', now()), "A's snapshot reached B");
  assert.ok(
    await a.feed.until(() => a.peers.holds(POD, 'github.com', '192.0.2.1', now()), WAIT_MS),
    "B's snapshot reached A",
  );
  // Live: an answer of either agent reaches the other.
  a.store.learn(POD, 'api.stripe.com', [{ ip: '198.51.100.11', ttl: 60 }], now());
  b.store.learn('10.0.1.6', 'github.com', [{ ip: '192.0.2.2', ttl: 60 }], now());
  assert.ok(await b.feed.until(() => b.peers.holds(POD, 'api.stripe.com', '198.51.100.11', now()), WAIT_MS));
  assert.ok(await a.feed.until(() => a.peers.holds('10.0.1.6', 'github.com', '192.0.2.2', now()), WAIT_MS));
  // The expiry travels: about the store's, never beyond it.
  const own = [...a.store.entries()].find((e) => e.ip === '198.51.100.11');
  assert.ok(own);
  assert.equal(b.peers.holds(POD, 'api.stripe.com', '198.51.100.11', own.expiresAt + 1000), false);
  // Peer entries stay out of the own store (no kernel element, no checkpoint).
  assert.equal(
    [...b.store.entries()].some((e) => e.ip.startsWith('198.51.100.')),
    false,
  );
  assert.equal(await counter(a, 'namegate_agent_peer_feed_connections_total', { role: 'followed' }), 1);
  assert.equal(await counter(a, 'namegate_agent_peer_feed_connections_total', { role: 'served' }), 1);
  // A stops: its socket goes, B keeps what it knew (until expiry) and logs the end.
  const aSocket = a.feed.socketPath;
  await a.feed.stop();
  assert.equal((await readdir(dir)).includes(path.basename(aSocket)), false);
  assert.ok(b.peers.holds(POD, 'api.stripe.com', '198.51.100.10', now()));
});

test('a malformed peer line closes that feed with a reason code; nothing else changes', async (t) => {
  const dir = await tempDir(t);
  const evil = createServer((s) => {
    s.on('error', () => undefined);
    s.end(
      `${JSON.stringify({ s: POD, n: 'good.example', i: '192.0.2.1', e: Date.now() + 60_000 })}\n` +
        `${JSON.stringify({ s: POD, n: 'EVIL.example', i: '192.0.2.9', e: Date.now() + 60_000 })}\n` +
        `${JSON.stringify({ s: POD, n: 'after.example', i: '192.0.2.3', e: Date.now() + 60_000 })}\n`,
    );
  });
  const evilPath = path.join(dir, 'evil.sock');
  await new Promise<void>((resolve) => evil.listen(evilPath, resolve));
  t.after(() => new Promise<void>((resolve) => evil.close(() => resolve())));
  const b = agent(t, dir);
  await b.feed.start(b.store);
  const errors = () => counter(b, 'namegate_agent_peer_feed_errors_total', { reason: 'bad_name' });
  assert.ok(await b.feed.until(() => b.feed.following === 0, WAIT_MS), 'the feed was closed');
  assert.equal(await errors(), 1);
  assert.ok(
    b.peers.holds(POD, 'good.example', '192.0.2.1', systemClock.now()),
    'lines before the bad one stay',
  );
  assert.equal(
    b.peers.holds(POD, 'after.example', '192.0.2.3', systemClock.now()),
    false,
    'nothing after it',
  );
  assert.equal(b.peers.holds(POD, 'evil.example', '192.0.2.9', systemClock.now()), false);
});

test('an oversized line closes the feed (line_too_long), bounded in memory', async (t) => {
  const dir = await tempDir(t);
  const evil = createServer((s) => {
    s.on('error', () => undefined);
    s.write('x'.repeat(64 * 1024));
  });
  await new Promise<void>((resolve) => evil.listen(path.join(dir, 'big.sock'), resolve));
  t.after(() => new Promise<void>((resolve) => evil.close(() => resolve())));
  const b = agent(t, dir);
  await b.feed.start(b.store);
  const errors = () => counter(b, 'namegate_agent_peer_feed_errors_total', { reason: 'line_too_long' });
  assert.ok(await b.feed.until(() => b.feed.following === 0, WAIT_MS), 'the feed was closed');
  assert.equal(await errors(), 1);
  assert.equal(b.peers.size, 0);
});

test('a stale socket left by a dead agent is removed at start; a live one is not', async (t) => {
  const dir = await tempDir(t);
  const stale = path.join(dir, '4242-dead.sock');
  await writeFile(stale, '');
  const old = new Date(Date.now() - 60_000);
  await utimes(stale, old, old);
  const b = agent(t, dir);
  await b.feed.start(b.store);
  const files = await readdir(dir);
  assert.equal(files.includes('4242-dead.sock'), false);
  assert.deepEqual(files, [path.basename(b.feed.socketPath)]);
});
