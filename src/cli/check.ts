/**
 * `namegate check`: what would namegate decide for a pod (namespace + labels) asking for a name
 * (or connecting to an address: toCIDRs rules) on a port, given policy files? Exit 0 allow (or
 * audit: it passes), 1 deny, 2 bad input.
 */
import { type Command, Option } from 'commander';
import { canonicalIp } from '../core/ip.ts';
import { type CanonicalName, tryWireName } from '../core/names.ts';
import { formatProblem, loadPolicies } from '../formats/load.ts';
import { makeIdentity } from '../identity/identity.ts';
import { CompiledPolicies } from '../policy/compile.ts';
import { decideAddress } from '../policy/decide.ts';
import { explain } from '../policy/explain.ts';
import { type Identity, type Protocol, policyRefText } from '../policy/model.ts';
import { parseLabelList } from '../policy/selector.ts';
import { checkRequest } from './check-request.ts';
import { colour, Exit, noPolicyMessage, usageError } from './output.ts';

const NAMESPACE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

interface CheckOptions {
  policy: string[];
  namespace: string;
  labels?: string;
  namespaceLabels?: string;
  name?: string;
  address?: string;
  port: string;
  protocol: string;
  json?: boolean;
  explain?: boolean;
  method?: string;
  path?: string;
  header?: string[];
}

export function registerCheck(program: Command): void {
  program
    .command('check')
    .description('decide whether a pod may reach a name, from policy files in any supported dialect')
    .requiredOption('--policy <paths...>', 'policy files or folders (repeatable)')
    .requiredOption('--namespace <ns>', "the pod's namespace")
    .option('--labels <k=v,...>', "the pod's labels")
    .option('--namespace-labels <k=v,...>', "the namespace's labels (kubernetes.io/metadata.name is added)")
    .option('--name <fqdn>', 'the domain name the pod connects to (or --address)')
    .option('--address <ip>', 'the address the pod connects to, decided by toCIDRs rules (or --name)')
    .option('--port <n>', 'destination port', '443')
    .addOption(new Option('--protocol <p>', 'TCP or UDP (any case)').default('TCP'))
    .option('--method <m>', 'an HTTP method inside the connection (inspected rules: verify Inspect)')
    .option('--path <p>', 'an HTTP request path, e.g. /repos/org/x (inspected rules)')
    .option('--header <name:value...>', 'request header fields for header matchers (repeatable)')
    .option('--json', 'print one JSON object')
    .option('--explain', 'print the path to the verdict')
    .action(async (opts: CheckOptions) => {
      if (!NAMESPACE.test(opts.namespace)) {
        throw usageError(
          `--namespace: ${JSON.stringify(opts.namespace)} is not a namespace (1-63 lowercase letters, digits and "-")`,
        );
      }
      if ((opts.name === undefined) === (opts.address === undefined)) {
        throw usageError('give exactly one of --name <fqdn> or --address <ip>');
      }
      const protocol = opts.protocol.toUpperCase();
      if (protocol !== 'TCP' && protocol !== 'UDP') {
        throw usageError(`--protocol: ${JSON.stringify(opts.protocol)} is not TCP or UDP`);
      }
      if (!/^[0-9]{1,5}$/.test(opts.port) || Number(opts.port) < 1 || Number(opts.port) > 65535) {
        throw usageError(`--port: ${JSON.stringify(opts.port)} is not a port (1-65535)`);
      }
      let labels: Record<string, string>;
      let namespaceLabels: Record<string, string>;
      try {
        labels = parseLabelList(opts.labels ?? '');
      } catch (err) {
        throw usageError(`--labels: ${(err as Error).message}`);
      }
      try {
        namespaceLabels = parseLabelList(opts.namespaceLabels ?? '');
      } catch (err) {
        throw usageError(`--namespace-labels: ${(err as Error).message}`);
      }
      const target = readTarget(opts);
      if (target.address !== null && (opts.method ?? opts.path ?? opts.header) !== undefined) {
        throw usageError('--method, --path and --header need --name: requests are judged by name');
      }
      const report = await loadPolicies(opts.policy);
      if (report.errors.length > 0) {
        for (const e of report.errors) console.error(`${colour.red('error')}: ${formatProblem(e)}`);
        console.error('fix the policy errors above (namegate validate prints them too)');
        process.exitCode = Exit.BadInput;
        return;
      }
      if (report.policies.length === 0) throw usageError(noPolicyMessage(opts.policy));
      const set = new CompiledPolicies(report.policies.map((p) => p.policy));
      const identity = makeIdentity(`pod:${opts.namespace}/(check)`, opts.namespace, labels, namespaceLabels);
      const port = Number(opts.port);
      if (target.address !== null) {
        printAddress(set, identity, target.address, protocol, port, opts);
        return;
      }
      const name = target.name;
      const { decision, lines } = explain(set, identity, name, protocol, port);
      const request =
        opts.method !== undefined || opts.path !== undefined || opts.header !== undefined
          ? checkRequest(set, identity, name, port, opts, decision.verdict !== 'deny' ? decision.mode : null)
          : null;
      if (request) lines.splice(lines.length - 1, 0, ...request.lines);
      const final = request?.decision ?? null;
      if (opts.json) {
        console.log(
          JSON.stringify({
            verdict: decision.verdict,
            reason: decision.reason,
            policy: decision.policy ? policyRefText(decision.policy) : null,
            policyKind: decision.policy?.kind ?? null,
            rule: decision.rule,
            mode: decision.mode,
            ...(final
              ? {
                  request: {
                    method: request!.method,
                    path: request!.path,
                    inspected: request!.inspected,
                    verdict: final.verdict,
                    reason: final.reason,
                    policy: final.policy,
                    rule: final.rule,
                    httpRule: final.httpRule,
                  },
                }
              : {}),
            name,
            address: null,
            protocol,
            port,
            namespace: opts.namespace,
            labels,
          }),
        );
      } else {
        if (opts.explain) for (const line of lines.slice(0, -1)) console.log(colour.dim(line));
        const paint =
          decision.verdict === 'allow'
            ? colour.green
            : decision.verdict === 'audit'
              ? colour.yellow
              : colour.red;
        const by = decision.policy
          ? ` by ${decision.policy.kind} ${policyRefText(decision.policy)} spec.egress[${decision.rule}]`
          : '';
        console.log(`${paint(decision.verdict)} ${name} ${protocol}/${port}: ${decision.reason}${by}`);
        if (final) {
          const p2 =
            final.verdict === 'allow' ? colour.green : final.verdict === 'audit' ? colour.yellow : colour.red;
          const at = final.policy
            ? ` by ${final.policy} spec.egress[${final.rule}]${final.httpRule !== null ? `.http[${final.httpRule}]` : ''}`
            : '';
          console.log(`${p2(final.verdict)} ${request!.method} ${request!.path}: ${final.reason}${at}`);
        } else if (request && !opts.explain) console.log(colour.dim(request.lines[0] ?? ''));
      }
      const denied = decision.verdict === 'deny' || final?.verdict === 'deny';
      process.exitCode = denied ? Exit.Deny : Exit.Ok;
    });
}

function readTarget(
  opts: CheckOptions,
): { name: CanonicalName; address: null } | { name: null; address: string } {
  if (opts.address !== undefined) {
    const address = canonicalIp(opts.address);
    if (address === null) throw usageError(`--address: ${JSON.stringify(opts.address)} is not an IP address`);
    return { name: null, address };
  }
  // The name as the pod sends it: read like the DNS proxy and the TLS/HTTP proxies read it.
  const name = tryWireName(opts.name ?? '');
  if (typeof name !== 'string') throw usageError(`--name: ${name.message} (name_invalid)`);
  return { name, address: null };
}

/** The verdict on a connection to an address: only toCIDRs rules open addresses by themselves. */
function printAddress(
  set: CompiledPolicies,
  identity: Identity,
  address: string,
  protocol: Protocol,
  port: number,
  opts: CheckOptions,
): void {
  const decision = decideAddress(set, identity, address, protocol, port);
  const ref = decision.policy ? policyRefText(decision.policy) : null;
  if (opts.json) {
    console.log(
      JSON.stringify({
        verdict: decision.verdict,
        reason: decision.reason,
        policy: ref,
        policyKind: decision.policy?.kind ?? null,
        rule: decision.rule,
        mode: decision.mode,
        name: null,
        address,
        protocol,
        port,
        namespace: opts.namespace,
        labels: identity.labels,
      }),
    );
  } else {
    if (opts.explain) {
      console.log(colour.dim(`source ${identity.key}: namespace ${identity.namespace}`));
      console.log(colour.dim(`question: ${address} ${protocol}/${port} (toCIDRs rules)`));
    }
    const paint =
      decision.verdict === 'allow' ? colour.green : decision.verdict === 'audit' ? colour.yellow : colour.red;
    const by = decision.policy ? ` by ${decision.policy.kind} ${ref} spec.egress[${decision.rule}]` : '';
    console.log(`${paint(decision.verdict)} ${address} ${protocol}/${port}: ${decision.reason}${by}`);
  }
  process.exitCode = decision.verdict === 'deny' ? Exit.Deny : Exit.Ok;
}
