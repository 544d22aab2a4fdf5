/** "host:port" (IPv6 in brackets) for the agent's own listeners; throws on a bad address. */
import { parseHostPort } from '../config/load.ts';
import { ErrorCode, NamegateError } from '../core/errors.ts';

export function parseListen(text: string): { host: string; port: number } {
  const hp = parseHostPort(text, 0);
  if (typeof hp === 'string') throw new NamegateError(ErrorCode.ConfigInvalid, `listen address: ${hp}`);
  return { host: hp.host, port: hp.port };
}
