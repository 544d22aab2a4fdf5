/**
 * `namegate lab up|down|status|tour|exec|set-address`: the network-namespace lab (src/lab) from
 * the command line. Needs root; everything it creates lives in the lab's own namespaces and state
 * dir, and `lab down` removes it all.
 */
import { spawn } from 'node:child_process';
import { isIP } from 'node:net';
import type { Command } from 'commander';
import { flowLogPath } from '../lab/agent-config.ts';
import { labWorkloads } from '../lab/cluster/manifests.ts';
import {
  agentLogFile,
  clusterExec,
  clusterOf,
  criLogLine,
  isClusterLab,
  runClusterTour,
} from '../lab/cluster/tour.ts';
import { setAddresses } from '../lab/dns-update.ts';
import { targetNetns } from '../lab/exec.ts';
import { formatFlowLine } from '../lab/flows.ts';
import { followLines } from '../lab/follow.ts';
import { AGENT_COMMANDS, type AgentCommand, labDown, labStatus, labUp } from '../lab/lab.ts';
import { netnsExists } from '../lab/netns.ts';
import { DEFAULT_LAB_NAME, type LabPlan, labPlan, statePaths } from '../lab/plan.ts';
import { findTool, inNetns, requireRoot } from '../lab/run.ts';
import { runTour } from '../lab/tour.ts';
import { colour, Exit, usageError } from './output.ts';

const id = (s: string): string => s;

interface NameOption {
  name: string;
}

function progressFor(name: string): (message: string) => void {
  return (message) => console.error(colour.dim(`lab ${name}: ${message}`));
}

export function registerLab(program: Command): void {
  const lab = program
    .command('lab')
    .description('a gateway in network namespaces on this machine: pods, a node, and a fake internet (root)');
  labUpCommand(lab);
  labDownCommand(lab);
  labStatusCommand(lab);
  labTourCommand(lab);
  labFlowsCommand(lab);
  labExecCommand(lab);
  labSetAddressCommand(lab);
}

function labUpCommand(lab: Command): void {
  lab
    .command('up')
    .description('create the lab (recreating it from scratch when it exists)')
    .option('--name <name>', 'lab name (namespaces are ng-<name>-*)', DEFAULT_LAB_NAME)
    .option('--policies <paths...>', 'policy files or folders for the agent config (default: examples/)')
    .option(
      '--agent [command]',
      'also start namegate in the node namespace: "agent" (default) or "dns" (the DNS proxy alone, nothing enforced)',
    )
    .option(
      '--kubernetes',
      'make the node a one-node Kubernetes cluster with real pods (with --agent: helm install namegate, the workloads, the policies)',
    )
    .action(
      async (opts: NameOption & { policies?: string[]; agent?: boolean | string; kubernetes?: boolean }) => {
        const agent = opts.agent === true ? 'agent' : opts.agent;
        if (agent !== undefined && agent !== false && !AGENT_COMMANDS.includes(agent as AgentCommand)) {
          throw usageError(`--agent: ${JSON.stringify(agent)} is not one of ${AGENT_COMMANDS.join(', ')}`);
        }
        const result = await labUp({
          name: opts.name,
          ...(opts.policies ? { policies: opts.policies } : {}),
          ...(typeof agent === 'string' ? { agent: agent as AgentCommand } : {}),
          ...(opts.kubernetes ? { kubernetes: true } : {}),
          progress: progressFor(opts.name),
        });
        printLabUp(result, typeof agent === 'string' ? agent : null, opts.kubernetes === true);
      },
    );
}

function labDownCommand(lab: Command): void {
  lab
    .command('down')
    .description('remove the lab: processes, namespaces, /etc/netns files, state dir (idempotent)')
    .option('--name <name>', 'lab name', DEFAULT_LAB_NAME)
    .action(async (opts: NameOption) => {
      const r = await labDown({ name: opts.name, progress: progressFor(opts.name) });
      const nothing = r.processes.length === 0 && r.namespaces.length === 0 && !r.stateDirRemoved;
      console.log(nothing ? `lab ${opts.name}: nothing to remove` : `lab ${opts.name} is down`);
    });
}

function labStatusCommand(lab: Command): void {
  lab
    .command('status')
    .description('what exists and what runs')
    .option('--name <name>', 'lab name', DEFAULT_LAB_NAME)
    .option('--json', 'print one JSON object')
    .action(async (opts: NameOption & { json?: boolean }) => {
      const s = await labStatus({ name: opts.name });
      if (opts.json) {
        const { plan, ...rest } = s;
        console.log(JSON.stringify({ name: plan.name, stateDir: plan.stateDir, ...rest }, null, 2));
        return;
      }
      if (!s.exists) {
        console.log(`lab ${opts.name} does not exist`);
        process.exitCode = Exit.Deny;
        return;
      }
      printLabStatus(opts.name, s);
    });
}

function labTourCommand(lab: Command): void {
  lab
    .command('tour')
    .description('run the demo checks from the pods and print expected against observed')
    .option('--name <name>', 'lab name', DEFAULT_LAB_NAME)
    .action(async (opts: NameOption) => {
      requireRoot('namegate lab tour');
      const plan = labPlan(opts.name);
      if (!netnsExists(plan.nodeNetns))
        throw usageError(`lab ${opts.name} is not up; run namegate lab up --name ${opts.name}`);
      const tourOptions = {
        out: (line: string) => console.log(line),
        colour: process.stdout.isTTY === true && !process.env['NO_COLOR'],
      };
      const ok = isClusterLab(plan)
        ? await runClusterTour(plan, tourOptions)
        : await runTour(plan, tourOptions);
      process.exitCode = ok ? Exit.Ok : Exit.Deny;
    });
}

function labFlowsCommand(lab: Command): void {
  lab
    .command('flows')
    .description("print the agent's DNS decisions, one line each (--follow waits for new ones)")
    .option('--name <name>', 'lab name', DEFAULT_LAB_NAME)
    .option('-f, --follow', 'keep printing new decisions until Ctrl-C')
    .action(async (opts: NameOption & { follow?: boolean }) => {
      const plan = labPlan(opts.name);
      // On a Kubernetes lab the agent is a pod: its decisions are in its container log.
      const k8s = isClusterLab(plan);
      const file = (k8s ? agentLogFile(plan) : null) ?? flowLogPath(plan);
      const useColour = process.stdout.isTTY === true && !process.env['NO_COLOR'];
      const style = useColour ? colour : { green: id, red: id, yellow: id, dim: id };
      await followLines(file, opts.follow === true, (line) => {
        const text = formatFlowLine(k8s ? criLogLine(line) : line, style);
        if (text !== null) console.log(text);
      });
    });
}

function labExecCommand(lab: Command): void {
  lab
    .command('exec')
    .description('run a command in a pod (or "node", "inet") namespace: lab exec POD -- CMD...')
    .option('--name <name>', 'lab name', DEFAULT_LAB_NAME)
    .argument('<pod>', 'pod id (payments-api, ci-runner, web, unmanaged), node or inet')
    .argument('<command...>', 'the command and its arguments')
    .action(async (pod: string, command: string[], opts: NameOption) => {
      requireRoot('namegate lab exec');
      const plan = labPlan(opts.name);
      if (isClusterLab(plan) && pod !== 'node' && pod !== 'inet') {
        process.exitCode = await clusterExec(plan, pod, command);
        return;
      }
      const netns = targetNetns(plan, pod);
      if (!netnsExists(netns))
        throw usageError(`lab ${opts.name} is not up; run namegate lab up --name ${opts.name}`);
      const argv = inNetns(netns, command);
      const code = await new Promise<number>((resolve) => {
        const child = spawn(findTool('ip') ?? 'ip', argv.slice(1), { stdio: 'inherit' });
        child.on('error', () => resolve(Exit.Failure));
        child.on('exit', (c, sig) => resolve(c ?? (sig ? 128 : Exit.Failure)));
      });
      process.exitCode = code;
    });
}

function labSetAddressCommand(lab: Command): void {
  lab
    .command('set-address')
    .description('point a name at new addresses through a signed dynamic update to knot')
    .option('--name <name>', 'lab name', DEFAULT_LAB_NAME)
    .option('--ttl <seconds>', 'TTL of the new records', '300')
    .argument('<fqdn>', 'the name to change')
    .argument('<addresses...>', 'IPv4 and/or IPv6 addresses (a family not given is left as it is)')
    .action(async (fqdn: string, addresses: string[], opts: NameOption & { ttl: string }) => {
      requireRoot('namegate lab set-address');
      const ttl = Number(opts.ttl);
      if (!/^[0-9]{1,5}$/.test(opts.ttl) || ttl > 86400)
        throw usageError(`--ttl: ${opts.ttl} is not 0-86400`);
      const bad = addresses.filter((a) => isIP(a) === 0);
      if (bad.length > 0) throw usageError(`not IP addresses: ${bad.join(', ')}`);
      const ipv4 = addresses.filter((a) => isIP(a) === 4);
      const ipv6 = addresses.filter((a) => isIP(a) === 6);
      await setAddresses(labPlan(opts.name), fqdn.toLowerCase().replace(/\.$/, ''), {
        ...(ipv4.length > 0 ? { ipv4 } : {}),
        ...(ipv6.length > 0 ? { ipv6 } : {}),
        ttl,
      });
      console.log(`${fqdn} -> ${addresses.join(' ')} (ttl ${ttl})`);
    });
}

function printLabUp(
  result: Awaited<ReturnType<typeof labUp>>,
  agent: string | null,
  kubernetes: boolean,
): void {
  const { plan } = result;
  const p = statePaths(plan);
  console.log(
    `lab ${plan.name} is up${result.recreated ? ' (the existing lab was removed and recreated)' : ''}.`,
  );
  if (kubernetes) printCluster(plan, agent !== null);
  else console.log(`  pods:        ${plan.pods.map((x) => `${x.id} (${x.ipv4}, ${x.ipv6})`).join(', ')}`);
  console.log(`  resolver:    ${plan.resolver.ipv4} / ${plan.resolver.ipv6} in ${plan.nodeNetns}`);
  console.log(`  upstream:    knotd at ${plan.upstream.ipv4} / ${plan.upstream.ipv6} in ${plan.inetNetns}`);
  console.log(`  agent config ${p.agentConfig}`);
  console.log(`  lab CA       ${p.caCert}`);
  console.log(`  logs         ${p.logs}`);
  if (agent !== null && !kubernetes)
    console.log(`  flow log     ${flowLogPath(plan)} (namegate ${agent} runs in ${plan.nodeNetns})`);
  console.log(`next: namegate lab tour --name ${plan.name}; namegate lab down --name ${plan.name}`);
}

function printCluster(plan: LabPlan, installed: boolean): void {
  const cp = clusterOf(plan);
  console.log(
    `  node:        ${cp.nodeName} (${cp.nodeIP}), pods ${cp.nodePodCIDR}, Services ${cp.serviceCIDR}`,
  );
  console.log(`  kubeconfig:  ${cp.paths.hostKubeconfig} (helm --kubeconfig ..., kubectl --kubeconfig ...)`);
  if (installed)
    console.log(
      `  pods:        ${labWorkloads()
        .map((w) => `${w.namespace}/${w.name}`)
        .join(', ')} (test clients)`,
    );
}

function printLabStatus(name: string, s: Awaited<ReturnType<typeof labStatus>>): void {
  console.log(`lab ${name}: ${s.state ? `${s.state.phase}, created ${s.state.createdAt}` : 'no state file'}`);
  for (const ns of s.namespaces) {
    const mark = ns.exists ? colour.green('present') : colour.red('missing');
    console.log(`  ${ns.name.padEnd(28)} ${mark}  ${ns.processes.join(', ')}`);
  }
  for (const d of s.daemons) {
    console.log(
      `  ${d.name.padEnd(10)} pid ${String(d.pid).padEnd(8)} ${d.running ? colour.green('running') : colour.red('not running')}`,
    );
  }
  if (s.state) console.log(`  policies:  ${s.state.policies.join(' ')}`);
  console.log(`  state dir: ${s.plan.stateDir}`);
}
