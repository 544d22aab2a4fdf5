/**
 * `namegate controller`: the cluster-wide controller (one Deployment, leader-elected through a
 * Lease). Serves /metrics, /healthz and /readyz; stops cleanly on SIGTERM, releasing the Lease
 * so a standby takes over at once.
 */
import { hostname } from 'node:os';
import type { Command } from 'commander';
import { KubeApi, loadKubeConfig } from '../k8s/api.ts';
import { PolicyController } from '../k8s/controller.ts';
import { k8sMetrics } from '../k8s/metrics.ts';
import { HealthServer } from '../observe/http.ts';
import { createLogger } from '../observe/log.ts';
import { createRegistry } from '../observe/metrics.ts';
import { usageError } from './output.ts';

interface ControllerFlags {
  kubeconfig?: string;
  leaseNamespace: string;
  leaseName: string;
  identity?: string;
  listen: string;
}

export function registerController(program: Command): void {
  program
    .command('controller')
    .description('run the cluster-wide controller: writes EgressPolicy status while it holds the Lease')
    .option('--kubeconfig <path>', 'kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)')
    .option(
      '--lease-namespace <ns>',
      'namespace of the Lease',
      process.env['POD_NAMESPACE'] ?? 'namegate-system',
    )
    .option('--lease-name <name>', 'name of the Lease', 'namegate-controller')
    .option('--identity <id>', 'this replica in the Lease (default: $POD_NAME or the host name)')
    .option('--listen <host:port>', 'address of /metrics, /healthz and /readyz', '0.0.0.0:9394')
    .action(async (flags: ControllerFlags) => {
      const m = /^(.*):(\d+)$/.exec(flags.listen);
      if (!m) throw usageError(`--listen ${flags.listen}: expected host:port`);
      const logger = createLogger('controller');
      const registry = createRegistry({ defaultMetrics: true });
      const api = new KubeApi(loadKubeConfig(flags.kubeconfig), { userAgent: 'namegate-controller' });
      const identity = flags.identity ?? process.env['POD_NAME'] ?? `${hostname()}-${process.pid}`;
      const controller = new PolicyController({
        api,
        logger,
        metrics: k8sMetrics(registry),
        leaseNamespace: flags.leaseNamespace,
        leaseName: flags.leaseName,
        identity,
      });
      const health = new HealthServer({
        registry,
        readiness: [{ name: 'kubernetes', check: () => controller.notReadyReason() }],
      });
      await health.listen(m[1] as string, Number(m[2]));
      controller.start();
      logger.info({ event: 'controller', reason: 'started', identity }, 'controller started');
      await new Promise<void>((resolve) => {
        process.once('SIGTERM', resolve);
        process.once('SIGINT', resolve);
      });
      await controller.stop();
      await health.close();
      logger.info({ event: 'controller', reason: 'stopped' }, 'controller stopped');
    });
}
