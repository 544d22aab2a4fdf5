/**
 * Applying and removing the plan's network topology. Everything happens inside the lab's own
 * namespaces: veth pairs are created with both ends placed directly in lab namespaces, sysctls
 * are written from inside a namespace, and the root namespace's links, routes, sysctls and
 * firewall are never touched.
 */
import { existsSync, statSync } from 'node:fs';
import { mkdir, rm, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { LabPlan } from './plan.ts';
import { netnsEtcDir } from './plan.ts';
import { inNetns, must, run } from './run.ts';

const NETNS_DIR = '/run/netns';

export function netnsExists(netns: string): boolean {
  return existsSync(path.join(NETNS_DIR, netns));
}

/** The nsfs inode of a named namespace (what /proc/<pid>/ns/net links to), or null. */
export function netnsInode(netns: string): number | null {
  try {
    return statSync(path.join(NETNS_DIR, netns)).ino;
  } catch {
    return null;
  }
}

/** The batch of `ip` commands that configures one namespace once its links exist. */
export function ipBatch(plan: LabPlan, netns: string): string[] {
  const lines: string[] = [];
  const devs = new Set<string>(['lo']);
  for (const v of plan.veths) {
    if (v.a.netns === netns) devs.add(v.a.ifname);
    if (v.b.netns === netns) devs.add(v.b.ifname);
  }
  for (const a of plan.addresses) {
    if (a.netns !== netns) continue;
    // nodad: the address is usable at once (accept_dad=0 covers links created later too).
    lines.push(`address add ${a.cidr} dev ${a.dev}${a.cidr.includes(':') ? ' nodad' : ''}`);
  }
  for (const d of devs) lines.push(`link set ${d} up`);
  for (const r of plan.routes) {
    if (r.netns !== netns) continue;
    // Batch lines take no -6: spell the IPv6 default route out.
    const to = r.to === 'default' && r.family === 6 ? '::/0' : r.to;
    lines.push(`route add ${to} via ${r.via}`);
  }
  return lines;
}

/** resolv.conf per namespace: pods ask the node (namegate's DNS proxy once the agent runs). */
export function resolvConfs(plan: LabPlan): Map<string, string> {
  const out = new Map<string, string>();
  const head = `# namegate lab ${plan.name}; removed by namegate lab down`;
  for (const pod of plan.pods) {
    out.set(pod.netns, `${head}\nnameserver ${plan.resolver.ipv4}\noptions timeout:2 attempts:1\n`);
  }
  // Tools run by hand in the node or internet namespace resolve lab names straight from knot.
  for (const ns of [plan.nodeNetns, plan.inetNetns]) {
    out.set(ns, `${head}\nnameserver ${plan.upstream.ipv4}\noptions timeout:2 attempts:1\n`);
  }
  return out;
}

export async function createTopology(plan: LabPlan): Promise<void> {
  for (const ns of plan.namespaces) await must(['ip', 'netns', 'add', ns]);
  for (const ns of plan.namespaces) {
    const kv = plan.sysctls.filter((s) => s.netns === ns).map((s) => `${s.key}=${s.value}`);
    if (kv.length > 0) await must(inNetns(ns, ['sysctl', '-q', '-w', ...kv]));
  }
  for (const v of plan.veths) {
    await must([
      'ip',
      '-n',
      v.a.netns,
      'link',
      'add',
      v.a.ifname,
      'type',
      'veth',
      'peer',
      'name',
      v.b.ifname,
      'netns',
      v.b.netns,
    ]);
  }
  for (const ns of plan.namespaces) {
    await must(['ip', '-n', ns, '-batch', '-'], { input: `${ipBatch(plan, ns).join('\n')}\n` });
  }
  for (const [ns, text] of resolvConfs(plan)) await writeEtcFile(ns, 'resolv.conf', text);
}

async function writeEtcFile(ns: string, file: string, text: string): Promise<void> {
  // Another lab's down may remove an empty /etc/netns between our mkdir and write: retry.
  for (let attempt = 0; ; attempt++) {
    const dir = netnsEtcDir(ns);
    await mkdir(dir, { recursive: true });
    try {
      await writeFile(path.join(dir, file), text);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 3) throw err;
    }
  }
}

/** Delete the namespaces (their veths go with them) and their /etc/netns files; absent is fine. */
export async function deleteTopology(netnsNames: readonly string[]): Promise<string[]> {
  const removed: string[] = [];
  for (const ns of netnsNames) {
    if (netnsExists(ns)) {
      const r = await run(['ip', 'netns', 'delete', ns]);
      if (r.code !== 0 && netnsExists(ns)) await must(['ip', 'netns', 'delete', ns]);
      removed.push(ns);
    }
    await rm(netnsEtcDir(ns), { recursive: true, force: true });
  }
  // /etc/netns did not exist before the first lab; leave it as found when no one else uses it.
  await rmdir(path.dirname(netnsEtcDir('x'))).catch(() => {});
  return removed;
}
