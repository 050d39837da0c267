/**
 * Running external programs. `runCommand` runs one to completion with a time bound and captures
 * its output; `asPostgresUser` wraps a command so that, when pgpilot runs as root, the program
 * runs as the `postgres` OS user (postgres refuses to run as root, and data must be owned by it)
 * with a parent-death signal, so nothing it starts can outlive the agent. Programs run with the
 * allow-listed environment of src/shared/child-env.ts unless the caller passes another.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { scrubbedEnv } from './child-env.js';
import { PgpilotError } from './errors.js';
import { redactSecrets } from './logger.js';
import { atNormalPriority } from './priority.js';

export interface CommandResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Default `scrubbedEnv()`: PATH, TZ and the locale only (src/shared/child-env.ts). */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  timeoutMs?: number;
  /** Text written to the child's stdin, then closed. */
  input?: string;
  /** When true (default) a non-zero exit throws COMMAND_FAILED with the stderr tail. */
  check?: boolean;
  /** Called with each chunk of stderr as it arrives (progress output); stderr is still captured. */
  onStderr?: (chunk: string) => void;
}

const DEFAULT_TIMEOUT_MS = 120_000;
const OUTPUT_LIMIT_CHARS = 1_000_000;

export async function runCommand(command: string, args: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const result = await new Promise<CommandResult>((resolve, reject) => {
    const child = spawn(command, args, {
      // Default: the allow-listed environment (src/shared/child-env.ts), never the operator's whole one.
      env: options.env ?? scrubbedEnv(),
      cwd: options.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      if (stdout.length < OUTPUT_LIMIT_CHARS) stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      if (stderr.length < OUTPUT_LIMIT_CHARS) stderr += chunk;
      options.onStderr?.(chunk);
    });
    child.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (error.code === 'ENOENT') {
        reject(
          new PgpilotError('BINARY_MISSING', `${command} was not found`, {
            hint: 'run scripts/setup.sh to install the PostgreSQL and etcd packages',
          }),
        );
      } else reject(error);
    });
    child.on('close', (exitCode, signal) => {
      clearTimeout(timer);
      if (timedOut) {
        reject(new PgpilotError('TIMEOUT', `${command} did not finish within ${timeoutMs} ms`, { retryable: true }));
        return;
      }
      resolve({ exitCode, signal, stdout, stderr });
    });
    if (options.input !== undefined) child.stdin.end(options.input);
    else child.stdin.end();
  });
  if ((options.check ?? true) && result.exitCode !== 0) {
    const tail = redactSecrets(result.stderr.trim().split('\n').slice(-3).join(' | '));
    throw new PgpilotError('COMMAND_FAILED', `${command} failed (exit ${result.exitCode ?? result.signal}): ${tail}`, {
      retryable: true,
    });
  }
  return result;
}

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

export const POSTGRES_OS_USER = 'postgres';

export interface OsUserIds {
  uid: number;
  gid: number;
}

/** uid/gid of an OS user (through NSS: `getent passwd`, so LDAP users work too); null when there is none. */
export async function lookupOsUser(name: string): Promise<OsUserIds | null> {
  const result = await runCommand('getent', ['passwd', name], { timeoutMs: 10_000, check: false });
  const fields = result.stdout.trim().split(':');
  const uid = Number(fields[2]);
  const gid = Number(fields[3]);
  if (result.exitCode !== 0 || fields.length < 4 || !Number.isInteger(uid) || !Number.isInteger(gid)) return null;
  return { uid, gid };
}

/**
 * The argv that runs `command args` as the postgres OS user when we are root, with a parent-death
 * SIGKILL either way (setpriv from util-linux; available on every Debian), at normal CPU priority.
 */
export function asPostgresUser(command: string, args: readonly string[]): { command: string; args: string[] } {
  const privileges = isRoot()
    ? ['--reuid', POSTGRES_OS_USER, '--regid', POSTGRES_OS_USER, '--init-groups']
    : [];
  // Back at normal priority when the caller (the agent) runs boosted: see src/shared/priority.ts.
  return atNormalPriority('setpriv', [...privileges, '--pdeathsig', 'KILL', '--', command, ...args]);
}

/**
 * The first executable `name` in $PATH, then in `extraDirs` (Debian puts daemons in /usr/sbin,
 * which is not on a normal user's PATH); null when there is none.
 */
export function findExecutable(name: string, extraDirs: readonly string[], env: NodeJS.ProcessEnv = process.env): string | null {
  const dirs = [...(env['PATH'] ?? '').split(path.delimiter).filter((d) => d.length > 0), ...extraDirs];
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; try the next directory
    }
  }
  return null;
}
