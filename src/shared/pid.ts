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

async function isZombie(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Field 3, after the parenthesised command name (which may itself contain spaces).
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state === 'Z';
  } catch {
    return false;
  }
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

/** Polls until the process is gone; false when `timeoutMs` passes first. */
export async function waitForExit(proc: OwnedProcess, clock: Clock, timeoutMs: number, pollMs = 100): Promise<boolean> {
  const deadline = clock.nowMs() + timeoutMs;
  while (clock.nowMs() < deadline) {
    if (!(await isOwnedProcessAlive(proc))) return true;
    await clock.sleep(pollMs);
  }
  return !(await isOwnedProcessAlive(proc));
}
