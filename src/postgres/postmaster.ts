/**
 * Supervising one postmaster (`postgres -D dataDir`) as a direct child of the agent. Invariants:
 * the postmaster runs as the postgres OS user with a parent-death SIGKILL (setpriv execs, so the
 * child PID *is* the postmaster PID), which is the zombie-primary protection: an agent killed with
 * -9 cannot leave a writable primary behind. It runs in its own session so a Ctrl-C aimed at the
 * agent's terminal does not shut it down behind the agent's back. Its output goes to a log file
 * through a descriptor we open, so nothing depends on the postgres user being able to create files
 * there. Signals are only ever sent to the PID we spawned (and, when a stop has to escalate to
 * SIGKILL, to that postmaster's own children, which would otherwise keep its shared memory and
 * block the next start). A postmaster.pid left by a dead postmaster is removed only after proving
 * that no live process works in the data directory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { open, readdir, readFile, readlink, realpath, rm } from 'node:fs/promises';
import path from 'node:path';
import { SystemClock, type Clock } from '../shared/clock.js';
import { PgpilotError } from '../shared/errors.js';
import { isOwnedProcessAlive, isPidRunning } from '../shared/pid.js';
import { asPostgresUser } from '../shared/process-runner.js';
import { pgBinary } from './bin-dir.js';
import { postgresEnv } from './initdb.js';

export type ShutdownMode = 'smart' | 'fast' | 'immediate';

/** Postgres's shutdown signals: smart waits for clients, fast disconnects them, immediate aborts. */
export const SHUTDOWN_SIGNALS: Readonly<Record<ShutdownMode, NodeJS.Signals>> = Object.freeze({
  smart: 'SIGTERM',
  fast: 'SIGINT',
  immediate: 'SIGQUIT',
});

export interface PostmasterExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  atMs: number;
}

export type PostmasterExitListener = (exit: PostmasterExit) => void;

export interface PostmasterStartOptions {
  binDir: string;
  dataDir: string;
  /** Appended to; postgres's stdout and stderr both go here. */
  logFile: string;
  /** Extra postgres arguments (e.g. `-c` settings); the data directory is always `-D dataDir`. */
  extraArgs?: string[];
  /** Extra environment variables (the base environment has no inherited PG* variables). */
  env?: Record<string, string>;
  /** The unix socket directory of this postgres (its stale socket lock files are removed first). */
  socketDir?: string;
}

const KILL_WAIT_MS = 10_000;

function sendSignal(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw error;
  }
}

/** PIDs whose parent is `parentPid` (one scan of /proc; no reliance on CONFIG_PROC_CHILDREN). */
async function childPidsOf(parentPid: number): Promise<number[]> {
  const children: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      // Fields after the parenthesised command name: state, ppid, ...
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === parentPid) children.push(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return children;
}

export type StalePidFileOutcome = 'absent' | 'removed' | 'in-use';

/** PIDs of live processes whose working directory is `dir` (postmaster and backends chdir there). */
async function processesWorkingIn(dir: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if ((await readlink(`/proc/${entry}/cwd`)) === dir) found.push(Number(entry));
    } catch {
      // Ended meanwhile, a zombie, or another user's process we may not inspect (then not ours).
    }
  }
  return found;
}

/**
 * Removes `dataDir/postmaster.pid` when it is stale, so that a PID number reused by an unrelated
 * program cannot keep postgres from starting. "Stale" is proven by the absence of any live process
 * working in the data directory: a postmaster and all its backends chdir there, including backends
 * orphaned by a SIGKILLed postmaster, which still hold its shared memory. This is stricter than
 * postgres's own shared-memory interlock, which we bypass by removing the file, so it must be.
 */
export async function removeStalePidFile(dataDir: string): Promise<StalePidFileOutcome> {
  const pidFile = path.join(dataDir, 'postmaster.pid');
  try {
    await readFile(pidFile, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'absent';
    throw error;
  }
  if ((await processesWorkingIn(await realpath(dataDir))).length > 0) return 'in-use';
  await rm(pidFile, { force: true });
  return 'removed';
}

/**
 * Removes socket lock files (`.s.PGSQL.<port>.lock`, and their socket) in `socketDir` whose
 * postmaster is no longer running. A SIGKILLed postmaster leaves its lock behind, and while it is
 * an unreaped zombie (containers whose PID 1 reaps late) postgres's own check still sees that PID
 * "alive" and refuses to start. Invariant: a lock whose PID runs (not a zombie) is never touched,
 * and the directory is this node's own (nothing else puts sockets there).
 */
export async function removeStaleSocketLocks(socketDir: string): Promise<string[]> {
  const removed: string[] = [];
  let entries: string[];
  try {
    entries = await readdir(socketDir);
  } catch {
    return removed;
  }
  for (const entry of entries) {
    const match = /^(\.s\.PGSQL\.\d+)\.lock$/.exec(entry);
    if (match === null) continue;
    const lockFile = path.join(socketDir, entry);
    const pid = Number.parseInt((await readFile(lockFile, 'utf8').catch(() => '')).split('\n')[0] ?? '', 10);
    if (Number.isInteger(pid) && pid > 0 && (await isPidRunning(pid))) continue;
    await rm(lockFile, { force: true });
    await rm(path.join(socketDir, match[1] ?? ''), { force: true });
    removed.push(entry);
  }
  return removed;
}

export class Postmaster {
  private readonly clock: Clock;
  private child: ChildProcess | null = null;
  private currentPid: number | null = null;
  private exitInfo: PostmasterExit | null = null;
  private readonly listeners = new Set<PostmasterExitListener>();
  private readonly exitWaiters = new Set<() => void>();

  constructor(options: { clock?: Clock } = {}) {
    this.clock = options.clock ?? new SystemClock();
  }

  /** The postmaster's PID while it runs, else null. */
  get pid(): number | null {
    return this.currentPid;
  }

  /** How the last postmaster we started ended, or null if none has ended yet. */
  get lastExit(): PostmasterExit | null {
    return this.exitInfo;
  }

  isRunning(): boolean {
    return this.currentPid !== null;
  }

  /** Registers a listener called once per postmaster exit; returns an unsubscribe function. */
  onExit(listener: PostmasterExitListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Spawns the postmaster and resolves with its PID once the process exists (not once it accepts connections). */
  async start(options: PostmasterStartOptions): Promise<number> {
    if (this.child !== null) {
      throw new PgpilotError('POSTGRES_FAILED', `postgres is already running (pid ${this.currentPid ?? '?'})`);
    }
    const stale = await removeStalePidFile(options.dataDir);
    if (stale === 'in-use') {
      throw new PgpilotError('POSTGRES_FAILED', `another postgres is running on ${options.dataDir}`, {
        hint: `stop the postgres whose PID is in ${path.join(options.dataDir, 'postmaster.pid')} first`,
      });
    }
    if (options.socketDir !== undefined) await removeStaleSocketLocks(options.socketDir);
    const wrapped = asPostgresUser(pgBinary(options.binDir, 'postgres'), ['-D', options.dataDir, ...(options.extraArgs ?? [])]);
    const log = await open(options.logFile, 'a', 0o640);
    let child: ChildProcess;
    try {
      child = spawn(wrapped.command, wrapped.args, {
        stdio: ['ignore', log.fd, log.fd],
        detached: true,
        cwd: '/',
        env: postgresEnv(options.env ?? {}),
      });
      this.child = child;
      child.once('exit', (code, signal) => this.handleExit(child, code, signal));
      await new Promise<void>((resolve, reject) => {
        child.once('spawn', resolve);
        child.once('error', (error: NodeJS.ErrnoException) => {
          if (this.child === child) this.child = null;
          reject(
            error.code === 'ENOENT'
              ? new PgpilotError('BINARY_MISSING', `${wrapped.command} was not found`, {
                  hint: 'install util-linux (setpriv) and postgresql-15 with scripts/setup.sh',
                })
              : new PgpilotError('POSTGRES_FAILED', `could not start postgres: ${error.message}`, { cause: error }),
          );
        });
      });
    } finally {
      // The child holds its own copies of the descriptor.
      await log.close();
    }
    const pid = child.pid;
    if (pid === undefined) throw new PgpilotError('POSTGRES_FAILED', 'postgres started without a PID');
    // Unless it already exited while the log descriptor was being closed.
    if (this.child === child) this.currentPid = pid;
    return pid;
  }

  private handleExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.child !== child) return;
    this.child = null;
    this.currentPid = null;
    const exit: PostmasterExit = { code, signal, atMs: this.clock.nowMs() };
    this.exitInfo = exit;
    for (const wake of [...this.exitWaiters]) wake();
    for (const listener of [...this.listeners]) listener(exit);
  }

  /** Resolves true when the postmaster has exited, false when `timeoutMs` passes first. */
  waitForExit(timeoutMs: number): Promise<boolean> {
    if (this.child === null) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (exited: boolean): void => {
        clearTimeout(timer);
        this.exitWaiters.delete(onExit);
        resolve(exited);
      };
      const onExit = (): void => done(true);
      const timer = setTimeout(() => done(false), Math.max(0, timeoutMs));
      this.exitWaiters.add(onExit);
    });
  }

  /**
   * Shuts postgres down with the mode's signal and waits up to `timeoutMs`. Returns true on a
   * clean exit; on timeout it SIGKILLs the postmaster and its children and returns false (the next
   * start then goes through crash recovery).
   */
  async stop(mode: ShutdownMode, timeoutMs: number): Promise<boolean> {
    const pid = this.currentPid;
    if (pid === null) return true;
    const exited = this.waitForExit(timeoutMs);
    sendSignal(pid, SHUTDOWN_SIGNALS[mode]);
    if (await exited) return true;

    const children = await childPidsOf(pid);
    sendSignal(pid, 'SIGKILL');
    for (const childPid of children) {
      // Re-check: a child that ended meanwhile may have had its number reused.
      if (await isOwnedProcessAlive({ pid: childPid, marker: 'postgres' })) sendSignal(childPid, 'SIGKILL');
    }
    await this.waitForExit(KILL_WAIT_MS);
    return false;
  }

  /** Asks postgres to re-read its configuration (SIGHUP); false when it is not running. */
  reload(): boolean {
    const pid = this.currentPid;
    if (pid === null) return false;
    return sendSignal(pid, 'SIGHUP');
  }
}
