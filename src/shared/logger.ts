/**
 * pino NDJSON loggers. One root logger per process, child loggers per component. Passwords,
 * tokens and connection strings are redacted by path, and `redactSecrets` scrubs free text
 * (postgres error messages can echo a conninfo).
 */
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger } from 'pino';

const REDACT_PATHS = [
  'password',
  '*.password',
  'token',
  '*.token',
  'apiToken',
  '*.apiToken',
  'secrets',
  '*.secrets',
  'connectionString',
  '*.connectionString',
  'conninfo',
  '*.conninfo',
  'headers.authorization',
  'req.headers.authorization',
];

export function createLogger(options: { level?: string; destination?: DestinationStream; name?: string } = {}): Logger {
  return pino(
    {
      level: options.level ?? process.env['PGPILOT_LOG_LEVEL'] ?? 'info',
      name: options.name ?? 'pgpilot',
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination,
  );
}

/** A logger that drops everything (tests, CLI paths that must print nothing). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** Replaces `password=...` and `postgresql://user:pw@` forms in free text. */
export function redactSecrets(text: string): string {
  return text
    .replace(/(password\s*=\s*)('[^']*'|\S+)/gi, '$1[redacted]')
    .replace(/(postgres(?:ql)?:\/\/[^:/@\s]+:)[^@\s]+@/gi, '$1[redacted]@');
}
