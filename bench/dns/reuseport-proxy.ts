/**
 * Benchmark helper (not a deployment mode): one DNS proxy process that binds its UDP and TCP
 * ports with SO_REUSEPORT, so several of them can share a port and the kernel spreads clients
 * over them. Each has its own store, which is why this is only a measurement of how far more
 * cores would carry the proxy (bench/dns/main.ts with NAMEGATE_BENCH_REUSEPORT=N).
 *
 *   node bench/dns/reuseport-proxy.ts CONFIG
 */
import { pino } from 'pino';
import { dnsSettingsFrom } from '../../src/config/dns.ts';
import { loadConfig } from '../../src/config/load.ts';
import { RecordingDatapath } from '../../src/datapath/recording.ts';
import { DnsProxy } from '../../src/dns/proxy.ts';
import { loadPolicies } from '../../src/formats/load.ts';
import { StaticGroups } from '../../src/identity/static-groups.ts';
import { silentLogger } from '../../src/observe/log.ts';
import { createRegistry } from '../../src/observe/metrics.ts';
import { CompiledPolicies } from '../../src/policy/compile.ts';

const file = process.argv[2];
if (!file) throw new Error('usage: reuseport-proxy.ts CONFIG');
const config = await loadConfig(file);
const report = await loadPolicies(config.policies);
if (report.errors.length > 0) throw new Error(`policy errors: ${report.errors.length}`);
const set = new CompiledPolicies(report.policies.map((p) => p.policy));
const { checkpoint: _none, ...store } = config.store;
const proxy = await DnsProxy.start({
  settings: dnsSettingsFrom({ ...config, store }),
  policies: { current: () => set },
  identities: new StaticGroups(config.sources),
  datapath: new RecordingDatapath(),
  registry: createRegistry(),
  log: silentLogger(),
  flowLog:
    config.dns.flowLog.mode === 'none'
      ? null
      : pino.destination({ dest: config.dns.flowLog.path ?? 1, sync: false, minLength: 4096 }),
  reusePort: true,
});
process.once('SIGTERM', () => void proxy.stop());
process.once('SIGINT', () => void proxy.stop());
