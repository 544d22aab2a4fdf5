/**
 * The datapath test bed: two pod namespaces and an "internet" namespace routed through a
 * router namespace where the namegate table lives and the driver runs (in a child process, see
 * driver-host.ts). All addresses exist only inside these namespaces.
 *
 *   podA 10.0.1.1 fd00:1::1  --  router 10.0.1.254 fd00:1::fe
 *   podB 10.0.2.1 fd00:2::1  --  router 10.0.2.254 fd00:2::fe
 *   inet 203.0.113.10,.11,.12 2001:db8:2::10,::11  --  router 203.0.113.254 2001:db8:2::fe
 */
import type { ChildProcess } from 'node:child_process';
import readline from 'node:readline';
import type { TestContext } from 'node:test';
import { Netns, NODE, veth } from '../netns.ts';

export const A4 = '10.0.1.1';
export const A6 = 'fd00:1::1';
export const B4 = '10.0.2.1';
export const B6 = 'fd00:2::1';
export const S4 = '203.0.113.10';
export const S4b = '203.0.113.11';
export const S4c = '203.0.113.12';
export const S6 = '2001:db8:2::10';
export const S6b = '2001:db8:2::11';
/** A resolver address that is not served by anyone: only the redirect can answer. */
export const OTHER_RESOLVER = '203.0.113.53';

export interface Topology {
  readonly podA: Netns;
  readonly podB: Netns;
  readonly router: Netns;
  readonly inet: Netns;
}

export async function topology(t: TestContext): Promise<Topology> {
  const [podA, podB, router, inet] = await Promise.all([
    Netns.create(t),
    Netns.create(t),
    Netns.create(t),
    Netns.create(t),
  ]);
  await veth(podA, 'eth0', router, 'poda');
  await veth(podB, 'eth0', router, 'podb');
  await veth(inet, 'eth0', router, 'up0');
  await router.sysctl('net.ipv4.ip_forward', '1');
  await router.sysctl('net.ipv6.conf.all.forwarding', '1');
  const addr = async (ns: Netns, ifname: string, list: string[]) => {
    for (const a of list) await ns.addAddress(ifname, a);
  };
  await addr(podA, 'eth0', ['10.0.1.1/24', 'fd00:1::1/64']);
  await addr(podB, 'eth0', ['10.0.2.1/24', 'fd00:2::1/64']);
  await addr(router, 'poda', ['10.0.1.254/24', 'fd00:1::fe/64']);
  await addr(router, 'podb', ['10.0.2.254/24', 'fd00:2::fe/64']);
  await addr(router, 'up0', ['203.0.113.254/24', '2001:db8:2::fe/64']);
  await addr(inet, 'eth0', [
    '203.0.113.10/24',
    '203.0.113.11/24',
    '203.0.113.12/24',
    '2001:db8:2::10/64',
    '2001:db8:2::11/64',
  ]);
  await podA.route('default', '10.0.1.254');
  await podA.route('default', 'fd00:1::fe');
  await podB.route('default', '10.0.2.254');
  await podB.route('default', 'fd00:2::fe');
  await inet.route('default', '203.0.113.254');
  await inet.route('default', '2001:db8:2::fe');
  // Resolve every neighbour once before any test: a first packet sent while a fresh veth is
  // still coming up is lost, and its neighbour solicitation is retried only after a second,
  // which a probe's short timeout would take for a drop.
  await Promise.all(
    ['10.0.1.1', 'fd00:1::1', '10.0.2.1', 'fd00:2::1', '203.0.113.10', '2001:db8:2::10'].map((ip) =>
      router.run(['ping', '-q', '-c', '1', '-w', '5', ip]),
    ),
  );
  return { podA, podB, router, inet };
}

const PEER = 'test/integration/datapath/peer.ts';

function lines(child: ChildProcess): AsyncIterator<string> {
  if (!child.stdout) throw new Error('no stdout');
  return readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
}

async function firstJson(it: AsyncIterator<string>): Promise<{ result: string; reply?: string }> {
  const next = await it.next();
  if (next.done) return { result: 'exited' };
  return JSON.parse(next.value);
}

/** Echo servers (TCP and UDP) on these ports; resolves when they listen. */
export async function startServer(ns: Netns, name: string, ports: number[]): Promise<void> {
  const child = ns.spawn([NODE, PEER, 'server', name, ...ports.map(String)]);
  const r = await firstJson(lines(child));
  if (r.result !== 'ready') throw new Error(`server ${name} did not start: ${JSON.stringify(r)}`);
}

export type Probe = { result: string; reply?: string };

/** One exchange; `local` picks the source address (one of the namespace's own). */
export async function probe(
  ns: Netns,
  proto: 'tcp' | 'udp',
  host: string,
  port: number,
  // Long enough that only a dropped packet times out, never a slow machine; a probe expected
  // to be dropped passes a short one (it waits all of it).
  timeoutMs = 10_000,
  local?: string,
): Promise<Probe> {
  const child = ns.spawn([
    NODE,
    PEER,
    proto,
    host,
    String(port),
    String(timeoutMs),
    ...(local ? [local] : []),
  ]);
  return firstJson(lines(child));
}

/** A UDP server that keeps sending to every peer that contacted it (see peer.ts `streamer`). */
export async function startStreamer(ns: Netns, port: number): Promise<void> {
  const child = ns.spawn([NODE, PEER, 'streamer', String(port)]);
  const r = await firstJson(lines(child));
  if (r.result !== 'ready') throw new Error(`streamer did not start: ${JSON.stringify(r)}`);
}

/** One UDP socket towards host:port: send() a datagram, count() what came back since last time. */
export class UdpClient {
  readonly #child: ChildProcess;
  readonly #it: AsyncIterator<string>;

  private constructor(child: ChildProcess) {
    this.#child = child;
    this.#it = lines(child);
  }

  static async open(ns: Netns, host: string, port: number): Promise<UdpClient> {
    const c = new UdpClient(ns.spawn([NODE, PEER, 'udpclient', host, String(port)]));
    const r = await firstJson(c.#it);
    if (r.result !== 'ready') throw new Error(`udp client: ${JSON.stringify(r)}`);
    return c;
  }

  send(): void {
    this.#child.stdin?.write('send\n');
  }

  async count(): Promise<{ received: number; echoes: number }> {
    this.#child.stdin?.write('count\n');
    return (await firstJson(this.#it)) as unknown as { received: number; echoes: number };
  }

  close(): void {
    this.#child.kill('SIGKILL');
  }
}

/** A long-lived TCP connection; ping() sends one line and reports the echo or its absence. */
export class Session {
  readonly #child: ChildProcess;
  readonly #it: AsyncIterator<string>;

  private constructor(child: ChildProcess) {
    this.#child = child;
    this.#it = lines(child);
  }

  /** `timeoutMs`: for the connect and each echo; long, so that only a drop times out. */
  static async open(ns: Netns, host: string, port: number, timeoutMs = 10_000): Promise<Session> {
    const s = new Session(ns.spawn([NODE, PEER, 'session', host, String(port), String(timeoutMs)]));
    const r = await firstJson(s.#it);
    if (r.result !== 'connected') throw new Error(`session to ${host}:${port}: ${JSON.stringify(r)}`);
    return s;
  }

  /** One echo; `waitMs` for an echo expected not to come (a short wait), else the session's. */
  async ping(waitMs?: number): Promise<Probe> {
    this.#child.stdin?.write(waitMs ? `ping ${waitMs}\n` : 'ping\n');
    return firstJson(this.#it);
  }

  close(): void {
    this.#child.kill('SIGKILL');
  }
}

/** The driver in a child process inside `ns`. */
export class DriverClient {
  readonly #child: ChildProcess;
  readonly #it: AsyncIterator<string>;
  #id = 0;
  #exited = false;
  #waiting = new Map<
    number,
    (v: { ok: boolean; value?: unknown; error?: { code: string; message: string } }) => void
  >();

  private constructor(child: ChildProcess) {
    this.#child = child;
    this.#it = lines(child);
    void this.#read();
  }

  async #read(): Promise<void> {
    for (;;) {
      const n = await this.#it.next();
      if (n.done) break;
      const msg = JSON.parse(n.value) as { id: number; ok: boolean };
      this.#waiting.get(msg.id)?.(msg);
      this.#waiting.delete(msg.id);
    }
    this.#exited = true;
    for (const w of this.#waiting.values())
      w({ ok: false, error: { code: 'EXITED', message: 'driver host exited' } });
    this.#waiting.clear();
  }

  /** `host`: the script to run (driver-host.ts, or enforce-host.ts for the learning path). */
  static async start(
    ns: Netns,
    options: object = {},
    host = 'test/integration/datapath/driver-host.ts',
  ): Promise<DriverClient> {
    const c = new DriverClient(ns.spawn([NODE, host]));
    c.#child.stderr?.on('data', (d: Buffer) => process.stderr.write(`[driver] ${d}`));
    await c.call('open', options);
    return c;
  }

  call<T = unknown>(method: string, ...args: unknown[]): Promise<T> {
    const id = ++this.#id;
    if (this.#exited)
      return Promise.reject(Object.assign(new Error('driver host exited'), { code: 'EXITED' }));
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, (m) => {
        if (m.ok) resolve(m.value as T);
        else reject(Object.assign(new Error(m.error?.message ?? 'failed'), { code: m.error?.code }));
      });
      this.#child.stdin?.write(`${JSON.stringify({ id, method, args })}\n`);
    });
  }

  /** SIGKILL, as a crash would. */
  kill(): void {
    this.#child.kill('SIGKILL');
  }

  async close(): Promise<void> {
    await this.call('close').catch(() => undefined);
    this.#child.stdin?.end();
  }
}
