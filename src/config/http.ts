/** The `http` section: where the agent serves /metrics, /healthz and /readyz. */
import { z } from 'zod';
import { type HostPort, hostPort } from '../core/host-port.ts';

export const HttpSectionSchema = z.strictObject({
  listen: z.string().default('127.0.0.1:9253').describe('Address of /metrics, /healthz and /readyz.'),
});

export type HttpSection = z.output<typeof HttpSectionSchema>;

/** The health listener's address ("host:port"; port 0 picks one). */
export function httpListenFrom(listen: string): HostPort {
  return hostPort(listen, 'http.listen');
}
