/**
 * Network namespaces for integration tests (root): create, wire with veths, address, run
 * commands inside, and always clean up. Every namespace is named `ng-t-<random>`; a namespace is
 * deleted together with every process still running inside it, even when the test failed.
 *
 *   const ns = await Netns.create(t);          // deleted in t.after
 *   await ns.run(['ip', 'link', 'set', 'lo', 'up']);
 *   const child = ns.spawn(['node_modules/node/bin/node', 'server.ts']);
 *   await veth(pod, 'eth0', router, 'pod0');
 *
 * Nothing here touches the root namespace except creating and deleting the namespaces and
 * moving veth ends into them.
 */
import { type ChildProcess, execFile, type SpawnOptions, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export const NODE = 'node_modules/node/bin/node';

export interface ExecResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Run a command (in the current namespace); never throws for a non-zero exit. */
export async function exec(
  argv: readonly string[],
  options: { timeoutMs?: number; input?: string } = {},
): Promise<ExecResult> {
  const [cmd, ...args] = argv;
  if (cmd === undefined) throw new Error('empty command');
  if (options.input !== undefined) {
    return new Promise((resolve) => {
      const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
      // A command that exits before reading its input: EPIPE here, its exit code tells the rest.
      child.stdin.on('error', () => undefined);
      let stdout = '';
      let stderr = '';
      const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
      });
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code: code ?? -1, stdout, stderr });
      });
      child.stdin.end(options.input);
    });
  }
  try {
    const r = await execFileP(cmd, args, {
      timeout: options.timeoutMs ?? 30_000,
      maxBuffer: 256 * 1024 * 1024,
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: unknown; stdout?: string; stderr?: string };
    return {
      code: typeof e.code === 'number' ? e.code : -1,
      stdout: e.stdout ?? '',
      stderr: e.stderr ?? String(err),
    };
  }
}

/** Like exec, but throws with the command's stderr when it fails. */
export async function run(
  argv: readonly string[],
  options: { timeoutMs?: number; input?: string } = {},
): Promise<string> {
  const r = await exec(argv, options);
  if (r.code !== 0) throw new Error(`${argv.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

export class Netns {
  readonly name: string;
  readonly #children = new Set<ChildProcess>();
  #deleted = false;

  private constructor(name: string) {
    this.name = name;
  }

  /**
   * A new namespace with loopback up. With a test context, it is deleted in t.after; otherwise
   * the caller must call delete().
   */
  static async create(t?: TestContext, prefix = 'ng-t'): Promise<Netns> {
    const ns = new Netns(`${prefix}-${randomBytes(4).toString('hex')}`);
    await run(['ip', 'netns', 'add', ns.name]);
    t?.after(() => ns.delete());
    await ns.run(['ip', 'link', 'set', 'lo', 'up']);
    return ns;
  }

  /** argv prefixed with `ip netns exec <name>`. */
  wrap(argv: readonly string[]): string[] {
    return ['ip', 'netns', 'exec', this.name, ...argv];
  }

  exec(argv: readonly string[], options: { timeoutMs?: number; input?: string } = {}): Promise<ExecResult> {
    return exec(this.wrap(argv), options);
  }

  run(argv: readonly string[], options: { timeoutMs?: number; input?: string } = {}): Promise<string> {
    return run(this.wrap(argv), options);
  }

  /** A long-running process inside the namespace; killed by delete() at the latest. */
  spawn(argv: readonly string[], options: SpawnOptions = {}): ChildProcess {
    const [cmd, ...args] = this.wrap(argv);
    const child = spawn(cmd as string, args, { stdio: ['pipe', 'pipe', 'pipe'], ...options });
    // A write to a child that already exited (killed by a test, or crashed) fails with EPIPE on
    // its stdin; unhandled, that error fails whatever test or hook happens to run. The child's
    // exit is what callers learn of (its stdout ends), so the write error itself is dropped.
    child.stdin?.on('error', () => undefined);
    this.#children.add(child);
    child.on('exit', () => this.#children.delete(child));
    return child;
  }

  async sysctl(key: string, value: string): Promise<void> {
    await this.run(['sysctl', '-qw', `${key}=${value}`]);
  }

  async addAddress(ifname: string, cidr: string): Promise<void> {
    const v6 = cidr.includes(':');
    await this.run([
      'ip',
      ...(v6 ? ['-6'] : []),
      'addr',
      'add',
      cidr,
      'dev',
      ifname,
      ...(v6 ? ['nodad'] : []),
    ]);
  }

  async route(destination: string, via: string): Promise<void> {
    await this.run(['ip', ...(via.includes(':') ? ['-6'] : []), 'route', 'add', destination, 'via', via]);
  }

  /** Kill what runs inside, then delete the namespace. Idempotent. */
  async delete(): Promise<void> {
    if (this.#deleted) return;
    this.#deleted = true;
    for (const c of this.#children) c.kill('SIGKILL');
    const pids = await exec(['ip', 'netns', 'pids', this.name]);
    for (const pid of pids.stdout.split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await exec(['ip', 'netns', 'del', this.name]);
  }
}

/** A veth pair with one end in each namespace, both up. */
export async function veth(a: Netns, aIf: string, b: Netns, bIf: string): Promise<void> {
  const tmp = `ngv${randomBytes(3).toString('hex')}`;
  // Created inside `a` so that no interface ever appears in the root namespace.
  await a.run(['ip', 'link', 'add', aIf, 'type', 'veth', 'peer', 'name', tmp, 'netns', b.name]);
  await b.run(['ip', 'link', 'set', tmp, 'name', bIf]);
  await a.run(['ip', 'link', 'set', aIf, 'up']);
  await b.run(['ip', 'link', 'set', bIf, 'up']);
}

/** Poll `check` until it returns a value other than undefined/false, or fail after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 10_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
