/**
 * Locating the PostgreSQL 15 binaries. pgpilot drives one major version (15) whose binaries must
 * all come from the same directory: mixing an initdb from one version with a postgres from another
 * produces data directories that refuse to start. The lookup order is an explicit override (config),
 * then the Debian location, then `pg_config --bindir`; a directory only counts when it holds an
 * executable `postgres`. Nothing here installs anything: a missing install is BINARY_MISSING.
 */
import { access, constants } from 'node:fs/promises';
import path from 'node:path';
import { PgpilotError } from '../shared/errors.js';
import { runCommand } from '../shared/process-runner.js';

export const DEBIAN_PG15_BIN_DIR = '/usr/lib/postgresql/15/bin';

/** The names of the PostgreSQL programs pgpilot runs. */
export type PgBinaryName =
  | 'initdb'
  | 'postgres'
  | 'pg_basebackup'
  | 'pg_controldata'
  | 'pg_rewind'
  | 'pg_ctl'
  | 'psql'
  | 'pgbench'
  | 'pg_isready'
  | 'pg_waldump'
  | 'pg_checksums'
  | 'pg_resetwal'
  | 'pg_receivewal'
  | 'pg_verifybackup'
  | 'pg_archivecleanup'
  | 'pg_dump'
  | 'pg_dumpall'
  | 'pg_restore';

async function hasPostgres(binDir: string): Promise<boolean> {
  try {
    await access(path.join(binDir, 'postgres'), constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function pgConfigBinDir(): Promise<string | null> {
  try {
    const result = await runCommand('pg_config', ['--bindir'], { timeoutMs: 10_000, check: false });
    if (result.exitCode !== 0) return null;
    const dir = result.stdout.trim();
    return dir.length > 0 ? dir : null;
  } catch {
    return null;
  }
}

/** The directory holding the PostgreSQL binaries; throws BINARY_MISSING when none qualifies. */
export async function findPgBinDir(override?: string): Promise<string> {
  if (override !== undefined && override.length > 0 && (await hasPostgres(override))) return override;
  if (await hasPostgres(DEBIAN_PG15_BIN_DIR)) return DEBIAN_PG15_BIN_DIR;
  const fromPgConfig = await pgConfigBinDir();
  if (fromPgConfig !== null && (await hasPostgres(fromPgConfig))) return fromPgConfig;
  throw new PgpilotError('BINARY_MISSING', 'PostgreSQL 15 binaries were not found', {
    hint: 'run scripts/setup.sh (installs postgresql-15)',
  });
}

/** The full path of one PostgreSQL program in `binDir`. */
export function pgBinary(binDir: string, name: PgBinaryName): string {
  return path.join(binDir, name);
}
