/**
 * Build the inspector from its settings: the CA store (loaded now, then polled for rotation),
 * the leaf minter, metrics and the request log. A CA that cannot be loaded at start is an error
 * the caller reports; the SNI proxy then runs without an inspector and refuses connections that
 * need one (fail closed).
 */
import { readFile } from 'node:fs/promises';
import type { Registry } from 'prom-client';
import type { Clock } from '../../core/clock.ts';
import { errorMessage } from '../../core/errors.ts';
import { F } from '../../observe/fields.ts';
import type { FlowLogMode, LineSink } from '../../observe/line-sink.ts';
import type { Logger } from '../../observe/log.ts';
import type { HeadLimits } from '../http-head.ts';
import { CaStore } from './ca.ts';
import { Inspector } from './inspector.ts';
import { LeafMinter } from './leaf-minter.ts';
import { inspectMetrics } from './metrics.ts';
import { RequestLog } from './request-log.ts';
import type { InspectSettings } from './settings.ts';

export interface StartedInspection {
  readonly inspector: Inspector;
  readonly store: CaStore;
  stop(): void;
}

export async function startInspection(o: {
  readonly settings: InspectSettings;
  readonly head: HeadLimits;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly flowLog: LineSink | null;
  readonly flowMode: FlowLogMode;
  readonly registry: Registry;
  readonly log: Logger;
  readonly clock: Clock;
}): Promise<StartedInspection> {
  const s = o.settings;
  const metrics = inspectMetrics(o.registry);
  let minter: LeafMinter | null = null;
  const store = await CaStore.open(s.ca, {
    onRotate: (ca) => {
      minter?.reset();
      metrics.caReloads.inc({ result: 'rotated' });
      o.log.info({ [F.event]: 'proxy', fingerprint: ca.fingerprint }, 'inspection CA rotated');
    },
    onRefused: (err) => {
      metrics.caReloads.inc({ result: 'refused' });
      o.log.error(
        { [F.event]: 'proxy', [F.error]: errorMessage(err) },
        'new inspection CA refused; the old one stays',
      );
    },
  });
  minter = new LeafMinter(store, {
    maxEntries: s.maxLeaves,
    leafValiditySeconds: s.leafValiditySeconds,
    clock: o.clock,
  });
  store.watch(s.reloadMs);
  const upstreamCa = s.upstreamCaFile === null ? undefined : await readFile(s.upstreamCaFile, 'utf8');
  const inspector = new Inspector({
    minter,
    ...(upstreamCa !== undefined ? { upstreamCa } : {}),
    connectTimeoutMs: Math.max(o.connectTimeoutMs, s.handshakeTimeoutMs),
    handshakeTimeoutMs: s.handshakeTimeoutMs,
    idleTimeoutMs: o.idleTimeoutMs,
    headLimits: o.head,
    maxConcurrentStreams: s.maxConcurrentStreams,
    requestLog: new RequestLog(o.flowLog, o.flowMode, 'sni-proxy', () => o.clock.wallNow()),
    metrics,
    clock: o.clock,
    log: o.log,
  });
  o.log.info({ [F.event]: 'proxy', fingerprint: store.current.fingerprint }, 'TLS inspection ready');
  return { inspector, store, stop: () => store.stop() };
}
