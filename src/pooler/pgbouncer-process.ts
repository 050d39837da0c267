/**
 * The one module that runs the `pgbouncer` binary (Debian's pgbouncer 1.18): find it, start it in
 * the foreground as our child, reload it (SIGHUP), stop it by PID, read its version.
 *
 * Invariants and why:
 * - PgBouncer runs in the foreground (no `-d`), started through `setpriv ... --pdeathsig KILL --`
 *   (asPostgresUser: as the postgres OS user when we are root, since PgBouncer refuses root; setpriv
 *   and nice exec, so the PID we record is PgBouncer's), so it dies with the agent that started it:
 *   a killed agent cannot leave a pooler behind that keeps accepting clients.
 * - Its stderr (its log) goes straight to a file through an inherited descriptor: no pipe to drain.
 * - Its environment is `scrubbedEnv` (src/shared/child-env.ts): PATH, TZ, locale and the postgres
 *   user's HOME only, none of the operator's credentials.
 * - `startPgbouncer` resolves only once the listen port is open *in that process* (read from /proc,
 *   without connecting); if PgBouncer exits first, the log tail is the error.
 * - Signals go only to a PID whose /proc/PID/cmdline still names our ini file (src/shared/pid.ts);
 *   SIGTERM is PgBouncer's immediate shutdown, SIGKILL after a bounded wait.
 * - The distribution's pgbouncer service is never used or touched (scripts/setup.sh disables it).
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Clock } from '../shared/clock.js';
import { PgpilotError } from '../shared/errors.js';
import { isOwnedProcessAlive, stopOwnedProcess } from '../shared/pid.js';
import { childHome, scrubbedEnv } from '../shared/child-env.js';
import { POSTGRES_OS_USER, asPostgresUser, findExecutable, runCommand } from '../shared/process-runner.js';
import { awaitListeningAndRecordPid } from '../shared/daemon-ready.js';

const INSTALL_HINT = 'run scripts/setup.sh (installs the pgbouncer package)';
/** Debian installs pgbouncer in /usr/sbin, which is not on a normal user's PATH. */
const EXTRA_BIN_DIRS = ['/usr/sbin', '/usr/local/sbin', '/sbin'];
const DEFAULT_READY_TIMEOUT_MS = 10_000;

/** The pgbouncer executable, or BINARY_MISSING with the setup hint. */
export function findPgbouncerBinary(env: NodeJS.ProcessEnv = process.env): string {
  const found = findExecutable('pgbouncer', EXTRA_BIN_DIRS, env);
  if (found === null) throw new PgpilotError('BINARY_MISSING', 'pgbouncer was not found', { hint: INSTALL_HINT });
  return found;
}

/** `PgBouncer 1.18.0` (first line of `pgbouncer --version`) -> `1.18.0`; null when unrecognised. */
export function parsePgbouncerVersion(text: string): string | null {
  const match = /^PgBouncer\s+(\d+\.\d+(?:\.\d+)?)/m.exec(text);
  return match?.[1] ?? null;
}

export async function pgbouncerVersion(binary: string): Promise<string | null> {
  const result = await runCommand(binary, ['--version'], { timeoutMs: 10_000, check: false, env: scrubbedEnv({ LC_ALL: 'C' }) });
  return parsePgbouncerVersion(`${result.stdout}\n${result.stderr}`);
}

async function logTail(logFile: string): Promise<string> {
  const text = await readFile(logFile, 'utf8').catch(() => '');
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0)
    .slice(-3)
    .join(' | ');
}

export interface StartPgbouncerOptions {
  binary: string;
  iniFile: string;
  logFile: string;
  pidFile: string;
  /** The port of the ini file: ready once PgBouncer listens on it. */
  listenPort: number;
  clock: Clock;
  readyTimeoutMs?: number;
  /** Called once when the process exits (after it started), with how. */
  onExit?: (how: string) => void;
}

/** Starts PgBouncer as our child; resolves with its PID once it listens. */
export async function startPgbouncer(options: StartPgbouncerOptions): Promise<{ pid: number }> {
  const { clock } = options;
  const logFd = openSync(options.logFile, 'a', 0o640);
  // Written by the child's exit handler while we poll below.
  const state: { exited: string | null } = { exited: null };
  let pid: number;
  try {
    // Data plane: normal CPU priority (asPostgresUser), a session of its own (detached), and the
    // parent-death signal, so it still dies with the agent.
    const wrapped = asPostgresUser(options.binary, [options.iniFile]);
    // Environment: the allow-list of src/shared/child-env.ts (no AWS_*, no operator PG*).
    const child = spawn(wrapped.command, wrapped.args, { stdio: ['ignore', logFd, logFd], detached: true, cwd: '/', env: scrubbedEnv({}, { home: childHome(POSTGRES_OS_USER) }) });
    child.once('exit', (code, signal) => {
      state.exited = `exit ${code ?? signal ?? '?'}`;
      options.onExit?.(state.exited);
    });
    pid = await new Promise<number>((resolve, reject) => {
      child.once('error', (error: NodeJS.ErrnoException) =>
        reject(error.code === 'ENOENT' ? new PgpilotError('BINARY_MISSING', 'setpriv was not found', { hint: 'run scripts/setup.sh (installs util-linux)' }) : error),
      );
      child.once('spawn', () => resolve(child.pid ?? -1));
    });
    child.unref();
  } finally {
    closeSync(logFd);
  }
  const owned = { pid, marker: options.iniFile };
  const deadlineMs = clock.nowMs() + (options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS);
  await awaitListeningAndRecordPid({
    name: 'pgbouncer',
    owned,
    ports: [options.listenPort],
    exited: () => state.exited,
    logTail: () => logTail(options.logFile),
    logFile: options.logFile,
    pidFile: options.pidFile,
    deadlineMs,
    clock,
  });
  return { pid };
}

/** SIGHUP: PgBouncer re-reads its ini and auth files. False when the PID is not (or no longer) ours. */
export async function reloadPgbouncer(pid: number, iniFile: string): Promise<boolean> {
  if (!(await isOwnedProcessAlive({ pid, marker: iniFile }))) return false;
  try {
    process.kill(pid, 'SIGHUP');
    return true;
  } catch {
    return false;
  }
}

/** Stops the PgBouncer with this PID (SIGTERM, SIGKILL after `graceMs`); nothing when it is not ours. */
export async function stopPgbouncer(pid: number, iniFile: string, clock: Clock, graceMs = 5_000): Promise<'not-running' | 'stopped' | 'killed'> {
  return stopOwnedProcess({ pid, marker: iniFile }, clock, { signal: 'SIGTERM', graceMs, pollMs: 25 });
}
