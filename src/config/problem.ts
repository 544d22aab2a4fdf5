/**
 * A config problem names the field it is about ("dns.upstreams[1]") and says what is wrong;
 * a ConfigError carries every problem of a file at once, so one run shows them all.
 */
import { ErrorCode, NamegateError } from '../core/errors.ts';

export interface ConfigProblem {
  readonly path: string;
  readonly message: string;
}

export class ConfigError extends NamegateError {
  readonly problems: readonly ConfigProblem[];
  constructor(file: string, problems: readonly ConfigProblem[]) {
    const lines = problems.map((p) => `  ${p.path === '' ? '(top level)' : p.path}: ${p.message}`);
    super(ErrorCode.ConfigInvalid, `${file}: invalid config\n${lines.join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}
