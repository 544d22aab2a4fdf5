/**
 * `namegate check`: what would namegate decide for a pod (namespace + labels) asking for a name
 * on a port, given policy files? Exit 0 allow (or audit: it passes), 1 deny, 2 bad input.
 */
import { type Command, Option } from 'commander';
import { tryWireName } from '../core/names.ts';
import { formatProblem, loadPolicies } from '../formats/load.ts';
import { makeIdentity } from '../identity/identity.ts';
import { CompiledPolicies } from '../policy/compile.ts';
import { explain } from '../policy/explain.ts';
import { type Protocol, policyRefText } from '../policy/model.ts';
import { parseLabelList } from '../policy/selector.ts';
import { checkRequest } from './check-request.ts';
import { colour, Exit, usageError } from './output.ts';

const NAMESPACE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

interface CheckOptions {
  policy: string[];
  namespace: string;
  labels?: string;
  namespaceLabels?: string;
  name: string;
  port: string;
  protocol: Protocol;
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
    .requiredOption('--name <fqdn>', 'the domain name the pod connects to')
    .option('--port <n>', 'destination port', '443')
    .addOption(new Option('--protocol <p>', 'TCP or UDP').choices(['TCP', 'UDP']).default('TCP'))
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
      // The name as the pod sends it: read like the DNS and TLS/HTTP proxies read it.
      const name = tryWireName(opts.name);
      if (typeof name !== 'string') throw usageError(`--name: ${name.message} (name_invalid)`);
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
      const report = await loadPolicies(opts.policy);
      if (report.errors.length > 0) {
        for (const e of report.errors) console.error(`${colour.red('error')}: ${formatProblem(e)}`);
        console.error('fix the policy errors above (namegate validate prints them too)');
        process.exitCode = Exit.BadInput;
        return;
      }
      if (report.policies.length === 0) {
        throw usageError(`no policies found in ${opts.policy.join(', ')}`);
      }
      const set = new CompiledPolicies(report.policies.map((p) => p.policy));
      const identity = makeIdentity(`pod:${opts.namespace}/(check)`, opts.namespace, labels, namespaceLabels);
      const port = Number(opts.port);
      const { decision, lines } = explain(set, identity, name, opts.protocol, port);
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
            protocol: opts.protocol,
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
        console.log(`${paint(decision.verdict)} ${name} ${opts.protocol}/${port}: ${decision.reason}${by}`);
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
