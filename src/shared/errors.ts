/**
 * Typed errors with stable codes. Every failure a user can meet is a `PgpilotError` with an
 * UPPER_SNAKE `code`, a one-line `message`, a `hint` telling what to do next, whether retrying can
 * help, and the process exit code the CLI uses. Expected outcomes (a lost race, a missing key) are
 * return values, not exceptions; these are for things that stop a command.
 */

export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'CONFIG_UNREADABLE'
  | 'INPUT_INVALID'
  | 'CLUSTER_NOT_FOUND'
  | 'CLUSTER_EXISTS'
  | 'CLUSTER_NOT_RUNNING'
  | 'CLUSTER_START_FAILED'
  | 'NODE_NOT_FOUND'
  | 'BINARY_MISSING'
  | 'PORT_BUSY'
  | 'HOME_UNUSABLE'
  | 'DCS_UNAVAILABLE'
  | 'TLS_MISSING'
  | 'TLS_INVALID'
  | 'POSTGRES_FAILED'
  | 'COMMAND_FAILED'
  | 'TIMEOUT'
  | 'CONFIRMATION_REQUIRED'
  | 'STORE_UNAVAILABLE'
  | 'BACKUP_CORRUPT'
  | 'BACKUP_NOT_FOUND'
  | 'BACKUP_RUNNING'
  | 'BACKUP_FAILED'
  | 'RESTORE_FAILED'
  | 'POOLER_PORT_MISSING'
  | 'POOLER_AUTH_UNTRUSTED'
  | 'MAJOR_VERSION_MISMATCH'
  | 'LEADER_REMOVAL_REFUSED'
  | 'SETTING_NOT_APPLIED'
  | 'EXTENSION_UNAVAILABLE'
  | 'BUNDLE_INVALID'
  | 'CONTEXT_INVALID'
  | 'LOCAL_ONLY'
  | 'DATA_DIR_FOREIGN'
  | 'NODE_ALREADY_RUNNING'
  | 'INTERNAL';

export interface PgpilotErrorOptions {
  hint?: string;
  retryable?: boolean;
  exitCode?: number;
  cause?: unknown;
}

export class PgpilotError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly retryable: boolean;
  readonly exitCode: number;

  constructor(code: ErrorCode, message: string, options: PgpilotErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PgpilotError';
    this.code = code;
    this.hint = options.hint;
    this.retryable = options.retryable ?? false;
    this.exitCode = options.exitCode ?? 1;
  }
}

export function isPgpilotError(value: unknown): value is PgpilotError {
  return value instanceof PgpilotError;
}

/** The message of anything thrown, for logs and wrapped errors (never a stack). */
export function errorMessage(value: unknown): string {
  if (value instanceof Error) return value.message;
  return String(value);
}
