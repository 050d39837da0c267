/**
 * The one module that runs the `haproxy` binary (Debian's haproxy 2.6): check a configuration
 * file (`haproxy -c -f FILE`), start HAProxy in the foreground as our child, stop it by PID.
 *
 * Invariants and why:
 * - HAProxy runs in the foreground (`-db`, no daemon, no master-worker), so the PID we record is
 *   HAProxy itself and nothing forks away from us; it is started through
 *   `setpriv --pdeathsig KILL --` (setpriv execs, same PID), so it dies with the process that
 *   started it: a crashed test or agent cannot leak a proxy that keeps routing clients.
 * - Its stdout/stderr go straight to a log file through an inherited file descriptor (no pipe we
 *   would have to drain, nothing lost when we exit).
 * - `startHaproxy` checks the file first and returns only once every `bind` port of the file is
 *   listening *in that process* (read from /proc, without connecting: a probe connection would
 *   open a session to a backend); if HAProxy exits first, the log tail is the error.
 * - Stopping is by PID only, and only while /proc/PID/cmdline still shows haproxy (a recorded PID
 *   can be reused); SIGTERM is HAProxy's immediate stop, SIGKILL after a bounded wait.
 * - No HAProxy code runs as root, not even the config check: as root, every haproxy process
 *   (`-c` included) is started by `setpriv --reuid haproxy --regid haproxy --init-groups` as the
 *   unprivileged `haproxy` OS user that Debian's haproxy package creates. Its ports are above 1024,
 *   so it needs no capability. Without that user, starting HAProxy as root fails with
 *   BINARY_MISSING and a hint, rather than falling back to root or to `postgres` (which owns the
 *   data directories). Its config file must be readable by that user (the agent writes its own
 *   root:haproxy 0640, src/proxy/haproxy-data-plane.ts) and its unix sockets live in a directory
 *   that user owns.
 * - Its environment is `scrubbedEnv` (src/shared/child-env.ts): PATH, TZ, locale, the haproxy
 *   user's HOME, nothing of the operator's (no AWS_*, no PG*).
 * - The distribution's haproxy service is never used or touched.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SystemClock, type Clock } from '../shared/clock.js';
import { PgpilotError } from '../shared/errors.js';
import { stopOwnedProcess } from '../shared/pid.js';
import { findExecutable, isRoot, lookupOsUser, runCommand, type OsUserIds } from '../shared/process-runner.js';
import { awaitListeningAndRecordPid } from '../shared/daemon-ready.js';
import { childHome, scrubbedEnv } from '../shared/child-env.js';
import { atNormalPriority } from '../shared/priority.js';

export { parseListeningPorts } from '../shared/daemon-ready.js';

const INSTALL_HINT = 'run scripts/setup.sh (installs the haproxy package)';
/** Debian installs haproxy in /usr/sbin, which is not on a normal user's PATH. */
const EXTRA_BIN_DIRS = ['/usr/sbin', '/usr/local/sbin', '/sbin'];

export type HaproxyCheckResult = { kind: 'ok'; output: string } | { kind: 'error'; errorText: string };

export interface StartHaproxyOptions {
  configFile: string;
  pidFile: string;
  logFile: string;
  /** Path of the haproxy binary; default: found on PATH or in /usr/sbin. */
  binary?: string;
  /** How long to wait for every bind port to listen; default 10 s. */
  readyTimeoutMs?: number;
  clock?: Clock;
}

/** The haproxy executable, or BINARY_MISSING with the setup hint. */
export function findHaproxyBinary(env: NodeJS.ProcessEnv = process.env): string {
  const found = findExecutable('haproxy', EXTRA_BIN_DIRS, env);
  if (found === null) throw new PgpilotError('BINARY_MISSING', 'haproxy was not found', { hint: INSTALL_HINT });
  return found;
}

/** The OS user HAProxy runs as when pgpilot runs as root (created by Debian's haproxy package). */
export const HAPROXY_OS_USER = 'haproxy';

let cachedIds: Promise<OsUserIds> | null = null;

/** uid/gid of the haproxy OS user, cached per process; BINARY_MISSING with the setup hint when absent. */
export function haproxyOsIds(): Promise<OsUserIds> {
  cachedIds ??= (async () => {
    const ids = await lookupOsUser(HAPROXY_OS_USER);
    if (ids === null) {
      throw new PgpilotError('BINARY_MISSING', `the ${HAPROXY_OS_USER} OS user does not exist: pgpilot does not run HAProxy as root`, {
        hint: `run scripts/setup.sh (the haproxy package creates the ${HAPROXY_OS_USER} user), or create a system user named ${HAPROXY_OS_USER}`,
      });
    }
    if (ids.uid === 0) {
      throw new PgpilotError('CONFIG_INVALID', `the ${HAPROXY_OS_USER} OS user has uid 0: pgpilot does not run HAProxy as root`, {
        hint: `give ${HAPROXY_OS_USER} an unprivileged uid (Debian's haproxy package creates a system user)`,
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
 * The argv that runs `haproxy args`: through setpriv with a parent-death SIGKILL, as the haproxy OS
 * user when we are root (pure given isRoot; callers check the user exists with `haproxyOsIds`),
 * at normal CPU priority (src/shared/priority.ts). setpriv and nice exec: the PID is HAProxy's.
 */
export function haproxyCommand(binary: string, args: readonly string[], root: boolean = isRoot()): { command: string; args: string[] } {
  const privileges = root ? ['--reuid', HAPROXY_OS_USER, '--regid', HAPROXY_OS_USER, '--init-groups'] : [];
  return atNormalPriority('setpriv', [...privileges, '--pdeathsig', 'KILL', '--', binary, ...args]);
}

/** HAProxy's environment (src/shared/child-env.ts). */
export function haproxyEnv(): NodeJS.ProcessEnv {
  return scrubbedEnv({}, { home: childHome(HAPROXY_OS_USER) });
}

/** The lines of `haproxy -c` output worth showing: alerts and warnings, not the version banner. */
export function parseHaproxyCheckOutput(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l.length > 0 && !/^\[NOTICE\]/.test(l));
  return lines.join('\n');
}

/**
 * Runs `haproxy -c -f FILE`: ok (with any warnings) or the error text. As root the check runs as
 * the haproxy OS user too, on a copy of the file in a private directory of that user (the file
 * itself may sit where that user cannot read, e.g. under /root, when it is only being generated);
 * messages name the original file.
 */
export async function checkHaproxyConfig(configFile: string, options: { binary?: string } = {}): Promise<HaproxyCheckResult> {
  const binary = options.binary ?? findHaproxyBinary();
  let scratch: string | null = null;
  let checked = configFile;
  if (isRoot()) {
    const ids = await haproxyOsIds();
    scratch = await mkdtemp(path.join(os.tmpdir(), 'pgpilot-haproxy-check-'));
    await chown(scratch, ids.uid, ids.gid);
    checked = path.join(scratch, 'haproxy.cfg');
    await writeFile(checked, await readFile(configFile), { mode: 0o644 });
  }
  let result;
  try {
    const wrapped = haproxyCommand(binary, ['-c', '-f', checked]);
    result = await runCommand(wrapped.command, wrapped.args, { timeoutMs: 30_000, check: false, env: haproxyEnv(), cwd: '/' });
  } finally {
    if (scratch !== null) await rm(scratch, { recursive: true, force: true });
  }
  const text = parseHaproxyCheckOutput(`${result.stdout}\n${result.stderr}`.split(checked).join(configFile));
  if (result.exitCode === 0) return { kind: 'ok', output: text };
  return { kind: 'error', errorText: text.length > 0 ? text : `haproxy -c exited with ${result.exitCode ?? result.signal}` };
}

/** Ports of the `bind` lines of a configuration (what HAProxy must be listening on when ready). */
export function bindPortsOf(configText: string): number[] {
  const ports = new Set<number>();
  for (const line of configText.split('\n')) {
    const match = /^\s*bind\s+\S*:(\d+)(?:\s|$)/.exec(line);
    if (match?.[1] !== undefined) ports.add(Number.parseInt(match[1], 10));
  }
  return [...ports].sort((a, b) => a - b);
}

async function logTail(logFile: string): Promise<string> {
  const text = await readFile(logFile, 'utf8').catch(() => '');
  return parseHaproxyCheckOutput(text).split('\n').slice(-5).join(' | ');
}

/** As root: CONFIG_INVALID with a hint unless the haproxy OS user can read `file`. */
async function requireReadableByHaproxy(file: string): Promise<void> {
  const probe = await runCommand('setpriv', ['--reuid', HAPROXY_OS_USER, '--regid', HAPROXY_OS_USER, '--init-groups', '--', 'test', '-r', file], {
    check: false,
    timeoutMs: 10_000,
    env: haproxyEnv(),
    cwd: '/',
  });
  if (probe.exitCode !== 0) {
    throw new PgpilotError('CONFIG_INVALID', `the ${HAPROXY_OS_USER} OS user cannot read ${file}: HAProxy does not run as root`, {
      hint: `put the file where ${HAPROXY_OS_USER} can read it (mode 0644 or group ${HAPROXY_OS_USER}, parent directories traversable), e.g. outside /root`,
      exitCode: 2,
    });
  }
}

/**
 * Starts `haproxy -f configFile -db` as our child (parent-death SIGKILL), output appended to
 * logFile, PID written to pidFile; resolves once every bind port listens.
 */
export async function startHaproxy(options: StartHaproxyOptions): Promise<{ pid: number }> {
  const clock = options.clock ?? new SystemClock();
  const binary = options.binary ?? findHaproxyBinary();
  const check = await checkHaproxyConfig(options.configFile, { binary });
  if (check.kind === 'error') {
    throw new PgpilotError('CONFIG_INVALID', `haproxy rejects ${options.configFile}: ${check.errorText.split('\n').join(' | ')}`, {
      hint: `see: haproxy -c -f ${options.configFile}`,
      exitCode: 2,
    });
  }
  if (isRoot()) await requireReadableByHaproxy(options.configFile);
  const expectedPorts = bindPortsOf(await readFile(options.configFile, 'utf8'));
  const logFd = openSync(options.logFile, 'a', 0o644);
  // Written by the child's exit handler while we poll below.
  const state: { exited: string | null } = { exited: null };
  let pid: number;
  try {
    const wrapped = haproxyCommand(binary, ['-f', options.configFile, '-db']);
    const child = spawn(wrapped.command, wrapped.args, {
      stdio: ['ignore', logFd, logFd],
      detached: false,
      cwd: '/',
      env: haproxyEnv(),
    });
    child.once('exit', (code, signal) => {
      state.exited = `exit ${code ?? signal ?? '?'}`;
    });
    pid = await new Promise<number>((resolve, reject) => {
      child.once('error', (error: NodeJS.ErrnoException) =>
        reject(
          error.code === 'ENOENT'
            ? new PgpilotError('BINARY_MISSING', 'setpriv was not found', { hint: 'run scripts/setup.sh (installs util-linux)' })
            : error,
        ),
      );
      child.once('spawn', () => resolve(child.pid ?? -1));
    });
    // Neither the handle nor the log fd keep the caller alive; the parent-death signal covers exits.
    child.unref();
  } finally {
    closeSync(logFd);
  }
  const owned = { pid, marker: options.configFile };
  const deadlineMs = clock.nowMs() + (options.readyTimeoutMs ?? 10_000);
  await awaitListeningAndRecordPid({
    name: 'haproxy',
    owned,
    ports: expectedPorts,
    exited: () => state.exited,
    logTail: () => logTail(options.logFile),
    logFile: options.logFile,
    pidFile: options.pidFile,
    deadlineMs,
    clock,
  });
  return { pid };
}

/**
 * Stops the haproxy with this PID (SIGTERM, SIGKILL after `graceMs`, default 5 s) and waits for it
 * to exit. Does nothing unless the PID still runs haproxy (with `configFile` when given).
 */
export async function stopHaproxy(
  pid: number,
  options: { configFile?: string; graceMs?: number; clock?: Clock } = {},
): Promise<'not-running' | 'stopped' | 'killed'> {
  const clock = options.clock ?? new SystemClock();
  const marker = options.configFile ?? 'haproxy';
  return stopOwnedProcess({ pid, marker }, clock, { signal: 'SIGTERM', graceMs: options.graceMs ?? 5_000, pollMs: 25 });
}
