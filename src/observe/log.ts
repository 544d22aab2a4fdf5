/**
 * Structured logs: one JSON line per decision, with the stable field names of fields.ts. pino
 * writes synchronously to a file descriptor (no worker thread), which keeps line order and
 * survives a crash.
 */
import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger };

export interface LogOptions {
  readonly level?: string;
  /** Where lines go; stdout when absent. Tests pass a stream to read lines back. */
  readonly destination?: DestinationStream;
}

export function createLogger(component: string, options: LogOptions = {}): Logger {
  const base = pino(
    {
      level: options.level ?? process.env['NAMEGATE_LOG_LEVEL'] ?? 'info',
      base: null,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: ['token', 'authorization', '*.token', '*.authorization'], censor: '[redacted]' },
    },
    options.destination ?? pino.destination({ dest: 1, sync: true }),
  );
  return base.child({ component });
}

/** A logger that drops everything (for tests and benchmarks that do not read logs). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
