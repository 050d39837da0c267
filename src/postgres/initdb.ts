/**
 * Creating a new data directory with initdb. Invariants: the data directory belongs to the postgres
 * OS user with mode 0700 (postgres refuses anything looser); checksums are on (pg_rewind and
 * corruption detection rely on them); authentication is scram-sha-256 from the first start, with
 * the superuser password handed over through a 0600 file that only the postgres user can read,
 * which is removed afterwards whatever happens — the password never appears in an argv, an
 * environment, or a log line. Also home of the small helpers that give a directory to the postgres
 * user, shared by the other postgres modules.
 */
import { chmod, chown, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { childHome, scrubbedEnv } from '../shared/child-env.js';
import { makeDirectories } from '../shared/fs-safe.js';
import { PgpilotError } from '../shared/errors.js';
import { asPostgresUser, isRoot, lookupOsUser, POSTGRES_OS_USER, runCommand } from '../shared/process-runner.js';
import { pgBinary } from './bin-dir.js';

export interface PostgresOsIds {
  uid: number;
  gid: number;
}

let cachedIds: Promise<PostgresOsIds> | null = null;

/** uid/gid of the postgres OS user (through NSS, so LDAP users work too); cached per process. */
export function postgresOsIds(): Promise<PostgresOsIds> {
  cachedIds ??= (async () => {
    const ids = await lookupOsUser(POSTGRES_OS_USER);
    if (ids === null) {
      throw new PgpilotError('BINARY_MISSING', `the ${POSTGRES_OS_USER} OS user does not exist`, {
        hint: 'run scripts/setup.sh (installs postgresql-15, which creates the postgres user)',
      });
    }
    return ids;
  })();
  cachedIds.catch(() => {
    cachedIds = null;
  });
  return cachedIds;
}

/**
 * Creates `dir` (and parents) and, when we are root, hands it to the postgres user; sets `mode`
 * either way. Parents created here stay root-owned with the default mode.
 */
export async function ensurePostgresOwnedDir(dir: string, mode: number): Promise<void> {
  await makeDirectories(dir);
  if (isRoot()) {
    const ids = await postgresOsIds();
    await chown(dir, ids.uid, ids.gid);
  }
  await chmod(dir, mode);
}

/** Hands an existing file to the postgres user when we are root (its mode is kept). */
/**
 * As root, postgres runs as the postgres OS user: it must be able to reach `dir` (every parent
 * traversable). HOME_UNUSABLE with `hint` (which directory to use instead) when it cannot.
 */
export async function ensurePostgresCanReach(dir: string, hint: string): Promise<void> {
  if (!isRoot()) return;
  const check = await runCommand('setpriv', ['--reuid', POSTGRES_OS_USER, '--regid', POSTGRES_OS_USER, '--init-groups', '--', 'test', '-x', dir], {
    check: false,
    timeoutMs: 10_000,
  });
  if (check.exitCode !== 0) {
    throw new PgpilotError('HOME_UNUSABLE', `the postgres OS user cannot reach ${dir}`, { hint, exitCode: 2 });
  }
}

export async function givePostgres(file: string): Promise<void> {
  if (!isRoot()) return;
  const ids = await postgresOsIds();
  await chown(file, ids.uid, ids.gid);
}

/** Writes a file only the postgres user (or, not as root, we) can read. */
export async function writePostgresPrivateFile(file: string, content: string): Promise<void> {
  await writeFile(file, content, { mode: 0o600 });
  if (isRoot()) {
    const ids = await postgresOsIds();
    await chown(file, ids.uid, ids.gid);
  }
  await chmod(file, 0o600);
}

/**
 * The environment of postgres programs (the server and every tool): `scrubbedEnv`
 * (src/shared/child-env.ts), so no inherited PG* or AWS_* variable, with the postgres user's HOME
 * and a fixed C.UTF-8 locale instead of the caller's (some of their output is parsed).
 */
export function postgresEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return scrubbedEnv({ LANG: 'C.UTF-8', ...extra }, { inheritLocale: false, home: childHome(POSTGRES_OS_USER) });
}

async function isMissingOrEmpty(dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).length === 0;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw error;
  }
}

export interface InitdbOptions {
  binDir: string;
  dataDir: string;
  superuser: string;
  superuserPassword: string;
  encoding?: string;
  locale?: string;
  timeoutMs?: number;
}

/** The initdb argv (pure; the password file path is the only secret-adjacent item and holds no secret). */
export function initdbArgs(options: {
  dataDir: string;
  superuser: string;
  pwfile: string;
  encoding: string;
  locale: string;
}): string[] {
  return [
    '-D',
    options.dataDir,
    '--data-checksums',
    '--auth=scram-sha-256',
    `--username=${options.superuser}`,
    `--pwfile=${options.pwfile}`,
    `--encoding=${options.encoding}`,
    `--locale=${options.locale}`,
  ];
}

export async function runInitdb(options: InitdbOptions): Promise<void> {
  if (options.superuserPassword.length === 0 || /[\r\n]/.test(options.superuserPassword)) {
    // initdb reads the first line of the password file only.
    throw new PgpilotError('INPUT_INVALID', 'the superuser password must be non-empty and on one line');
  }
  if (!(await isMissingOrEmpty(options.dataDir))) {
    throw new PgpilotError('INPUT_INVALID', `data directory ${options.dataDir} exists and is not empty`, {
      hint: 'choose another directory, or remove this one if its data is not needed',
    });
  }
  await ensurePostgresOwnedDir(options.dataDir, 0o700);

  // mkdtemp makes a 0700 directory; giving it to postgres keeps the password file unreadable to
  // everyone else while postgres (initdb) can still reach it.
  const secretDir = await mkdtemp(path.join(tmpdir(), 'pgpilot-initdb-'));
  try {
    await ensurePostgresOwnedDir(secretDir, 0o700);
    const pwfile = path.join(secretDir, 'pwfile');
    await writePostgresPrivateFile(pwfile, `${options.superuserPassword}\n`);
    const args = initdbArgs({
      dataDir: options.dataDir,
      superuser: options.superuser,
      pwfile,
      encoding: options.encoding ?? 'UTF8',
      locale: options.locale ?? 'C.UTF-8',
    });
    const wrapped = asPostgresUser(pgBinary(options.binDir, 'initdb'), args);
    try {
      await runCommand(wrapped.command, wrapped.args, {
        env: postgresEnv({ LC_ALL: 'C.UTF-8' }),
        // Our own cwd may be unreachable for the postgres user (/root is 0700).
        cwd: '/',
        timeoutMs: options.timeoutMs ?? 120_000,
      });
    } catch (error) {
      if (error instanceof PgpilotError && error.code === 'COMMAND_FAILED') {
        throw new PgpilotError('POSTGRES_FAILED', `initdb failed: ${error.message}`, {
          hint: `check that ${options.dataDir} and its parents are reachable by the ${POSTGRES_OS_USER} user`,
          cause: error,
        });
      }
      throw error;
    }
  } finally {
    await rm(secretDir, { recursive: true, force: true });
  }
}
