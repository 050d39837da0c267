/**
 * Cloning a replica's data directory from a running primary with pg_basebackup. Invariants: it
 * never writes into a directory that already holds data (a clone over a live or diverged data
 * directory is how data gets lost — reinit must move the old one aside first, explicitly); the
 * password comes from a libpq password file (PGPASSFILE), never from argv or PGPASSWORD, and
 * `--no-password` makes a missing entry fail fast instead of waiting for a prompt; WAL is streamed
 * alongside the copy so the result is consistent on its own; and a failed or timed-out clone leaves
 * nothing behind that could later be mistaken for a usable data directory.
 */
import { readdir, rm } from 'node:fs/promises';
import { PgpilotError } from '../shared/errors.js';
import { asPostgresUser, POSTGRES_OS_USER, runCommand } from '../shared/process-runner.js';
import { pgBinary } from './bin-dir.js';
import { ensurePostgresOwnedDir, postgresEnv } from './initdb.js';

export interface BasebackupOptions {
  binDir: string;
  dataDir: string;
  host: string;
  port: number;
  user: string;
  /** libpq password file readable by the postgres user (mode 0600). */
  passfile: string;
  applicationName?: string;
  /** The cluster CA (verify-full against the source). */
  caFile: string;
  timeoutMs?: number;
}

/** The pg_basebackup argv (pure). */
export function basebackupArgs(options: { dataDir: string; host: string; port: number; user: string }): string[] {
  if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65535) {
    throw new PgpilotError('INPUT_INVALID', `port ${options.port} is out of range`);
  }
  return [
    '-D',
    options.dataDir,
    '-h',
    options.host,
    '-p',
    String(options.port),
    '-U',
    options.user,
    '--wal-method=stream',
    '--checkpoint=fast',
    '--no-password',
  ];
}

/** The environment pg_basebackup runs with (pure): only PATH/locale plus the libpq variables we choose. */
export function basebackupEnv(options: { passfile: string; applicationName?: string; caFile: string }): NodeJS.ProcessEnv {
  // TLS to the source, verified against the cluster CA and the address dialled.
  const extra: Record<string, string> = { PGPASSFILE: options.passfile, LC_ALL: 'C', PGSSLMODE: 'verify-full', PGSSLROOTCERT: options.caFile };
  if (options.applicationName !== undefined) extra['PGAPPNAME'] = options.applicationName;
  return postgresEnv(extra);
}

/** 'missing' | 'empty' | 'non-empty' for a would-be data directory. */
async function dirState(dir: string): Promise<'missing' | 'empty' | 'non-empty'> {
  try {
    return (await readdir(dir)).length === 0 ? 'empty' : 'non-empty';
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw error;
  }
}

async function emptyDir(dir: string): Promise<void> {
  for (const entry of await readdir(dir)) await rm(`${dir}/${entry}`, { recursive: true, force: true });
}

export async function runBasebackup(options: BasebackupOptions): Promise<void> {
  const args = basebackupArgs(options);
  const state = await dirState(options.dataDir);
  if (state === 'non-empty') {
    throw new PgpilotError('INPUT_INVALID', `data directory ${options.dataDir} exists and is not empty`, {
      hint: 'move the old data directory aside (reinit does this) before cloning',
    });
  }
  // We create (or take over the empty) directory ourselves: its parent may not be writable by the
  // postgres user, and the mode must be 0700 for postgres to start on it later.
  await ensurePostgresOwnedDir(options.dataDir, 0o700);
  const wrapped = asPostgresUser(pgBinary(options.binDir, 'pg_basebackup'), args);
  try {
    await runCommand(wrapped.command, wrapped.args, {
      env: basebackupEnv(options),
      cwd: '/',
      timeoutMs: options.timeoutMs ?? 30 * 60_000,
    });
  } catch (error) {
    // pg_basebackup cleans up after itself on most errors, but not when it is killed (timeout).
    if (state === 'missing') await rm(options.dataDir, { recursive: true, force: true });
    else await emptyDir(options.dataDir);
    if (error instanceof PgpilotError && error.code === 'COMMAND_FAILED') {
      throw new PgpilotError('POSTGRES_FAILED', `pg_basebackup from ${options.host}:${options.port} failed: ${error.message}`, {
        hint: `check that the primary is up, that ${options.passfile} has an entry for ${options.user} and is readable by the ${POSTGRES_OS_USER} user, and that pg_hba.conf allows replication`,
        retryable: true,
        cause: error,
      });
    }
    throw error;
  }
}

export interface TarBackupOptions {
  binDir: string;
  /** An empty or missing directory that receives base.tar.gz, pg_wal.tar.gz and backup_manifest. */
  targetDir: string;
  host: string;
  port: number;
  user: string;
  /** libpq password file readable by the user running this process (mode 0600). */
  passfile: string;
  label: string;
  /** The cluster CA (verify-full against the source). */
  caFile: string;
  timeoutMs?: number;
  /** Called with each parsed progress report of pg_basebackup (done/total kB). */
  onProgress?: (progress: { doneKb: number; totalKb: number; percent: number }) => void;
}

/** The pg_basebackup argv of a backup to compressed tar files with a SHA-256 backup manifest (pure). */
export function tarBackupArgs(options: { targetDir: string; host: string; port: number; user: string; label: string }): string[] {
  const base = basebackupArgs({ dataDir: options.targetDir, host: options.host, port: options.port, user: options.user });
  // -Xstream: the WAL needed to make the copy consistent travels with it (pg_wal.tar.gz), so a
  // backup restores even if the archive lost a segment; the manifest lets pg_verifybackup check
  // every file and that WAL.
  return [...base, '--format=tar', '--gzip', '--manifest-checksums=SHA256', '--progress', `--label=${options.label}`];
}

/** One progress report of `pg_basebackup --progress` ("  1234/5678 kB (21%), 0/1 tablespace"), or null. */
export function parseBasebackupProgress(text: string): { doneKb: number; totalKb: number; percent: number } | null {
  const match = /(\d+)\/(\d+) kB \((\d+)%\)/.exec(text);
  if (match === null) return null;
  return { doneKb: Number(match[1]), totalKb: Number(match[2]), percent: Number(match[3]) };
}

/** Runs pg_basebackup into `targetDir` as the current OS user (a client; the server is never root). */
export async function runTarBackup(options: TarBackupOptions): Promise<void> {
  const args = tarBackupArgs(options);
  const state = await dirState(options.targetDir);
  if (state === 'non-empty') throw new PgpilotError('INPUT_INVALID', `backup work directory ${options.targetDir} is not empty`);
  let pending = '';
  try {
    await runCommand(pgBinary(options.binDir, 'pg_basebackup'), args, {
      env: basebackupEnv({ passfile: options.passfile, applicationName: `pgpilot-backup`, caFile: options.caFile }),
      cwd: '/',
      timeoutMs: options.timeoutMs ?? 6 * 60 * 60_000,
      onStderr: (chunk) => {
        pending += chunk;
        const parts = pending.split(/[\r\n]/);
        pending = parts.pop() ?? '';
        for (const part of parts) {
          const progress = parseBasebackupProgress(part);
          if (progress !== null) options.onProgress?.(progress);
        }
      },
    });
  } catch (error) {
    await rm(options.targetDir, { recursive: true, force: true });
    if (error instanceof PgpilotError && error.code === 'COMMAND_FAILED') {
      throw new PgpilotError('BACKUP_FAILED', `pg_basebackup from ${options.host}:${options.port} failed: ${error.message}`, {
        hint: 'check that the source node is up and streaming, and that it has room for the backup checkpoint',
        retryable: true,
        cause: error,
      });
    }
    throw error;
  }
}
