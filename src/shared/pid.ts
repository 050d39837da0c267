/**
 * Processes we started, identified by recorded PID *and* command line. A PID file can outlive its
 * process (reboot, kill -9) and the number can be reused by an unrelated program, so a PID only
 * counts as ours while /proc/<pid>/cmdline still contains the marker we recorded with it (for
 * example the agent's config path). We never signal a process by name.
 */
import { readFile } from 'node:fs/promises';
import type { Clock } from './clock.js';

export interface OwnedProcess {
  pid: number;
  /** A string that appears in the process's command line (argv joined by spaces). */
  marker: string;
}

export async function readCmdline(pid: number): Promise<string | null> {
  try {
    const raw = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    return raw.split('\0').filter((part) => part.length > 0).join(' ');
  } catch {
    return null;
  }
}

async function processState(pid: number): Promise<string | null> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Field 3, after the parenthesised command name (which may itself contain spaces).
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return null;
  }
}

async function isZombie(pid: number): Promise<boolean> {
  return (await processState(pid)) === 'Z';
}

/**
 * True while the process exists and has not finished exiting (not a zombie, not dead). Unlike
 * `isOwnedProcessAlive` this does not look at the command line, which the kernel empties early
 * in an exit: use it only for a PID already proven to be ours.
 */
export async function isPidRunning(pid: number): Promise<boolean> {
  const state = await processState(pid);
  return state !== null && state !== 'Z' && state !== 'X';
}

/** True while `pid` runs and its command line still contains `marker`. */
export async function isOwnedProcessAlive(proc: OwnedProcess): Promise<boolean> {
  // An empty marker would match every process: never treat that as ours.
  if (!Number.isInteger(proc.pid) || proc.pid <= 1 || proc.marker.length === 0) return false;
  const cmdline = await readCmdline(proc.pid);
  if (cmdline === null || !cmdline.includes(proc.marker)) return false;
  return !(await isZombie(proc.pid));
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/**
 * Sends `signal`, waits up to `graceMs` for the process to go, then SIGKILLs it and waits again.
 * Returns how it ended. Does nothing when the PID is not (or no longer) ours.
 */
export async function stopOwnedProcess(
  proc: OwnedProcess,
  clock: Clock,
  options: { signal?: NodeJS.Signals; graceMs?: number; pollMs?: number } = {},
): Promise<'not-running' | 'stopped' | 'killed'> {
  if (!(await isOwnedProcessAlive(proc))) return 'not-running';
  const pollMs = options.pollMs ?? 100;
  signalPid(proc.pid, options.signal ?? 'SIGTERM');
  if (await waitForExit(proc, clock, options.graceMs ?? 30_000, pollMs)) return 'stopped';
  signalPid(proc.pid, 'SIGKILL');
  await waitForExit(proc, clock, 10_000, pollMs);
  return 'killed';
}

/**
 * Polls until the process is gone; false when `timeoutMs` passes first. The caller has proven the
 * PID ours before signalling it, so from then on only its existence counts: its command line
 * empties while it exits, which must not be taken for "gone" (it may still hold ports and files).
 */
export async function waitForExit(proc: OwnedProcess, clock: Clock, timeoutMs: number, pollMs = 100): Promise<boolean> {
  const deadline = clock.nowMs() + timeoutMs;
  while (clock.nowMs() < deadline) {
    if (!(await isPidRunning(proc.pid))) return true;
    await clock.sleep(pollMs);
  }
  return !(await isPidRunning(proc.pid));
}
