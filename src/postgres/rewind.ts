/**
 * The one module for `pg_rewind`: brings a former primary's data directory back in line with the
 * new leader after their timelines diverged, so it can follow without a full clone. Runs as the
 * postgres OS user; the source is the leader's running postgres (superuser through a 0600
 * passfile, never a password on the command line). PG 15's pg_rewind first finishes crash recovery
 * of an uncleanly stopped target itself (single-user mode). "no rewind required" is success.
 */
import { PgpilotError } from '../shared/errors.js';
import { asPostgresUser, runCommand } from '../shared/process-runner.js';
import { pgBinary } from './bin-dir.js';
import { renderConninfo } from './conf.js';
import { postgresEnv } from './initdb.js';

export interface RewindOptions {
  binDir: string;
  dataDir: string;
  source: { host: string; port: number; user: string };
  passfile: string;
  /** The cluster CA: the source is verified against it and the address dialled (verify-full). */
  caFile: string;
  timeoutMs?: number;
}

export type RewindOutcome = { kind: 'rewound' } | { kind: 'not-needed' };

/** The pg_rewind argv (pure). */
export function rewindArgs(options: Pick<RewindOptions, 'dataDir' | 'source' | 'passfile' | 'caFile'>): string[] {
  const source = renderConninfo({
    host: options.source.host,
    port: options.source.port,
    user: options.source.user,
    dbname: 'postgres',
    passfile: options.passfile,
    connect_timeout: 5,
    sslmode: 'verify-full',
    sslrootcert: options.caFile,
  });
  return [`--target-pgdata=${options.dataDir}`, `--source-server=${source}`, '--progress'];
}

/** Classifies pg_rewind's output (pure). */
export function rewindOutcome(output: string): RewindOutcome {
  return /no rewind required/i.test(output) ? { kind: 'not-needed' } : { kind: 'rewound' };
}

export async function runRewind(options: RewindOptions): Promise<RewindOutcome> {
  const wrapped = asPostgresUser(pgBinary(options.binDir, 'pg_rewind'), rewindArgs(options));
  try {
    const result = await runCommand(wrapped.command, wrapped.args, {
      env: postgresEnv(),
      cwd: '/',
      timeoutMs: options.timeoutMs ?? 10 * 60_000,
    });
    return rewindOutcome(`${result.stdout}\n${result.stderr}`);
  } catch (error) {
    if (error instanceof PgpilotError && error.code === 'COMMAND_FAILED') {
      throw new PgpilotError('POSTGRES_FAILED', `pg_rewind from ${options.source.host}:${options.source.port} failed: ${error.message}`, {
        hint: 'the node will be re-cloned; its old data directory is kept aside',
        retryable: true,
        cause: error,
      });
    }
    throw error;
  }
}
