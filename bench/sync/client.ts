/**
 * One bench/sync client, run inside a lab pod's namespace: at random times (a Poisson process
 * of `rate` attempts per second) it resolves the name through the given server with Node's
 * c-ares resolver (a real stub client, no cache), keeps the answer as a client would for up to
 * its TTL (a uniform wait in [0, holdMs]), then connects to one of the addresses (picked at
 * random) on TCP port 80 with a 1 s timeout. One JSON line per attempt:
 *   {"ip":"203.0.113.121","ok":true}    or    {"dns":"failed"}
 * and a last line {"done":true}. Bounded: `seconds` of attempts, then it waits for the last.
 * Usage: client.ts SERVER NAME SECONDS RATE HOLD_MS
 */
import { Resolver } from 'node:dns/promises';
import net from 'node:net';

const [server = '', name = '', secondsText = '300', rateText = '10', holdText = '5000'] =
  process.argv.slice(2);
const seconds = Number(secondsText);
const rate = Number(rateText);
const holdMs = Number(holdText);
const resolver = new Resolver({ timeout: 1000, tries: 1 });
resolver.setServers([server]);
const pending = new Set<Promise<void>>();
const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);

function connect(ip: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: ip, port: 80 });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 1000);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

async function attempt(): Promise<void> {
  let ips: string[];
  try {
    ips = await resolver.resolve4(name);
  } catch {
    out({ dns: 'failed' });
    return;
  }
  const ip = ips[Math.floor(Math.random() * ips.length)] as string;
  await new Promise((r) => setTimeout(r, Math.random() * holdMs));
  out({ ip, ok: await connect(ip) });
}

const end = Date.now() + seconds * 1000;
while (Date.now() < end) {
  // Exponential gaps: attempts at random, independent times.
  await new Promise((r) => setTimeout(r, -Math.log(1 - Math.random()) * (1000 / rate)));
  const p = attempt().finally(() => pending.delete(p));
  pending.add(p);
}
await Promise.all(pending);
out({ done: true });
