/**
 * pg_dump and pg_restore (PostgreSQL 15 client binaries, `--format=directory --jobs=N`), for
 * `pgpilot import`. Invariants: a password never appears in an argv (ps shows argv to every user):
 * the source URL loses its password before it becomes `--dbname`, and passwords travel in the
 * child's PGPASSWORD, in an environment without any inherited PG* variable; every run is bounded
 * by a timeout (SIGKILL after it); stderr is read line by line so progress can be shown while the
 * program runs, and what is kept of it is redacted. The argv builders and the progress parser are
 * pure and tested on the lines these versions print.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { PgpilotError } from '../shared/errors.js';
import { redactSecrets } from '../shared/logger.js';
import { pgBinary } from './bin-dir.js';
import { postgresEnv } from './initdb.js';

export interface SourceUrl {
  /** The URL without its password: safe for an argv and for messages. */
  urlWithoutPassword: string;
  password: string | null;
  host: string;
  port: number;
  user: string | null;
  /** The database named in the URL, or null (then libpq's default, the user name). */
  database: string | null;
}

const URL_SCHEME = /^postgres(ql)?:\/\//;

/**
 * Parses a single-host `postgresql://user:password@host:port/db?params` URL (pure). Multi-host
 * URLs and key=value conninfo strings are refused (INPUT_INVALID, exit 2): the row-count check
 * connects with node-postgres, which takes one host.
 */
export function parseSourceUrl(text: string): SourceUrl {
  const invalid = (why: string) =>
    new PgpilotError('INPUT_INVALID', `invalid --source: ${why}`, {
      hint: 'use a URL like postgresql://USER:PASSWORD@HOST:PORT/DATABASE (one host; add ?sslmode=require if the source needs TLS)',
      exitCode: 2,
    });
  if (!URL_SCHEME.test(text)) throw invalid('it must start with postgresql:// or postgres://');
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalid('it is not a valid single-host URL');
  }
  if (url.hostname.length === 0) throw invalid('it names no host');
  const port = url.port.length > 0 ? Number(url.port) : 5432;
  const password = url.password.length > 0 ? decodeURIComponent(url.password) : null;
  const user = url.username.length > 0 ? decodeURIComponent(url.username) : null;
  const path = decodeURIComponent(url.pathname.replace(/^\//, ''));
  url.password = '';
  return { urlWithoutPassword: url.toString(), password, host: url.hostname.replace(/^\[|\]$/g, ''), port, user, database: path.length > 0 ? path : null };
}

/** pg_dump argv (pure): directory format, parallel, in the caller's exported snapshot, verbose for progress. */
export function pgDumpArgs(options: { sourceUrl: string; dumpDir: string; jobs: number; snapshot: string | null }): string[] {
  return [
    '--format=directory',
    `--jobs=${options.jobs}`,
    `--file=${options.dumpDir}`,
    ...(options.snapshot === null ? [] : [`--snapshot=${options.snapshot}`]),
    '--verbose',
    '--no-password',
    `--dbname=${options.sourceUrl}`,
  ];
}

/**
 * pg_restore argv (pure). Objects are created without the source's owners and grants (its roles
 * need not exist here): by the cluster superuser, or by `role` (SET ROLE) so that an app owns what
 * is imported into its database. `clean` drops objects of the dump that already exist first.
 */
export function pgRestoreArgs(options: { targetUrl: string; dumpDir: string; jobs: number; role: string | null; clean: boolean }): string[] {
  return [
    '--format=directory',
    `--jobs=${options.jobs}`,
    '--no-owner',
    '--no-privileges',
    ...(options.role === null ? [] : [`--role=${options.role}`]),
    ...(options.clean ? ['--clean', '--if-exists'] : []),
    '--verbose',
    '--no-password',
    `--dbname=${options.targetUrl}`,
    options.dumpDir,
  ];
}

export type DumpRestoreEvent =
  | { kind: 'table'; program: 'pg_dump' | 'pg_restore'; table: string }
  | { kind: 'error'; program: 'pg_dump' | 'pg_restore'; message: string }
  | { kind: 'other' };

/** One stderr line of `pg_dump --verbose` / `pg_restore --verbose` (PostgreSQL 15) as an event (pure). */
export function parseDumpRestoreLine(line: string): DumpRestoreEvent {
  const dump = /^pg_dump: dumping contents of table "(.+)"$/.exec(line);
  if (dump?.[1] !== undefined) return { kind: 'table', program: 'pg_dump', table: dump[1] };
  const restore = /^pg_restore: processing data for table "(.+)"$/.exec(line);
  if (restore?.[1] !== undefined) return { kind: 'table', program: 'pg_restore', table: restore[1] };
  const error = /^(pg_dump|pg_restore): error: (.*)$/.exec(line);
  if (error?.[1] !== undefined && error[2] !== undefined) {
    return { kind: 'error', program: error[1] === 'pg_dump' ? 'pg_dump' : 'pg_restore', message: redactSecrets(error[2]) };
  }
  return { kind: 'other' };
}

export interface StreamingResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** Error lines (redacted), in order; at most 50. */
  errors: string[];
  /** The last stderr lines (redacted), for messages. */
  tail: string[];
}

const KEEP_ERRORS = 50;
const KEEP_TAIL = 5;

/**
 * Runs pg_dump or pg_restore from `binDir` with PGPASSWORD in its environment, calling `onEvent`
 * for each parsed stderr line; SIGKILL after `timeoutMs` (TIMEOUT error).
 */
export async function runDumpRestore(options: {
  binDir: string;
  program: 'pg_dump' | 'pg_restore';
  args: readonly string[];
  password: string | null;
  timeoutMs: number;
  onEvent(event: DumpRestoreEvent): void;
}): Promise<StreamingResult> {
  const env = postgresEnv({ PGCONNECT_TIMEOUT: '10', ...(options.password === null ? {} : { PGPASSWORD: options.password }) });
  const command = pgBinary(options.binDir, options.program);
  return new Promise<StreamingResult>((resolve, reject) => {
    const child = spawn(command, [...options.args], { env, stdio: ['ignore', 'ignore', 'pipe'], cwd: '/' });
    const errors: string[] = [];
    const tail: string[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs);
    const lines = createInterface({ input: child.stderr });
    lines.on('line', (line) => {
      const event = parseDumpRestoreLine(line);
      if (event.kind === 'error' && errors.length < KEEP_ERRORS) errors.push(event.message);
      tail.push(redactSecrets(line));
      if (tail.length > KEEP_TAIL) tail.shift();
      options.onEvent(event);
    });
    child.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        error.code === 'ENOENT'
          ? new PgpilotError('BINARY_MISSING', `${command} was not found`, { hint: 'run scripts/setup.sh (installs postgresql-15)' })
          : error,
      );
    });
    child.on('close', (exitCode, signal) => {
      clearTimeout(timer);
      if (timedOut) {
        reject(new PgpilotError('TIMEOUT', `${options.program} did not finish within ${Math.round(options.timeoutMs / 1000)} s`, { hint: 'raise --timeout', retryable: true }));
        return;
      }
      resolve({ exitCode, signal, errors, tail });
    });
  });
}
